"""A deployment that reaches Kling only through another door (here fal.ai): its KlingCredentials secret stays
as the stack created it (no keys), and a provider is enabled by its secret alone. Its doors' jobs run (the
submit path, the callback, the poller); a Kling job is parked with the fix; a Kling secret that holds
something malformed is still one clear error at cold start. Moto for AWS, the fal simulator over HTTP."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from kling_pipeline.lifecycle import JobState
from tests.integration.test_fal_door import FalDoor, fal  # noqa: F401 - the fal door's fixture
from tests.integration.test_kling_keys_missing import AS_CREATED
from tests.support.sqs_driver import drive_queue, queue_messages


def kling_secret_holds(door: FalDoor, value: str) -> None:
    pipeline = door.completion.pipeline
    boto3.client("secretsmanager").put_secret_value(
        SecretId=pipeline.resolver.refs["KlingCredentials"], SecretString=value
    )


@pytest.fixture
def fal_only(fal: FalDoor) -> FalDoor:  # noqa: F811 - the imported fixture, used
    kling_secret_holds(fal, AS_CREATED)
    return fal


def test_a_fal_job_completes_in_a_deployment_whose_kling_secret_is_empty(fal_only: FalDoor) -> None:
    # Given fal enabled and the Kling secret as the stack created it
    # When a fal job is submitted and fal's webhook arrives
    job = fal_only.submit("only-fal", model="kling-v3", mode="pro", duration="5")
    assert job.state is JobState.SUBMITTED, job.error_message
    answers = fal_only.forward_webhooks("only-fal")
    assert [a["statusCode"] for a in answers] == [200]
    fal_only.completion.wait_for_execution("only-fal")
    # Then the video is in S3, from one create at fal, and nothing was parked
    done = fal_only.store.get("only-fal")
    assert done.state is JobState.COMPLETED, done.error_message
    assert fal_only.stats()["creates"] == 1
    assert fal_only.completion.pipeline.dead_letters() == []


def test_a_kling_job_there_is_parked_with_the_fix_and_nothing_is_sent_to_kling(fal_only: FalDoor) -> None:
    # Given fal enabled and the Kling secret empty
    pipeline = fal_only.completion.pipeline
    handler = pipeline.submit_handler(**fal_only.env)
    # When a job naming no provider (Kling's own API, the deployment's default) is submitted
    pipeline.send({"job_id": "via-kling", "prompt": "a cat on a mat"})
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=lambda: len(pipeline.dead_letters()) == 1)
    # Then it is parked in the DLQ, its reason naming both fixes: the Kling keys, or another door
    dead = queue_messages(pipeline.sqs, pipeline.dlq_url)[0]
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert "KlingCredentials" in reason and "README" in reason and "redrive" in reason, reason
    assert "provider fal" in reason, reason
    # and the job waits in QUEUED with no reservation, Kling never asked
    job = pipeline.store.get("via-kling")
    assert job.state is JobState.QUEUED and job.reserved_units is None
    assert pipeline.tasks_for("via-kling") == 0


def test_the_poller_with_an_empty_kling_secret_settles_a_live_fal_job(fal_only: FalDoor) -> None:
    # Given a fal job whose webhook fal loses, in a deployment whose Kling secret is empty
    fal_only.sim.configure(webhook_loss_rate=1.0)
    assert fal_only.submit("only-fal-lost").state is JobState.SUBMITTED
    # When the poller runs (its account check included: no Kling account to read)
    report = fal_only.completion.poll(fal_only.completion.poller(**fal_only.env))
    assert "kling_keys_missing" not in report and report["errors"] == 0, report
    fal_only.poll_until("only-fal-lost", JobState.DOWNLOADING, JobState.COMPLETED)
    fal_only.completion.wait_for_execution("only-fal-lost")
    # Then the video is collected from fal's one request
    assert fal_only.store.get("only-fal-lost").state is JobState.COMPLETED
    assert fal_only.stats()["creates"] == 1


def test_a_kling_secret_of_the_wrong_shape_is_still_one_error_at_cold_start(fal: FalDoor) -> None:  # noqa: F811
    # Given fal enabled and a Kling secret holding a misspelt field (not empty: malformed)
    kling_secret_holds(fal, json.dumps({"apikey": "sk-live-1"}))
    pipeline = fal.completion.pipeline
    handler = pipeline.submit_handler(**fal.env)
    # When a fal job is submitted
    pipeline.send({"job_id": "bad-shape", "prompt": "a cat", "provider": "fal", "mode": "pro"})
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=lambda: len(pipeline.dead_letters()) == 1)
    # Then it is parked with what is wrong in the Kling secret, and fal was never asked
    reason: Any = pipeline.dead_letters()[0]["MessageAttributes"]["failure_reason"]["StringValue"]
    assert "unknown field 'apikey'" in reason, reason
    assert fal.stats()["creates"] == 0
