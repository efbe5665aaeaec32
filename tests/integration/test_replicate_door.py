"""A job through Replicate's door, end to end: moto for AWS (from template.yaml), the Replicate simulator over
HTTP, Replicate's signed webhooks caught where our API would be and handed to CallbackFunction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest

from kling_local.replicate_sim import ReplicateSimConfig, ReplicateSimulator
from kling_pipeline.lifecycle import JobState
from tests.fal_sim.conftest import Receiver
from tests.support.provider_doors import DoorHarness, harness, wait_until
from tests.support.scenarios import Completion

TOKEN = "r8_integration_token"


@pytest.fixture
def replicate(completion: Completion) -> Iterator[DoorHarness]:
    receiver = Receiver()
    config = ReplicateSimConfig(
        api_token=TOKEN, speed=1000.0, start_max_s=5.0, generation_min_s=30.0, generation_max_s=60.0, seed=5
    )
    with ReplicateSimulator(config) as sim:
        pipeline = completion.pipeline
        # The API token for the functions that call Replicate; the webhook secret, in its own secret, for the callback.
        secrets = boto3.client("secretsmanager")
        secrets.put_secret_value(
            SecretId=pipeline.resolver.refs["ReplicateCredentials"], SecretString=json.dumps({"api_token": TOKEN})
        )
        secrets.put_secret_value(
            SecretId=pipeline.resolver.refs["ReplicateWebhookSecret"], SecretString=sim.webhook_secret
        )
        env = {
            "REPLICATE_BASE_URL": sim.base_url,
            "REPLICATE_CREDENTIALS_SECRET": pipeline.resolver.refs["ReplicateCredentials"],
            "REPLICATE_WEBHOOK_SECRET": pipeline.resolver.refs["ReplicateWebhookSecret"],
            "PUBLIC_API_BASE_URL": f"http://127.0.0.1:{receiver.server.server_address[1]}",
        }
        yield harness("replicate", completion, sim, receiver, env, model="kling-v2-5-turbo", mode="pro")
    receiver.close()


def test_a_replicate_job_completes_through_its_signed_webhook_with_no_look_up(replicate: DoorHarness) -> None:
    # Given a job naming provider replicate (Kling 2.5 turbo pro, 10 s)
    job = replicate.submit("rep-happy", duration="10")
    # Then one prediction was made, its reference stored by the SUBMITTED transition
    assert job.state is JobState.SUBMITTED
    assert (job.provider_task or {})["id"] == job.task_id
    assert (job.provider_task or {})["endpoint"] == "kwaivgi/kling-v2.5-turbo-pro"
    # When Replicate's signed webhook arrives
    answers = replicate.forward_callbacks("rep-happy")
    assert [a["statusCode"] for a in answers] == [200], answers
    replicate.completion.wait_for_execution("rep-happy")
    # Then the video is in S3 with its cost in USD (10 s at Replicate's price), and Replicate was never asked
    done = replicate.store.get("rep-happy")
    assert done.state is JobState.COMPLETED, done.error_message
    assert done.cash_charged and float(done.cash_charged["USD"]) == pytest.approx(0.7)
    assert done.video_expires_at is not None  # Replicate deletes the output an hour after the prediction ended
    stats = replicate.stats()
    assert stats["creates"] == 1 and stats["gets"] == 0 and stats["list_pages"] == 0


def test_the_callback_verifies_with_replicate_webhook_secret_and_needs_no_api_token(replicate: DoorHarness) -> None:
    # Given a job made at Replicate, and then no API token left in ReplicateCredentials (what the callback
    # would hold if its role could read that secret: it cannot, template.yaml)
    job = replicate.submit("rep-no-token", duration="5")
    assert job.state is JobState.SUBMITTED
    boto3.client("secretsmanager").put_secret_value(
        SecretId=replicate.completion.pipeline.resolver.refs["ReplicateCredentials"],
        SecretString=json.dumps({"api_token": ""}),
    )
    replicate.completion.handlers["CallbackFunction"] = replicate.callback_handler()  # a cold start
    # When Replicate's signed webhook arrives
    answers = replicate.forward_callbacks("rep-no-token")
    # Then the callback verified it with ReplicateWebhookSecret alone and the job completes
    assert [a["statusCode"] for a in answers] == [200], answers
    replicate.completion.wait_for_execution("rep-no-token")
    assert replicate.store.get("rep-no-token").state is JobState.COMPLETED


def test_a_duplicate_webhook_changes_nothing(replicate: DoorHarness) -> None:
    # Given a job completed through its webhook
    replicate.submit("rep-dup")
    replicate.forward_callbacks("rep-dup")
    replicate.completion.wait_for_execution("rep-dup")
    # When Replicate delivers the same webhook (the same webhook-id) again
    delivery = replicate.for_job("rep-dup")[0]
    again = replicate.callback(delivery.path, delivery.body, delivery.headers)
    # Then it is acknowledged as a duplicate, and one download ran
    assert again["statusCode"] == 200 and "duplicate" in json.loads(again["body"])["action"]
    assert len(replicate.completion.executions()) == 1


def test_a_webhook_with_a_bad_signature_is_401_and_changes_nothing(replicate: DoorHarness) -> None:
    # Given a job whose real webhook is lost
    replicate.sim.configure(webhook_loss_rate=1.0)
    job = replicate.submit("rep-forged")
    body = json.dumps(
        {"id": job.task_id, "status": "succeeded", "output": "https://evil.example/x.mp4", "webhook": "x"}
    ).encode()
    headers = {"webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"}
    # When a webhook whose signature the account's secret does not verify arrives, with our valid URL token
    from kling_pipeline.adapters.callback_tokens import job_token
    from tests.support.scenarios import SIGNING_SECRET

    path = f"/callbacks/rep-forged/replicate?token={job_token(SIGNING_SECRET, 'rep-forged')}"
    answer = replicate.callback(path, body, headers)
    # Then it is refused (401) and the job is as it was
    assert answer["statusCode"] == 401
    after = replicate.store.get("rep-forged")
    assert after.state is JobState.SUBMITTED and after.version == job.version


def test_a_lost_create_answer_is_reconciled_by_listing_and_never_created_twice(replicate: DoorHarness) -> None:
    # Given other predictions on the account, a list of 2 a page, and the answer to our create lost
    for number in range(3):
        replicate.submit(f"rep-other-{number}")
    replicate.sim.configure(page_size=2, create_answer_loss_rate=1.0)
    replicate.send("rep-lost")
    replicate.drive(lambda: replicate.stats()["answers_lost"] == 1)
    job = replicate.store.get("rep-lost")
    # Then the job waits to be reconciled (no task recorded, nothing sent again yet)
    assert job.task_id is None and job.needs_reconcile
    # When its message comes back (Replicate now answering)
    replicate.sim.configure(create_answer_loss_rate=0.0)
    replicate.drive(lambda: replicate.store.get("rep-lost").state is JobState.SUBMITTED)
    # Then the job took the prediction its lost create made, found by walking the list for its webhook URL:
    # one create for it, never two
    stats = replicate.stats()
    assert stats["creates"] == 4 and stats["max_creates_per_webhook"] == 1
    assert stats["list_pages"] >= 1
    found = replicate.store.get("rep-lost")
    assert found.task_id and (found.provider_task or {})["id"] == found.task_id
    # and it completes through its webhook
    replicate.forward_callbacks("rep-lost")
    replicate.completion.wait_for_execution("rep-lost")
    assert replicate.store.get("rep-lost").state is JobState.COMPLETED


def test_an_output_deleted_before_it_was_copied_fails_provider_output_expired(replicate: DoorHarness) -> None:
    # Given Replicate's webhook is lost and its hour (3.6 s here) passes before anyone looks
    replicate.sim.configure(webhook_loss_rate=1.0, output_lifetime_s=3600.0)
    replicate.submit("rep-expired")
    wait_until(lambda: replicate.stats()["outputs_deleted"] >= 1, 30.0, "Replicate to delete the output")
    # When the poller looks it up
    job = replicate.poll_until("rep-expired", JobState.FAILED, JobState.DOWNLOADING, JobState.COMPLETED)
    # Then the job ends FAILED PROVIDER_OUTPUT_EXPIRED, saying so plainly; nothing was downloaded
    assert job.state is JobState.FAILED
    assert job.error_code == "PROVIDER_OUTPUT_EXPIRED"
    assert "deleted" in (job.error_message or "") and "hour" in (job.error_message or "")
    assert replicate.completion.executions() == []


def test_a_lost_webhook_is_looked_up_by_the_poller_well_inside_the_hour(replicate: DoorHarness) -> None:
    # Given Replicate loses every webhook, and the poller's own cadence would wait far longer than the hour
    replicate.sim.configure(webhook_loss_rate=1.0, generation_min_s=100_000.0, generation_max_s=100_000.0)
    schedule = replicate.completion.pipeline.resolver.function_environment("PollerFunction")["POLL_SCHEDULE"]
    slow = json.loads(schedule) | {"poll_interval_s": 5000}
    replicate.env |= {"POLL_SCHEDULE": json.dumps(slow), "REPLICATE_POLL_WITHIN_S": "600"}
    job = replicate.submit("rep-cadence")
    assert (job.next_poll_at or 0) - time.time() <= 600
    # (made due now, as if its first look had come)
    pipeline = replicate.completion.pipeline
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"job_id": {"S": "rep-cadence"}},
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": "1"}},
    )
    # When the poller looks it up and finds it still running
    replicate.completion.poll(replicate.completion.poller(**replicate.env))
    # Then its next look is within ReplicatePollWithinSeconds, not the poller's 5000 s interval
    after = replicate.store.get("rep-cadence")
    assert replicate.stats()["gets"] == 1
    assert 0 < (after.next_poll_at or 0) - time.time() <= 600


def test_a_job_still_at_replicate_is_cancelled_there(replicate: DoorHarness) -> None:
    # Given a long prediction
    replicate.sim.configure(generation_min_s=100_000.0, generation_max_s=100_000.0)
    replicate.submit("rep-cancel")
    # When it is cancelled through the jobs API
    answer = replicate.jobs_api().call("POST", "/jobs/rep-cancel/cancel")
    # Then Replicate was asked (POST .../cancel) and the job is CANCELLED, saying what Replicate bills
    assert answer.status == 200, answer.body
    job = replicate.store.get("rep-cancel")
    assert job.state is JobState.CANCELLED and "Replicate" in (job.error_message or "")
    assert replicate.stats()["cancels"] == 1
