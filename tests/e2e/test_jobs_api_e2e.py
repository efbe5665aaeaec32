"""The jobs API on the local stack, over real HTTP: a job with a webhook runs to the end and its signed
event reaches a receiver that first answers 500; the CLI through the API; and schemathesis, from the
API's own OpenAPI document, finds no 5xx and no answer that breaks the schema.

The local API server does not enforce IAM (the template's AWS_IAM is checked in tests/unit)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from standardwebhooks import Webhook

from kling_local.sim import SimConfig
from kling_local.stack import LocalStack, StackOptions
from tests.support.template import ROOT
from tests.support.waiting import wait_for

CLI = [sys.executable, "-m", "kling_local.cli"]
# Retries a second or two apart (the defaults are 30 s, doubling to an hour), four attempts in all.
WEBHOOK_RETRIES = {"WebhookRetryBaseSeconds": 1, "WebhookRetryMaxSeconds": 2, "WebhookMaxAttempts": 4}
SCHEMATHESIS_EXAMPLES = 15  # per operation: enough to reach every answer, kept within the suite's budget


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = SimConfig(
        access_key=f"api-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        speed=120.0,
        video_size_bytes=150_000,
        generation_min_s=30.0,
        generation_max_s=60.0,
        concurrency_limit=20,
        seed=12,
    )
    options = StackOptions(
        template_path=ROOT / "template.yaml",
        project_root=tmp_path_factory.mktemp("jobs-api"),
        sim_config=config,
        parameter_overrides=WEBHOOK_RETRIES,
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def api_url(stack: LocalStack) -> str:
    return stack.endpoints["jobs_api_url"]


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1: records every delivery; answers each job's planned statuses
    first (e.g. [500]), then 200."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.deliveries: list[tuple[dict[str, str], str]] = []
        self.plans: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/kling"

    def for_job(self, job_id: str) -> list[tuple[dict[str, str], str]]:
        with self.lock:
            return [(h, b) for h, b in self.deliveries if json.loads(b)["data"]["job_id"] == job_id]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        job_id = json.loads(body)["data"]["job_id"]
        with self.server.lock:
            self.server.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
            plan = self.server.plans.get(job_id) or []
            status = plan.pop(0) if plan else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_jobs_webhook_is_signed_and_retried_after_a_500(stack: LocalStack, api_url: str, receiver: Receiver) -> None:
    # Given a receiver that answers the first delivery for this job with a 500
    receiver.plans["hooked-1"] = [500]
    # When a job with a webhook is submitted over HTTP and runs to the end
    answer = httpx.post(
        f"{api_url}/jobs",
        json={"job_id": "hooked-1", "prompt": "a paper boat on a pond", "webhook_url": receiver.url},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    deliveries = wait_for(lambda: d if len(d := receiver.for_job("hooked-1")) >= 2 else None, 120, what="a retry")
    # Then the event came twice, the same message both times, each signed with the stack's secret
    secret = stack.client("secretsmanager").get_secret_value(SecretId=stack.outputs["WebhookSigningSecretArn"])
    verifier = Webhook(secret["SecretString"])
    payloads = [verifier.verify(body, headers) for headers, body in deliveries]
    assert payloads[0] == payloads[1]
    assert deliveries[0][0]["webhook-id"] == deliveries[1][0]["webhook-id"]
    assert payloads[0]["type"] == "video.completed"
    assert payloads[0]["data"]["state"] == "COMPLETED"
    # And a forged body does not verify
    with pytest.raises(Exception, match="signature"):
        verifier.verify(deliveries[0][1].replace("COMPLETED", "FAILED"), deliveries[0][0])
    # And the job's presigned link downloads the video
    job = httpx.get(f"{api_url}/jobs/hooked-1", timeout=30).json()
    assert job["state"] == "COMPLETED" and job["s3_uri"] == payloads[0]["data"]["s3_uri"]
    video = httpx.get(job["download_url"], timeout=30)
    assert video.status_code == 200 and len(video.content) == 150_000 and video.content[4:8] == b"ftyp"
    # And nothing more is delivered once the receiver said 200
    time.sleep(3)
    assert len(receiver.for_job("hooked-1")) == 2


def test_a_webhook_that_keeps_failing_ends_in_the_webhook_dlq(
    stack: LocalStack, api_url: str, receiver: Receiver
) -> None:
    # Given a receiver that always answers 503 for this job
    receiver.plans["hooked-2"] = [503] * 10
    # When the job ends
    httpx.post(
        f"{api_url}/jobs", json={"job_id": "hooked-2", "prompt": "rain", "webhook_url": receiver.url}, timeout=30
    )
    # Then its event is tried WebhookMaxAttempts times, then moved to the webhook DLQ
    sqs = stack.client("sqs")
    dlq = stack.outputs["WebhookDeadLetterQueueUrl"]

    def dead_lettered() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        return [m for m in messages if json.loads(m["Body"])["detail"]["job_id"] == "hooked-2"]

    assert wait_for(dead_lettered, 120, what="the event in the webhook DLQ")
    assert len(receiver.for_job("hooked-2")) == WEBHOOK_RETRIES["WebhookMaxAttempts"]


def run_cli(*args: str, project_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=project_root, check=False)


def test_the_cli_submits_reads_lists_and_cancels_through_the_api(api_url: str, tmp_path: Path) -> None:
    # When a job is submitted with the CLI through the API
    submitted = run_cli(
        "submit", "--api-url", api_url, "--prompt", "a tin robot", "--job-id", "cli-api-1", project_root=tmp_path
    )
    # Then it is accepted (its id printed, as the queue path prints it), and status and list read the API
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout == "cli-api-1\n"
    status = run_cli("status", "--api-url", api_url, "cli-api-1", "--json", project_root=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["job_id"] == "cli-api-1"
    wait_for(
        lambda: httpx.get(f"{api_url}/jobs/cli-api-1", timeout=30).json()["state"] == "COMPLETED", 120, what="done"
    )
    listed = run_cli("list", "--api-url", api_url, "--state", "COMPLETED", "--json", project_root=tmp_path)
    assert "cli-api-1" in {item["job_id"] for item in json.loads(listed.stdout)}
    # And a cancel of a finished job is refused with the API's reason
    cancelled = run_cli("cancel", "--api-url", api_url, "cli-api-1", project_root=tmp_path)
    assert cancelled.returncode == 2 and "already ended" in cancelled.stderr


def test_the_api_never_answers_5xx_nor_outside_its_schema(api_url: str) -> None:
    # Given the API's own OpenAPI document, as the local stack serves it
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    calls: list[int] = []
    for operation in operations:
        # When schemathesis sends each operation requests made from its schema, valid and invalid
        @settings(
            max_examples=SCHEMATHESIS_EXAMPLES,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def answers_within_its_schema(case: Any) -> None:
            # Then no answer is a 5xx, a status the document does not list, or a body outside its schema
            response = case.call_and_validate(
                base_url=api_url, checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
            )
            calls.append(response.status_code)

        answers_within_its_schema()
    print(f"schemathesis: {len(calls)} requests, statuses {sorted(set(calls))}")
    assert len(calls) >= len(operations) * 5
