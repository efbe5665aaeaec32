"""Hostile servers met by the real functions: an image URL that drips its answer fails its own job in
time, its batch-mates go on in the same invocation; a webhook receiver that drips, or fails, is a failed
delivery retried with backoff, and the URL's secret never reaches a log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from kling_local.drip import DripServer
from kling_pipeline.adapters.webhook_queue import WebhookQueue
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy
from kling_pipeline.lifecycle import JobState
from kling_pipeline.requests import JobRequest
from kling_pipeline.settings import WebhookSettings
from kling_pipeline.webhook import Outcome, WebhookDependencies, attempt_delivery
from tests.support.scenarios import Pipeline
from tests.support.sqs_driver import drive_queue

SECRET = "SECRET-0123456789"
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_an_image_url_that_drips_fails_its_job_in_time_and_its_batch_mates_go_on(pipeline: Pipeline) -> None:
    # Given an image host that drips its headers for 20 s, a byte every 0.2 s (no per-read timeout trips),
    # and the submit function with a 1 s limit for an image's probe
    with DripServer(phase="headers", interval_s=0.2, max_s=20.0) as drip:
        handler = pipeline.submit_handler(IMAGE_TIMEOUT_S="1", IMAGE_URL_HOSTS=f"*,http://{drip.address}")
        pipeline.send({"job_id": "mate-1", "prompt": "a quiet lake"})
        pipeline.send({"job_id": "hostile", "kind": "image2video", "image": f"{drip.url}/a.png", "prompt": "it moves"})
        pipeline.send({"job_id": "mate-2", "prompt": "a windy hill"})
        ids = ("mate-1", "hostile", "mate-2")

        def settled() -> bool:
            jobs = [pipeline.store.find(job_id) for job_id in ids]
            return all(job is not None and job.state not in (JobState.QUEUED, JobState.SUBMITTING) for job in jobs)

        # When the three arrive in one batch
        started = time.monotonic()
        batches = drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=settled, batch_size=5, deadline_s=60)
        seconds = time.monotonic() - started
    # Then the hostile job is refused with the reason, within its limit, in the one invocation
    hostile = pipeline.store.get("hostile")
    assert (hostile.state, hostile.error_code) == (JobState.FAILED, "INVALID_REQUEST")
    assert "did not answer within 1 s" in (hostile.error_message or "")
    assert batches == 1 and seconds < 10
    # And its batch-mates were submitted, received once, never dead-lettered
    assert {pipeline.store.get(j).state for j in ("mate-1", "mate-2")} <= {JobState.SUBMITTED, JobState.PROCESSING}
    assert [json.loads(m["Body"])["job_id"] for m in pipeline.dead_letters()] == ["hostile"]
    assert pipeline.tasks_for("mate-1") == pipeline.tasks_for("mate-2") == 1


class _EchoingFailure(BaseHTTPRequestHandler):
    """A receiver that fails, echoing the request target in its answer (as many error pages do)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = f"no route for {self.path}".encode()
        self.send_response(500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingFailure)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def webhook_attempt(pipeline: Pipeline, url: str, *, timeout_s: float = 10.0) -> Outcome:
    """The webhook function's attempt at one ended job's event, with the template's settings."""
    queue_url = pipeline.sqs.create_queue(QueueName="webhooks")["QueueUrl"]
    pipeline.resolver.refs |= {"WebhookQueue": queue_url, "WebhookSigningSecret": "webhook-signing"}
    settings = WebhookSettings.from_environment(pipeline.resolver.function_environment("WebhookFunction"))
    request = JobRequest.model_validate({"job_id": "hooked", "prompt": "p", "webhook_url": url})
    pipeline.store.create(
        "hooked", request, by="test", state=JobState.FAILED, error_code="X", error_message="it failed"
    )
    event = {
        "id": "e-1",
        "source": "kling-pipeline",
        "detail-type": "Video Failed",
        "time": "2026-01-01T00:00:00Z",
        "detail": {"job_id": "hooked", "state": "FAILED"},
    }
    pipeline.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
    (message,) = pipeline.sqs.receive_message(QueueUrl=queue_url)["Messages"]
    policy = WebhookPolicy((), production=False, timeout_s=timeout_s)
    deps = WebhookDependencies(
        settings=settings,
        store=pipeline.store,
        queue=WebhookQueue(queue_url, sqs=boto3.client("sqs")),
        sender=lambda: WebhookSender(WEBHOOK_SECRET, policy),
    )
    return attempt_delivery(message["Body"], receipt_handle=message["ReceiptHandle"], attempt=1, deps=deps)


@pytest.mark.parametrize("where", ["receiver", "https://hooks.example"])
def test_a_failing_delivery_logs_no_secret_from_the_webhook_url(
    pipeline: Pipeline, failing_receiver: str, where: str, caplog: Any, capfd: Any
) -> None:
    # Given a job whose webhook URL carries its receiver's token, and a receiver that fails echoing it
    base = failing_receiver if where == "receiver" else where
    for library in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=library)
    # When the delivery is attempted and fails
    outcome = webhook_attempt(pipeline, f"{base}/x?token={SECRET}", timeout_s=2.0)
    # Then it is retried later, and nothing logged (ours, httpx's, httpcore's) holds the secret
    assert outcome is Outcome.RETRYING
    captured = capfd.readouterr()
    records = " ".join(str(record.__dict__) for record in caplog.records)
    logged = records + caplog.text + captured.out + captured.err
    assert "webhook not delivered" in logged
    assert SECRET not in logged


def test_a_webhook_receiver_that_drips_is_retried_with_backoff(pipeline: Pipeline, caplog: Any) -> None:
    with DripServer(phase="body", interval_s=0.2, max_s=20.0) as drip:
        started = time.monotonic()
        outcome = webhook_attempt(pipeline, f"{drip.url}/hook", timeout_s=1.0)
    assert outcome is Outcome.RETRYING and time.monotonic() - started < 5
    (logged,) = [r for r in caplog.records if r.getMessage() == "webhook not delivered"]
    assert getattr(logged, "answer", "").startswith("no whole answer within 1 s")
