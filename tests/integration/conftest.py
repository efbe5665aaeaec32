"""Integration fixtures: moto for AWS (resources from template.yaml), the Kling simulator over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kling_local.sim import KlingSimulator, SimConfig
from kling_pipeline.adapters import reset_container_state as reset_caches
from kling_pipeline.adapters.job_store import JobStore
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import JobState
from kling_pipeline.requests import JobRequest
from tests.support.lambda_runtime import load_function_module
from tests.support.template import TemplateResolver, load_template

ACCESS_KEY = "ak-integration"
SECRET_KEY = "sk-integration-0123456789abcdef0123456789"
SIGNING_SECRET = "k" * 64
DEAD_API = "http://127.0.0.1:9/v1"  # callbacks go nowhere in submit-path tests; the simulator shrugs


@pytest.fixture
def kling_sim() -> Iterator[KlingSimulator]:
    # Tasks take 1-1.5 s: submit-path tests see them live; completion tests make them faster.
    config = SimConfig(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, speed=600.0, generation_min_s=600, generation_max_s=900, seed=11
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

    def crash_after_kling_accepted(self, job_id: str, prompt: str) -> tuple[dict[str, Any], KlingTask]:
        """A worker claimed the job, Kling accepted its task, and the worker died before recording it.
        Returns the message SQS redelivers and the task Kling holds."""
        request = JobRequest.model_validate({"job_id": job_id, "prompt": prompt})
        job, _ = self.store.create(job_id, request, by="test")
        self.store.transition(
            job, JobState.SUBMITTING, by="worker-that-dies", changes={"lease_owner": "dead", "lease_expires_at": 0}
        )
        body = request.kling_body(default_model="kling-v1", callback_url=DEAD_API, external_task_id=job_id)
        return request.model_dump(mode="json", exclude_none=True), self.kling().create_task("text2video", body)

    def backpressured(self, job_id: str) -> bool:
        """The job has been sent back to the queue at least once."""
        job = self.store.find(job_id)
        return job is not None and job.backpressure_count >= 1


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
    with mock_aws(config={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}):
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


@dataclass
class Completion:
    """The completion path on top of `pipeline`: bucket, download workflow, events captured on SQS."""

    pipeline: Pipeline
    s3: Any
    sfn: Any
    bucket: str
    state_machine_arn: str
    events_queue_url: str
    invocations: list[tuple[str, dict[str, Any]]]

    def callback(self, job_id: str, body: dict[str, Any] | str, token: str | None = "auto") -> dict[str, Any]:
        from kling_local.stack.worker import LambdaContext
        from kling_pipeline.adapters.callback_tokens import job_token
        from tests.support.lambda_runtime import api_gateway_event

        if token == "auto":
            token = job_token(SIGNING_SECRET, job_id)
        text = body if isinstance(body, str) else json.dumps(body)
        response: dict[str, Any] = self.handlers["CallbackFunction"](
            api_gateway_event(job_id, token, text), LambdaContext.for_function("CallbackFunction")
        )
        return response

    handlers: dict[str, Any] = field(default_factory=dict)

    def reconfigure(self, function: str, **env: str) -> None:
        """Change a function's environment, as updating its configuration on AWS does: the next
        invocation is a cold start that reads the new settings."""
        for key, value in env.items():
            self.pipeline.monkeypatch.setenv(key, value)
        reset_caches()
        directory = {"CallbackFunction": "callback", "DownloadFunction": "download"}[function]
        self.handlers[function] = load_function_module(directory).lambda_handler

    def executions(self) -> list[dict[str, Any]]:
        return list(self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"])

    def wait_for_execution(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        while time.monotonic() < deadline:
            execution: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                return execution
            time.sleep(0.1)
        raise TimeoutError(f"execution {name} still running after {timeout_s}s")

    def events(self) -> list[dict[str, Any]]:
        messages = self.pipeline.sqs.receive_message(
            QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def completion(pipeline: Pipeline) -> Iterator[Completion]:
    from kling_local.moto_bridges import apply_all
    from kling_local.stack.moto_lambda import moto_lambda_runs
    from kling_local.stack.template import placeholder_zip
    from tests.support.lambda_runtime import InProcessFunctions

    apply_all()

    sim = pipeline.sim
    sim.configure(video_size_bytes=300_000, generation_min_s=30, generation_max_s=90)
    s3 = boto3.client("s3")
    sfn = boto3.client("stepfunctions")
    iam = boto3.client("iam")
    lam = boto3.client("lambda")
    events = boto3.client("events")
    bucket = "videos-bucket"
    s3.create_bucket(Bucket=bucket)
    pipeline.resolver.refs["VideoBucket"] = bucket
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function_arn = lam.create_function(
        FunctionName="DownloadFunction",
        Runtime="python3.12",
        Role=role,
        Handler="app.lambda_handler",
        Code={"ZipFile": placeholder_zip()},
    )["FunctionArn"]
    pipeline.resolver.arns["DownloadFunction"] = function_arn
    definition = pipeline.resolver.state_machine_definition("DownloadStateMachine")
    state_machine_arn = sfn.create_state_machine(name="download", definition=definition, roleArn=role)[
        "stateMachineArn"
    ]
    pipeline.resolver.refs["DownloadStateMachine"] = state_machine_arn
    events_queue = pipeline.sqs.create_queue(QueueName="video-events")["QueueUrl"]
    events_queue_arn = pipeline.sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(Name="videos", EventPattern=json.dumps({"source": ["kling-pipeline"]}))
    events.put_targets(Rule="videos", Targets=[{"Id": "q", "Arn": events_queue_arn}])

    env = {
        **pipeline.resolver.function_environment("DownloadFunction"),
        **pipeline.resolver.function_environment("CallbackFunction"),
        "ALLOWED_DOWNLOAD_HOSTS": f"*.klingai.com,http://{sim.cdn_base_url.removeprefix('http://')}",
    }
    for key, value in env.items():
        pipeline.monkeypatch.setenv(key, value)
    reset_caches()
    handlers = {
        "CallbackFunction": load_function_module("callback").lambda_handler,
        "DownloadFunction": load_function_module("download").lambda_handler,
    }
    with moto_lambda_runs(InProcessFunctions(handlers)) as functions:
        yield Completion(
            pipeline, s3, sfn, bucket, state_machine_arn, events_queue, functions.calls, handlers=functions.handlers
        )
