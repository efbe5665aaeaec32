"""A job through fal.ai's door, end to end: moto for AWS (from template.yaml), the fal simulator over HTTP,
fal's webhooks caught where our API would be and handed to CallbackFunction as API Gateway would."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from kling_local import cli
from kling_local.fal_sim import FalSimConfig, FalSimulator
from kling_local.stack.template_loader import load_template, parameter_defaults
from kling_local.stack.worker import LambdaContext
from kling_pipeline.adapters.ledger import BUDGET_SK_USD, Ledger, day_of
from kling_pipeline.claims import ClaimResult, Outcome
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.settings import SubmitSettings
from kling_pipeline.submit import HELD_FOR_BUDGET, SubmitDependencies, handle_job_message, submit_dependencies
from tests.fal_sim.conftest import Receiver
from tests.support.jobs_api import JobsApi
from tests.support.lambda_runtime import api_gateway_event, load_function_module
from tests.support.scenarios import Completion
from tests.support.sqs_driver import drive_queue
from tests.support.template import ROOT

KEY = "fal-integration-key"


@dataclass
class FalDoor:
    completion: Completion
    sim: FalSimulator
    receiver: Receiver
    env: dict[str, str]
    forwarded: int = 0

    @property
    def store(self) -> Any:
        return self.completion.pipeline.store

    def submit(self, job_id: str, **request: Any) -> Job:
        """The job sent on the queue and driven through the submit path until it leaves QUEUED/SUBMITTING."""
        pipeline = self.completion.pipeline
        handler = pipeline.submit_handler(**self.env)
        pipeline.send({"job_id": job_id, "prompt": f"video for {job_id}", "provider": "fal", "mode": "pro", **request})
        drive_queue(
            handler,
            pipeline.sqs,
            pipeline.queue_url,
            until=lambda: (
                (j := self.store.find(job_id)) is not None and j.state not in (JobState.QUEUED, JobState.SUBMITTING)
            ),
        )
        return self.store.get(job_id)

    def callback_handler(self) -> Any:
        self.completion.pipeline.use_function_env("CallbackFunction", **self.env)
        return load_function_module("callback").lambda_handler

    def webhook(self, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """One delivery, as API Gateway hands POST /callbacks/{job_id}/fal to CallbackFunction."""
        parts = urlsplit(path)
        job_id = parts.path.split("/")[2]
        token = parse_qs(parts.query).get("token", [None])[0]
        event = api_gateway_event(job_id, token, body.decode(), headers)
        event["resource"] = "/callbacks/{job_id}/fal"
        event["path"] = f"/callbacks/{job_id}/fal"
        answer: dict[str, Any] = self.completion.handlers["CallbackFunction"](
            event, LambdaContext.for_function("CallbackFunction")
        )
        return answer

    def forward_webhooks(self, job_id: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """Waits for fal's webhook(s) for the job and hands each to CallbackFunction."""
        wait_until(lambda: len(self.for_job(job_id)) > 0, timeout_s, f"fal's webhook for {job_id}")
        answers = [self.webhook(d.path, d.body, d.headers) for d in self.for_job(job_id)]
        self.forwarded += len(answers)
        return answers

    def for_job(self, job_id: str) -> list[Any]:
        return [d for d in self.receiver.deliveries if d.path.startswith(f"/callbacks/{job_id}/fal")]

    def poll_until(self, job_id: str, *states: JobState, timeout_s: float = 30.0) -> Job:
        handler = self.completion.poller(**self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.completion.poll(handler)
            job = self.store.get(job_id)
            if job.state in states:
                return job
            time.sleep(0.3)
        raise AssertionError(f"{job_id} never reached {states}: {self.store.get(job_id).state}")

    def stats(self) -> dict[str, Any]:
        return self.sim.stats()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fal(completion: Completion) -> Iterator[FalDoor]:
    receiver = Receiver()
    config = FalSimConfig(api_key=KEY, speed=1000.0, generation_min_s=30.0, generation_max_s=60.0, seed=5)
    with FalSimulator(config) as sim:
        pipeline = completion.pipeline
        boto3.client("secretsmanager").put_secret_value(
            SecretId=pipeline.resolver.refs["FalCredentials"], SecretString=json.dumps({"api_key": KEY})
        )
        env = {
            "FAL_QUEUE_BASE_URL": sim.base_url,
            "FAL_JWKS_URL": sim.jwks_url,
            "FAL_CREDENTIALS_SECRET": pipeline.resolver.refs["FalCredentials"],
            "PUBLIC_API_BASE_URL": f"http://127.0.0.1:{receiver.server.server_address[1]}",
            "FAL_WEBHOOK_WINDOW_S": "3600",
        }
        door = FalDoor(completion, sim, receiver, env)
        completion.handlers["CallbackFunction"] = door.callback_handler()
        completion.reconfigure(
            "DownloadFunction",
            **env,
            ALLOWED_DOWNLOAD_HOSTS=f"*.fal.media,{sim.media_base_url}",
        )
        completion.handlers["CallbackFunction"] = door.callback_handler()
        yield door
    receiver.close()


def test_a_fal_job_completes_through_its_webhook_with_no_status_query(fal: FalDoor) -> None:
    # Given a job naming provider fal (Kling v3 pro text to video, 10 s, 16:9: the seed's fal.ai example)
    job = fal.submit("fal-happy", model="kling-v3", mode="pro", duration="10", aspect_ratio="16:9")
    # Then it was queued at fal once, its reference stored by the SUBMITTED transition
    assert job.state is JobState.SUBMITTED
    stored = job.provider_task or {}
    assert stored["id"] == job.task_id
    assert set(stored["urls"]) == {"status_url", "response_url", "cancel_url"}
    assert stored["endpoint"] == "fal-ai/kling-video/v3/pro/text-to-video"
    # When fal's signed webhook arrives
    answers = fal.forward_webhooks("fal-happy")
    assert [a["statusCode"] for a in answers] == [200]
    fal.completion.wait_for_execution("fal-happy")
    # Then the video is in S3, its cost in USD, and fal was never asked for a status or a result
    done = fal.store.get("fal-happy")
    assert done.state is JobState.COMPLETED, done.error_message
    assert done.s3_uri == f"s3://{fal.completion.bucket}/videos/fal-happy.mp4"
    assert done.cash_charged and float(done.cash_charged["USD"]) > 0
    stats = fal.stats()
    assert stats["creates"] == 1
    assert stats["status_queries"] == 0 and stats["result_fetches"] == 0
    # and the job took no Kling slot
    assert job.slot_pool is None


def test_a_duplicate_webhook_changes_nothing(fal: FalDoor) -> None:
    # Given a fal job completed through its webhook
    fal.submit("fal-dup")
    first = fal.forward_webhooks("fal-dup")[0]
    fal.completion.wait_for_execution("fal-dup")
    # When fal delivers the same webhook again
    delivery = fal.for_job("fal-dup")[0]
    again = fal.webhook(delivery.path, delivery.body, delivery.headers)
    # Then it is acknowledged as a duplicate, and one download ran
    assert first["statusCode"] == again["statusCode"] == 200
    assert "duplicate" in json.loads(again["body"])["action"]
    assert len(fal.completion.executions()) == 1


def test_a_lost_webhook_is_settled_by_the_poller(fal: FalDoor) -> None:
    # Given fal loses every webhook
    fal.sim.configure(webhook_loss_rate=1.0)
    fal.submit("fal-lost")
    # When the poller looks at the job once it is due
    job = fal.poll_until("fal-lost", JobState.DOWNLOADING, JobState.COMPLETED)
    fal.completion.wait_for_execution("fal-lost")
    # Then the video is collected, after one result fetch, and fal made one request
    assert fal.store.get("fal-lost").state is JobState.COMPLETED
    assert job.cash_charged
    stats = fal.stats()
    assert stats["creates"] == 1 and stats["result_fetches"] == 1


def test_completed_but_422_fails_the_job_with_fals_detail(fal: FalDoor) -> None:
    # Given fal completes the request and its result is Kling's refusal (422)
    fal.sim.configure(result_422_rate=1.0)
    fal.submit("fal-422")
    # When its webhook arrives (fal says ERROR: the result decides)
    answers = fal.forward_webhooks("fal-422")
    # Then the job is FAILED with fal's detail, after one result fetch; nothing was downloaded
    assert answers[0]["statusCode"] == 200
    job = fal.store.get("fal-422")
    assert job.state is JobState.FAILED
    assert "422" in (job.error_message or "")
    assert fal.stats()["result_fetches"] == 1
    assert fal.completion.executions() == []


def test_completed_but_422_through_the_poller(fal: FalDoor) -> None:
    # Given the webhook is lost and the result is a 422
    fal.sim.configure(result_422_rate=1.0, webhook_loss_rate=1.0)
    fal.submit("fal-422p")
    # When the poller looks
    job = fal.poll_until("fal-422p", JobState.FAILED)
    # Then the job is FAILED with fal's detail
    assert "422" in (job.error_message or "")


def test_a_504_result_is_asked_again_later(fal: FalDoor) -> None:
    # Given the webhook is lost and the first result fetch answers 504
    fal.sim.configure(result_504_first=1, webhook_loss_rate=1.0)
    fal.submit("fal-504")
    # When the poller looks until the job moves
    fal.poll_until("fal-504", JobState.DOWNLOADING, JobState.COMPLETED)
    fal.completion.wait_for_execution("fal-504")
    # Then the 504 was no failure: the second fetch collected the video
    assert fal.store.get("fal-504").state is JobState.COMPLETED
    stats = fal.stats()
    assert stats["results_504"] == 1 and stats["result_fetches"] == 2


def test_a_fal_result_on_a_host_not_allowed_is_refused_as_klings_are(fal: FalDoor) -> None:
    # Given downloads allowed from fal's real media hosts only (the template's default), not the simulator's
    hosts = parameter_defaults(load_template(ROOT / "template.yaml"))["AllowedDownloadHosts"]
    fal.completion.reconfigure("DownloadFunction", **fal.env, ALLOWED_DOWNLOAD_HOSTS=str(hosts))
    fal.submit("fal-foreign")
    # When fal's webhook names a video on the simulator's host
    fal.forward_webhooks("fal-foreign")
    fal.completion.wait_for_execution("fal-foreign")
    # Then the download is refused, the job says why, and nothing was stored
    job = fal.store.get("fal-foreign")
    assert (job.state, job.error_code) == (JobState.FAILED, "URL_NOT_ALLOWED"), job.error_message
    assert "https" in (job.error_message or "")  # the simulator's media host is plain http: never in production
    assert fal.completion.s3.list_objects_v2(Bucket=fal.completion.bucket).get("KeyCount", 0) == 0


def test_an_unsettled_create_is_never_sent_again_and_its_webhook_completes_it(fal: FalDoor) -> None:
    # Given fal queues the request and the answer to our create is lost
    fal.sim.configure(create_answer_loss_rate=1.0)
    job = fal.submit("fal-unsettled")
    # Then the job waits unsettled (SUBMITTED, no request id), and fal holds one request
    assert job.state is JobState.SUBMITTED and job.task_id is None
    assert job.provider_unsettled_at
    # When the same message is delivered again, and the poller looks
    pipeline = fal.completion.pipeline
    pipeline.send({"job_id": "fal-unsettled", "prompt": "video for fal-unsettled", "provider": "fal", "mode": "pro"})
    drive_queue(
        pipeline.submit_handler(**fal.env),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: (
            pipeline.sqs.get_queue_attributes(
                QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
            == "0"
        ),
    )
    # Then nothing is created again
    assert fal.stats()["creates"] == 1
    # When fal's webhook (its URL names the job) arrives
    answers = fal.forward_webhooks("fal-unsettled")
    assert answers[0]["statusCode"] == 200
    fal.completion.wait_for_execution("fal-unsettled")
    # Then the job adopts fal's request and completes, one create in all
    done = fal.store.get("fal-unsettled")
    assert done.state is JobState.COMPLETED
    assert done.task_id and (done.provider_task or {})["id"] == done.task_id
    assert fal.stats()["creates"] == 1


def test_an_unsettled_create_without_webhook_ends_provider_unsettled_after_the_window(fal: FalDoor) -> None:
    # Given a lost create answer, fal's webhook lost too, and a 2 s window
    fal.sim.configure(create_answer_loss_rate=1.0, webhook_loss_rate=1.0)
    fal.env["FAL_WEBHOOK_WINDOW_S"] = "2"
    fal.submit("fal-never")
    # When the poller looks after the window
    job = fal.poll_until("fal-never", JobState.FAILED)
    # Then it ends PROVIDER_UNSETTLED, saying when, which endpoint and where to look; one create in all
    assert job.error_code == "PROVIDER_UNSETTLED"
    assert "fal-ai/kling-video/" in (job.error_message or "") and "fal.ai/dashboard" in (job.error_message or "")
    assert fal.stats()["creates"] == 1


def test_a_forged_webhook_is_401_and_changes_nothing(fal: FalDoor) -> None:
    # Given a fal job whose real webhook is lost
    fal.sim.configure(webhook_loss_rate=1.0)
    job = fal.submit("fal-forged")
    body = json.dumps(
        {"request_id": job.task_id, "status": "OK", "payload": {"video": {"url": "https://evil.example/x.mp4"}}}
    ).encode()
    headers = {
        "X-Fal-Webhook-Request-Id": str(job.task_id),
        "X-Fal-Webhook-User-Id": "someone",
        "X-Fal-Webhook-Timestamp": str(int(time.time())),
        "X-Fal-Webhook-Signature": "00" * 64,
    }
    # When a webhook with a signature fal's keys do not verify arrives, with our valid URL token
    from kling_pipeline.adapters.callback_tokens import job_token
    from tests.support.scenarios import SIGNING_SECRET

    answer = fal.webhook(f"/callbacks/fal-forged/fal?token={job_token(SIGNING_SECRET, 'fal-forged')}", body, headers)
    # Then it is refused (401) and the job is as it was
    assert answer["statusCode"] == 401
    after = fal.store.get("fal-forged")
    assert after.state is JobState.SUBMITTED and after.version == job.version


def jobs_api_for(fal: FalDoor) -> JobsApi:
    """ApiFunction's handler with the fal door's settings."""
    pipeline = fal.completion.pipeline
    pipeline.use_function_env("ApiFunction", **fal.env, VIDEO_BUCKET=fal.completion.bucket)
    events = pipeline.sqs.create_queue(QueueName="fal-api-events")["QueueUrl"]
    handler = load_function_module("api").lambda_handler
    return JobsApi(pipeline, handler, fal.completion.s3, fal.completion.bucket, events)


def test_the_jobs_api_refuses_fal_until_it_is_enabled_and_what_fal_cannot_do(fal: FalDoor) -> None:
    # Given fal's secret holds no key (as the stack creates it)
    secrets = boto3.client("secretsmanager")
    secret = fal.completion.pipeline.resolver.refs["FalCredentials"]
    secrets.put_secret_value(SecretId=secret, SecretString=json.dumps({"api_key": ""}))
    api = jobs_api_for(fal)
    # When a job naming provider fal is posted
    closed = api.call("POST", "/jobs", {"prompt": "a cat", "provider": "fal", "mode": "pro"})
    # Then it is refused before anything is queued, naming the field and the fix
    assert closed.status == 400
    assert "provider: fal is not enabled" in closed.error["message"] and "FalCredentials" in closed.error["message"]
    # When fal is enabled, a job asking a mode fal does not serve for the model is refused naming it
    secrets.put_secret_value(SecretId=secret, SecretString=json.dumps({"api_key": KEY}))
    api = jobs_api_for(fal)
    refused = api.call("POST", "/jobs", {"prompt": "a cat", "provider": "fal", "mode": "std", "model": "kling-v2-6"})
    assert refused.status == 400 and "mode: fal serves kling-v2-6" in refused.error["message"], refused.body
    # and one it can do is accepted
    assert api.call("POST", "/jobs", {"prompt": "a cat", "provider": "fal", "mode": "pro"}).status == 202
    assert fal.stats()["creates"] == 0  # nothing sent to fal by the API


def test_a_fal_job_still_in_fals_queue_is_cancelled_there(fal: FalDoor) -> None:
    # Given fal runs one request at a time and a long one runs: the next job waits in fal's queue
    fal.sim.configure(concurrency_limit=1, generation_min_s=100_000.0, generation_max_s=100_000.0)
    fal.submit("fal-busy")
    waiting = fal.submit("fal-cancel")
    assert waiting.state is JobState.SUBMITTED
    # When it is cancelled through the jobs API
    answer = jobs_api_for(fal).call("POST", "/jobs/fal-cancel/cancel")
    # Then fal was asked (PUT cancel_url), the job is CANCELLED, and the answer says what fal bills
    assert answer.status == 200, answer.body
    job = fal.store.get("fal-cancel")
    assert job.state is JobState.CANCELLED
    assert "bills nothing" in (job.error_message or "")
    assert fal.stats()["cancels_accepted"] == 1


def test_a_fal_job_running_or_finished_at_fal_is_not_cancelled_and_the_answer_says_what_fal_bills(
    fal: FalDoor,
) -> None:
    # Given fal runs one request for a long time (its webhook not yet due: the job is still SUBMITTED here)
    fal.sim.configure(concurrency_limit=1, generation_min_s=100_000.0, generation_max_s=100_000.0)
    running = fal.submit("fal-running", model="kling-v3", duration="10")
    assert running.state is JobState.SUBMITTED
    api = jobs_api_for(fal)
    # When it is cancelled
    answer = api.call("POST", "/jobs/fal-running/cancel")
    # Then it is refused (fal does not stop a running request), saying what fal bills, and fal was not asked
    assert (answer.status, answer.error["code"]) == (409, "PROVIDER_CANNOT_CANCEL"), answer.body
    assert "fal is running request" in answer.error["message"] and "$1.12" in answer.error["message"]
    assert fal.stats()["cancels"] == 0
    assert fal.store.get("fal-running").state is JobState.SUBMITTED
    # Given a job fal has finished whose webhook was lost (the job still SUBMITTED)
    fal.sim.configure(concurrency_limit=0, generation_min_s=30.0, generation_max_s=60.0, webhook_loss_rate=1.0)
    fal.submit("fal-done", model="kling-v3")
    time.sleep(0.5)  # 60 s of fal's time at the simulator's speed
    # When it is cancelled, Then it is refused as finished and billed; the poller still collects its video
    done = api.call("POST", "/jobs/fal-done/cancel")
    assert done.status == 409 and "fal has finished request" in done.error["message"], done.body
    assert "billed as made ($0.56" in done.error["message"]
    assert fal.poll_until("fal-done", JobState.DOWNLOADING, JobState.COMPLETED).state is not JobState.CANCELLED


def test_a_fal_job_whose_create_is_unsettled_is_not_cancelled_and_says_why(fal: FalDoor) -> None:
    # Given a fal job whose create's answer was lost (no request id to cancel)
    fal.sim.configure(create_answer_loss_rate=1.0, webhook_loss_rate=1.0)
    fal.submit("fal-unknown")
    # When it is cancelled, Then it is refused naming fal, the wait and the dashboard
    answer = jobs_api_for(fal).call("POST", "/jobs/fal-unknown/cancel")
    assert (answer.status, answer.error["code"]) == (409, "PROVIDER_CANNOT_CANCEL"), answer.body
    assert "no fal request id" in answer.error["message"] and "fal.ai/dashboard" in answer.error["message"]


def test_a_fal_job_is_held_by_the_usd_budget_while_kling_jobs_still_go(fal: FalDoor) -> None:
    # Given a daily budget of $1 and one of 5 units: a fal kling-v3 pro 5 s video is estimated at $0.56
    # (0.112 USD/s, fal's price table), a Kling std 5 s video at 1 unit (unit_estimates.py)
    pipeline = fal.completion.pipeline
    pipeline.use_function_env("SubmitFunction", **fal.env, DAILY_BUDGET_USD="1", DAILY_BUDGET_UNITS="5")
    deps = submit_dependencies(SubmitSettings.from_environment())

    def send(job_id: str, deps: SubmitDependencies = deps, **fields: Any) -> ClaimResult:
        body = json.dumps({"job_id": job_id, "prompt": f"video for {job_id}", **fields})
        return handle_job_message(body, f"m-{job_id}-{time.monotonic()}", deps, owner="w")

    on_fal = {"provider": "fal", "model": "kling-v3", "mode": "pro", "duration": "5"}
    # When two fal jobs are submitted
    assert send("usd-1", **on_fal).outcome is Outcome.SUBMITTED
    held = send("usd-2", **on_fal)
    # Then the second waits in QUEUED for the USD budget, naming it, and fal saw one create
    assert held.outcome is Outcome.HELD, held.detail
    assert "needs 0.56 USD and 0.56 of 1 are held" in held.detail and "DailyBudgetUsd" in held.detail
    job = fal.store.get("usd-2")
    assert (job.state, job.held_for, job.reserved_usd) == (JobState.QUEUED, HELD_FOR_BUDGET, None)
    assert fal.stats()["creates"] == 1
    # When Kling jobs are submitted meanwhile, Then they go, counted in units against their own budget
    assert [send(f"units-{i}").outcome for i in range(3)] == [Outcome.SUBMITTED] * 3
    ledger = Ledger(pipeline.resolver.refs["StatsTable"])
    today = day_of()
    assert (ledger.reserved(today), ledger.reserved(today, BUDGET_SK_USD)) == (3.0, 0.56)
    assert fal.store.get("usd-1").reserved_usd == 0.56 and fal.store.get("usd-1").reserved_units is None
    # When the operator raises DailyBudgetUsd (a cold start) and the held message comes back
    pipeline.use_function_env("SubmitFunction", **fal.env, DAILY_BUDGET_USD="2", DAILY_BUDGET_UNITS="5")
    raised = submit_dependencies(SubmitSettings.from_environment())
    # Then it is released as a Kling job held by its budget is: sent the same day
    assert send("usd-2", raised, **on_fal).outcome is Outcome.SUBMITTED
    assert fal.stats()["creates"] == 2
    # When the first fal video completes through its webhook
    fal.forward_webhooks("usd-1")
    fal.completion.wait_for_execution("usd-1")
    done = fal.store.get("usd-1")
    assert done.state is JobState.COMPLETED and done.cash_charged
    charged = float(done.cash_charged["USD"])
    # Then its reservation became its charge in USD, and the units' counter did not move
    assert ledger.reserved(today, BUDGET_SK_USD) == pytest.approx(charged + 0.56)
    assert ledger.reserved(today) == 3.0
    # and the cost report keeps the two apart: USD as cash, never added to units
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["cost", "--json", "--stats-table", pipeline.resolver.refs["StatsTable"]]) == 0
    report = json.loads(out.getvalue())
    assert report["total"] == {"units": 0.0, "tasks": 1, "cash": {"USD": pytest.approx(charged)}}
    assert report["budget_reserved_today"] == 3.0
    assert report["budget_reserved_today_usd"] == pytest.approx(charged + 0.56)
    # and the jobs API shows the amount with its unit
    shown = jobs_api_for(fal).call("GET", "/jobs/usd-1").body
    assert shown["cash_charged"] == done.cash_charged and shown["units_charged"] is None
