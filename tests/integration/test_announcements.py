"""Every end is announced: at least once as an event, exactly once to a caller waiting with a task token.

An end is written marked `announce_pending`, and stays in the poller's LiveJobs index until its
announcer (the workflow's Announce, or adapters.announcements) has had every event entry taken and
its caller resumed; what is left marked is announced by the poller. AWS's faults are played by moto
through kling_local.aws_faults, including a write AWS commits but whose answer is lost. Webhooks are
built from the job's record, never from the event that names it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from standardwebhooks import Webhook

from kling_local.aws_faults import AWS_FAULTS
from kling_local.stack.worker import LambdaContext
from kling_pipeline.adapters import job_store as job_store_module
from kling_pipeline.adapters.announcements import Announcer
from kling_pipeline.adapters.webhook_queue import WebhookQueue
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy
from kling_pipeline.lifecycle import JobState, Transition
from kling_pipeline.requests import JobRequest
from kling_pipeline.settings import WebhookSettings
from kling_pipeline.webhook import Outcome, WebhookDependencies, attempt_delivery
from tests.support.jobs_api import moved
from tests.support.lambda_runtime import load_function_module
from tests.support.scenarios import Completion, Pipeline, as_callback_body, kling_task
from tests.support.sqs_driver import drive_queue
from tests.support.template import ROOT

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


@pytest.fixture(autouse=True)
def no_faults_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # An end is due for the poller's look one second after it is written (30 s in a deployment).
    monkeypatch.setattr(job_store_module, "ANNOUNCE_GRACE_S", 1)
    AWS_FAULTS.clear()
    yield
    AWS_FAULTS.clear()


def caller_waiting(completion: Completion, job_id: str, **request: Any) -> str:
    """A Step Functions caller that queued `job_id` with its task token and waits; the job submitted."""
    pipeline = completion.pipeline
    caller = pipeline.caller_waiting_for({"job_id": job_id, "prompt": f"a video for {job_id}", **request})
    drive_queue(
        pipeline.submit_handler(),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: (j := pipeline.store.find(job_id)) is not None and j.state is JobState.SUBMITTED,
    )
    return caller


def resumes_of(completion: Completion, caller: str) -> list[str]:
    """How the waiting caller was resumed: the task events of its execution, once it has ended."""
    deadline = time.monotonic() + 30
    while completion.sfn.describe_execution(executionArn=caller)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the caller was never resumed"
        time.sleep(0.1)
    events = completion.sfn.get_execution_history(executionArn=caller)["events"]
    return [e["type"] for e in events if e["type"] in ("TaskSucceeded", "TaskFailed")]


def events_for(completion: Completion, job_id: str) -> list[dict[str, Any]]:
    return [e for e in completion.events() if e["detail"]["job_id"] == job_id]


def announced(completion: Completion, job_id: str) -> bool:
    return not completion.pipeline.store.get(job_id).announce_pending


def poll_once_due(completion: Completion) -> dict[str, Any]:
    time.sleep(1.2)  # past the announcement's grace
    return completion.poll(completion.poller())


def test_an_end_whose_event_eventbridge_refused_is_announced_by_the_poller(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a caller waiting for a job whose Kling task fails, and EventBridge failing every entry of
    # every PutEvents the announcer tries for it
    pipeline.sim.configure(fail_rate=1.0)
    caller = caller_waiting(completion, "refused-event")
    job = pipeline.store.get("refused-event")
    refusals = AWS_FAULTS.inject("FailedEntries", "events", operation="PutEvents", times=4)
    # When Kling's callback ends the job
    task = kling_task(completion, job.kind, job.task_id, "failed")
    assert completion.callback("refused-event", as_callback_body(task))["statusCode"] == 200
    # Then no event went out, and the end stays marked to be announced
    assert refusals.fired == 4
    assert pipeline.store.get("refused-event").state is JobState.FAILED
    assert events_for(completion, "refused-event") == []
    assert not announced(completion, "refused-event")
    # And when the poller comes by, the event goes out and the mark is cleared
    report = poll_once_due(completion)
    assert report["announced"] == 1, report
    (event,) = events_for(completion, "refused-event")
    assert event["detail-type"] == "Video Failed" and event["detail"]["error_code"] == "KLING_TASK_FAILED"
    assert announced(completion, "refused-event")
    # And the caller was resumed exactly once, though it was told twice
    assert resumes_of(completion, caller) == ["TaskFailed"]
    # And a later run finds nothing left to announce
    assert poll_once_due(completion)["announced"] == 0


def test_a_workflow_end_whose_event_entry_failed_is_left_for_the_poller(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a caller waiting for a job, and EventBridge failing the entry of every PutEvents (answered
    # 200 with FailedEntryCount 1, which the workflow's integration raises as EventBridge.FailedEntry)
    caller = caller_waiting(completion, "workflow-event")
    job = pipeline.store.get("workflow-event")
    AWS_FAULTS.inject("FailedEntries", "events", operation="PutEvents", times=None)
    # When the video is stored and the workflow announces it
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    assert completion.callback("workflow-event", as_callback_body(task))["statusCode"] == 200
    assert completion.wait_for_execution("workflow-event")["status"] == "SUCCEEDED"
    # Then the job is COMPLETED and its caller resumed, but its end is still marked: no event went out
    assert pipeline.store.get("workflow-event").state is JobState.COMPLETED
    assert resumes_of(completion, caller) == ["TaskSucceeded"]
    assert events_for(completion, "workflow-event") == []
    assert not announced(completion, "workflow-event")
    # And once EventBridge takes entries again, the poller announces it: the event once, the caller not again
    AWS_FAULTS.clear()
    assert poll_once_due(completion)["announced"] == 1
    (event,) = events_for(completion, "workflow-event")
    assert event["detail-type"] == "Video Completed" and event["detail"]["s3_uri"].endswith("workflow-event.mp4")
    assert announced(completion, "workflow-event")
    assert resumes_of(completion, caller) == ["TaskSucceeded"]


def test_an_outcome_write_whose_answer_was_lost_is_recognised_and_announced(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a caller waiting for a job, and DynamoDB committing the workflow's outcome write but
    # answering it 500 (AWS's worst case: the write was made, its answer lost), so the retry finds
    # the job moved and fails its condition
    caller = caller_waiting(completion, "lost-answer")
    job = pipeline.store.get("lost-answer")
    lost = AWS_FAULTS.inject(
        "InternalServerError", "dynamodb", operation="UpdateItem", contains='"download-workflow"', applied=True
    )
    # When the video is stored and the workflow records it
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    assert completion.callback("lost-answer", as_callback_body(task))["statusCode"] == 200
    execution = completion.wait_for_execution("lost-answer")
    # Then the workflow reads the job back, finds its own write, and carries on: the event goes out,
    # the caller is resumed, the end is marked announced, with no poller run
    assert lost.fired == 1
    assert execution["status"] == "SUCCEEDED"
    done = pipeline.store.get("lost-answer")
    assert done.state is JobState.COMPLETED and [h.state for h in done.history].count(JobState.COMPLETED) == 1
    (event,) = events_for(completion, "lost-answer")
    assert event["detail"]["sha256"] == done.sha256
    assert resumes_of(completion, caller) == ["TaskSucceeded"]
    assert announced(completion, "lost-answer")


# -- item 12: webhooks from the record ------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.deliveries: list[tuple[dict[str, str], str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def webhook_deps(pipeline: Pipeline) -> WebhookDependencies:
    pipeline.resolver.create_queue(pipeline.sqs, "WebhookDeadLetterQueue", "webhooks-dlq")
    queue_url = pipeline.resolver.create_queue(pipeline.sqs, "WebhookQueue", "webhooks")
    pipeline.resolver.refs["WebhookSigningSecret"] = "webhook-signing"
    pipeline.use_function_env("WebhookFunction")
    sender = WebhookSender(SECRET, WebhookPolicy.from_settings("", pipeline_mode="local", timeout_s=5))
    return WebhookDependencies(
        settings=WebhookSettings.from_environment(),
        store=pipeline.store,
        queue=WebhookQueue(queue_url, sqs=boto3.client("sqs")),
        sender=lambda: sender,
    )


def hooked_job(pipeline: Pipeline, job_id: str, url: str, *, end: JobState | None) -> None:
    request = JobRequest.model_validate({"job_id": job_id, "prompt": "a lighthouse", "webhook_url": url})
    job, _ = pipeline.store.create(job_id, request, by="test")
    if end is not None:
        pipeline.store.transition(
            job,
            Transition(
                job.state, end, {"error_code": "KLING_TASK_FAILED", "error_message": "Kling failed it"}, by="test"
            ),
        )


def event(job_id: str, detail_type: str, **detail: Any) -> str:
    return json.dumps(
        {
            "id": "forged-1",
            "source": "kling-pipeline",
            "detail-type": detail_type,
            "time": "2030-01-01T00:00:00Z",
            "detail": {"job_id": job_id, **detail},
        }
    )


def test_a_forged_completion_event_is_never_signed_and_sent(pipeline: Pipeline, receiver: Receiver) -> None:
    # Given a job with a webhook that Kling failed, and one still running
    deps = webhook_deps(pipeline)
    hooked_job(pipeline, "hooked-failed", receiver.url, end=JobState.FAILED)
    hooked_job(pipeline, "hooked-live", receiver.url, end=None)
    forged = {"state": "COMPLETED", "s3_uri": "s3://attacker/fake.mp4", "sha256": "0" * 64}
    # When someone allowed to put events on the bus puts "Video Completed" for each
    outcomes = [
        attempt_delivery(event(job_id, "Video Completed", **forged), receipt_handle="r", attempt=1, deps=deps)
        for job_id in ("hooked-failed", "hooked-live")
    ]
    # Then nothing is signed or sent: the records show no such end
    assert outcomes == [Outcome.SKIPPED, Outcome.SKIPPED]
    assert receiver.deliveries == []


def test_a_webhook_says_what_the_record_holds_whatever_the_event_claims(pipeline: Pipeline, receiver: Receiver) -> None:
    # Given a job with a webhook that Kling failed
    deps = webhook_deps(pipeline)
    hooked_job(pipeline, "hooked-told", receiver.url, end=JobState.FAILED)
    # When its "Video Failed" event arrives with a detail that says otherwise
    body = event("hooked-told", "Video Failed", state="FAILED", error_message="please pay again at evil.example")
    assert attempt_delivery(body, receipt_handle="r", attempt=1, deps=deps) is Outcome.DELIVERED
    # Then the signed payload is the record's
    ((headers, sent),) = receiver.deliveries
    payload = Webhook(SECRET).verify(sent, headers)
    job = pipeline.store.get("hooked-told")
    assert payload["type"] == "video.failed"
    assert payload["data"]["error_message"] == "Kling failed it" and payload["data"]["state"] == "FAILED"
    assert payload["timestamp"] == job.updated_at


def test_an_end_whose_mark_cannot_be_cleared_is_left_for_the_poller_and_nothing_raises(
    completion: Completion,
) -> None:
    pipeline = completion.pipeline
    # Given DynamoDB refusing every write that clears an announcement's mark (throttled past the retries)
    clears = AWS_FAULTS.inject("ThrottlingException", "dynamodb", contains="attribute_exists(#r0)", times=None)
    # When a job's end is announced
    request = JobRequest.model_validate({"job_id": "mark-stuck", "prompt": "a video for mark-stuck"})
    job, _ = pipeline.store.create("mark-stuck", request, by="test")
    failed = pipeline.store.transition(
        job, Transition(job.state, JobState.FAILED, {"error_code": "X", "error_message": "x"}, by="test")
    )
    announcer = Announcer("default", marks=pipeline.store)
    # Then the announcer says it is not done (no exception), and the mark stays for the poller
    assert announcer.job_ended(failed) is False
    assert clears.fired >= 1
    assert pipeline.store.get("mark-stuck").announce_pending
    # And once DynamoDB takes writes again, the poller's announcement clears it
    AWS_FAULTS.remove(clears)
    assert announcer.job_ended(pipeline.store.get("mark-stuck")) is True
    assert not pipeline.store.get("mark-stuck").announce_pending


def test_the_sample_webhook_event_is_delivered_by_the_webhook_function(pipeline: Pipeline, receiver: Receiver) -> None:
    # Given the sample event from events/ and its job, completed, with a webhook
    sample = json.loads((ROOT / "events" / "sqs_webhook_event.json").read_text())
    job_id = json.loads(sample["Records"][0]["body"])["detail"]["job_id"]
    webhook_deps(pipeline)
    pipeline.resolver.create_secret(boto3.client("secretsmanager"), "WebhookSigningSecret", "webhook-signing", SECRET)
    request = JobRequest.model_validate({"job_id": job_id, "prompt": "a lighthouse", "webhook_url": receiver.url})
    pipeline.store.create(job_id, request, by="test")
    moved(
        pipeline,
        job_id,
        JobState.SUBMITTING,
        JobState.SUBMITTED,
        JobState.DOWNLOADING,
        JobState.COMPLETED,
        s3_uri="s3://videos/v.mp4",
    )
    # When WebhookFunction's real handler takes it
    handler = load_function_module("webhook").lambda_handler
    answer = handler(sample, LambdaContext.for_function("WebhookFunction"))
    # Then nothing is left to retry, and the job's end was POSTed, signed
    assert answer == {"batchItemFailures": []}
    ((headers, sent),) = receiver.deliveries
    payload = Webhook(SECRET).verify(sent, headers)
    assert payload["type"] == "video.completed" and payload["data"]["job_id"] == job_id
