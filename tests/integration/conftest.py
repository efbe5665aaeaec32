"""Integration fixtures: moto for AWS (resources from template.yaml), the Kling simulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from kling_local.sim import KlingSimulator, SimConfig
from kling_pipeline.dependencies import reset_caches
from kling_pipeline.kling import KlingClient
from kling_pipeline.store import JobStore
from moto import mock_aws

from tests.support.lambda_runtime import load_function_module
from tests.support.template import TemplateResolver, load_template

ACCESS_KEY = "ak-integration"
SECRET_KEY = "sk-integration-0123456789abcdef0123456789"
SIGNING_SECRET = "k" * 64
DEAD_API = "http://127.0.0.1:9/v1"  # callbacks go nowhere in submit-path tests; the simulator shrugs


@pytest.fixture
def kling_sim() -> Iterator[KlingSimulator]:
    config = SimConfig(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, speed=600.0, generation_min_s=30, generation_max_s=90, seed=11
    )
    with KlingSimulator(config, host="127.0.0.1", port=0, cdn_port=0) as sim:
        yield sim


@dataclass
class Pipeline:
    """The AWS side of the stack in moto, built from template.yaml, and the functions' environments."""

    resolver: TemplateResolver
    sqs: Any
    dynamodb: Any
    queue_url: str
    dlq_url: str
    table_name: str
    store: JobStore
    sim: KlingSimulator
    monkeypatch: pytest.MonkeyPatch

    def use_function_env(self, logical_id: str, **overrides: str) -> None:
        for key, value in (self.resolver.function_environment(logical_id) | overrides).items():
            self.monkeypatch.setenv(key, value)
        reset_caches()

    def submit_handler(self, **env_overrides: str) -> Any:
        self.use_function_env("SubmitFunction", **env_overrides)
        module: ModuleType = load_function_module("submit")
        return module.lambda_handler

    def send(self, body: dict[str, Any] | str) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return str(self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=text)["MessageId"])

    def kling(self) -> KlingClient:
        return KlingClient(self.sim.base_url, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def pipeline(kling_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "KlingPipelineTests",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        resolver = TemplateResolver(
            load_template(),
            parameters={
                "KlingBaseUrl": kling_sim.base_url,
                "PublicApiBaseUrl": DEAD_API,
                "BackpressureBaseDelaySeconds": "1",
                "BackpressureMaxDelaySeconds": "2",
                "PipelineMode": "local",
            },
        )
        sqs = boto3.client("sqs")
        dynamodb = boto3.client("dynamodb")
        secrets = boto3.client("secretsmanager")
        dlq_url = resolver.create_queue(sqs, "JobsDeadLetterQueue", "jobs-dlq")
        queue_url = resolver.create_queue(sqs, "JobsQueue", "jobs")
        table = resolver.create_table(dynamodb, "JobsTable", "jobs")
        resolver.create_secret(
            secrets, "KlingCredentials", "kling", json.dumps({"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
        )
        resolver.create_secret(secrets, "CallbackSigningSecret", "callback-signing", SIGNING_SECRET)
        resolver.refs["CallbackApi"] = "localapi"
        resolver.refs["DownloadStateMachine"] = "arn:aws:states:us-east-1:123456789012:stateMachine:download"
        yield Pipeline(resolver, sqs, dynamodb, queue_url, dlq_url, table, JobStore(table), kling_sim, monkeypatch)
        reset_caches()
