"""A job on a model of Kling's newer design, end to end over HTTP against the simulator: created on the
model's path with the newer body, confirmed through /tasks, its newer-design callback read, its charge
(units or cash with its currency) in the job and the ledger; and refused before any create when the
deployment has no API key. Legacy jobs are the rest of the suite, unchanged."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from kling_pipeline.adapters import reset_container_state
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.ledger import Ledger
from kling_pipeline.lifecycle import JobState
from tests.support.scenarios import ACCESS_KEY, SECRET_KEY, Completion, Pipeline, submitted
from tests.support.sqs_driver import drive_queue, queue_messages


def store_credentials(pipeline: Pipeline, **credentials: str) -> None:
    """Put the Kling secret as an operator does after a deploy (README, 'Deploy')."""
    import boto3

    secret_id = pipeline.resolver.refs["KlingCredentials"]
    boto3.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(credentials))
    reset_container_state()


def api_key(pipeline: Pipeline) -> str:
    key = pipeline.sim.config.api_key
    assert key, "the simulator's account has an API key"
    return key


def raw_new_task(pipeline: Pipeline, task_id: str, status: str, timeout_s: float = 30) -> dict[str, Any]:
    """The task as the newer design answers it, once it reaches `status` (what its callback carries)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{pipeline.sim.base_url}/tasks",
            params={"task_ids": task_id},
            headers={"Authorization": f"Bearer {api_key(pipeline)}"},
        ).json()
        (task,) = answer["data"]
        if task["status"] == status:
            return dict(task)
        time.sleep(0.05)
    raise TimeoutError(f"task {task_id} never reached {status}")


def creates(pipeline: Pipeline) -> dict[str, int]:
    """Create calls by path, as the simulator counts them ("POST text2video", "POST text-to-video/kling-3.0")."""
    calls = pipeline.sim.stats()["calls"]
    return {k.removeprefix("POST ").strip("/"): n for k, n in calls.items() if k.startswith("POST ")}


def ledger_rows(pipeline: Pipeline) -> list[Any]:
    today = datetime.now(UTC).date()
    return Ledger(pipeline.resolver.refs["StatsTable"]).costs(today, today)


def test_a_newer_design_job_runs_end_to_end_on_its_callback(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a deployment whose Kling secret holds an API key only
    store_credentials(pipeline, api_key=api_key(pipeline))
    # When a kling-3.0 job of 8 s at 1080p is sent
    job = submitted(completion, "new-3-0", model="kling-3.0", duration=8, resolution="1080p")
    # Then Kling made its task through the newer design, under the job's id
    assert job.state is JobState.SUBMITTED and job.model_name == "kling-3.0"
    assert pipeline.sim.stats()["tasks_by_external_task_id"] == {"new-3-0": 1}
    assert creates(pipeline) == {"text-to-video/kling-3.0": 1}
    # When Kling's newer-design callback says it succeeded
    body = raw_new_task(pipeline, str(job.task_id), "succeeded")
    assert completion.callback("new-3-0", body)["statusCode"] == 200
    # Then the job, confirmed through /tasks, is stored with the units Kling billed, counted once
    assert completion.wait_for_execution("new-3-0")["status"] == "SUCCEEDED"
    done = pipeline.store.get("new-3-0")
    assert done.state is JobState.COMPLETED and done.kling_status == "succeed"
    billed = body["billing"][0]
    assert billed["charge_type"] == "unit"
    assert float(done.units_charged or "nan") == billed["amount"]
    (row,) = ledger_rows(pipeline)
    assert (row.model, row.units, row.tasks, row.cash) == ("kling-3.0", billed["amount"], 1, {})


def test_a_newer_design_job_billed_in_cash_records_its_currency_through_the_poller(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given an account Kling bills in cash, and a deployment with both kinds of credentials
    pipeline.sim.configure(billing_currency="USD", cash_per_unit=0.14)
    store_credentials(pipeline, api_key=api_key(pipeline), access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    # When a kling-2.6 job with native audio at 1080p runs and its callback is lost
    job = submitted(completion, "new-2-6-cash", model="kling-2.6", duration=10, sound=True, resolution="1080p")
    raw_new_task(pipeline, str(job.task_id), "succeeded")
    poller = completion.poller()
    deadline = time.monotonic() + 60
    while pipeline.store.get("new-2-6-cash").state in (JobState.SUBMITTED, JobState.PROCESSING):
        assert time.monotonic() < deadline, "the poller never saw the task end"
        completion.poll(poller)
        time.sleep(0.2)
    # Then the poller found it through /tasks, and the job and the day's row carry the cash in its currency
    assert completion.wait_for_execution("new-2-6-cash")["status"] == "SUCCEEDED"
    done = pipeline.store.get("new-2-6-cash")
    assert done.cash_charged is not None and set(done.cash_charged) == {"USD"}
    assert done.units_charged is None
    (row,) = ledger_rows(pipeline)
    assert row.units == 0 and row.tasks == 1 and set(row.cash) == {"USD"}
    assert row.cash["USD"] == float(done.cash_charged["USD"]) > 0


def test_without_an_api_key_a_newer_design_job_is_parked_before_any_create(pipeline: Pipeline) -> None:
    # Given a deployment with the access and secret keys only (the fixture's secret)
    handler = pipeline.submit_handler()
    # When a kling-3.0 job is sent
    pipeline.send({"job_id": "new-no-key", "prompt": "a fox", "model": "kling-3.0"})
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: bool(queue_messages(pipeline.sqs, pipeline.dlq_url))
    )
    # Then nothing was sent to Kling, and the job waits with the fix named
    assert pipeline.sim.stats()["creates"]["accepted"] == 0
    assert pipeline.sim.stats()["tasks_by_external_task_id"] == {}
    job = pipeline.store.get("new-no-key")
    assert job.state is JobState.QUEUED and job.reserved_units is None
    (parked,) = queue_messages(pipeline.sqs, pipeline.dlq_url)
    reason = json.dumps(parked["MessageAttributes"])
    assert "kling-3.0" in reason and "api_key" in reason


def test_a_legacy_job_is_signed_with_the_api_key_when_there_is_one(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a deployment with an API key only
    store_credentials(pipeline, api_key=api_key(pipeline))
    # When a legacy model's job is sent
    job = submitted(completion, "legacy-on-key", model="kling-v2-6")
    # Then Kling took it on the legacy path (the API key serves both designs)
    assert job.state is JobState.SUBMITTED
    assert creates(pipeline) == {"text2video": 1}
    assert KlingClient(pipeline.sim.base_url, api_key=api_key(pipeline)).get_task("text2video", str(job.task_id))
