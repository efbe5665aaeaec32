"""Signed Kling callbacks through the callback function (moto + the simulator over HTTP): a verified
terminal body completes its job without asking Kling; anything else is refused or taken as a hint."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from kling_pipeline.adapters.job_store import CALLBACK_IDS_ATTR
from kling_pipeline.lifecycle import JobState
from tests.support.scenarios import Completion, as_callback_body, finish, kling_task, submitted

OLD_SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="  # Kling's test vector's
NEW_SECRET = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyc2VjcmV0MTI="
ANY_TEXT = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=300)


def hold_kling_secret(completion: Completion, value: str) -> None:
    """Store Kling's webhook secret(s) in KlingWebhookSecret, as the README says; the next invocation reads it."""
    arn = completion.pipeline.resolver.refs["KlingWebhookSecret"]
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=value)
    completion.reconfigure("CallbackFunction")


def signed(body: str, webhook_id: str, *secrets: str, at: float | None = None) -> dict[str, str]:
    """The headers Kling sends with `body`: one signature per secret it signs with (two mid-rotation)."""
    when = datetime.fromtimestamp(int(time.time() if at is None else at), UTC)
    signatures = " ".join(Webhook(secret).sign(webhook_id, when, body) for secret in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signatures,
    }


def finished_task_body(completion: Completion, job_id: str, status: str = "succeed") -> tuple[str, str]:
    """A submitted job whose Kling task has reached `status`: (its task id, the callback body Kling sends)."""
    job = submitted(completion, job_id)
    task = kling_task(completion, job.kind, job.task_id, status)
    return task.task_id, json.dumps(as_callback_body(task))


def gets(completion: Completion, task_id: str) -> int:
    return int(completion.pipeline.sim.stats()["gets_per_task"].get(task_id, 0))


def raw_item(completion: Completion, job_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(completion.pipeline.table_name)
    item: dict[str, Any] = table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
    return item


def action(answer: dict[str, Any]) -> str:
    return str(json.loads(answer["body"]).get("action", ""))


def test_a_signed_terminal_callback_completes_the_job_without_asking_kling(completion: Completion) -> None:
    # Given Kling's webhook secret is stored, and a job whose task has succeeded
    hold_kling_secret(completion, OLD_SECRET)
    task_id, body = finished_task_body(completion, "signed-done")
    before = gets(completion, task_id)
    # When Kling's signed success callback arrives
    answer = completion.callback("signed-done", body, headers=signed(body, "msg-1", OLD_SECRET))
    # Then the job completes from the body alone: zero GETs to Kling
    assert answer["statusCode"] == 200, answer
    assert completion.wait_for_execution("signed-done")["status"] == "SUCCEEDED"
    job = completion.pipeline.store.get("signed-done")
    assert job.state is JobState.COMPLETED
    assert gets(completion, task_id) == before
    # (its webhook-id kept on the job, to refuse it a second time)
    assert raw_item(completion, "signed-done")[CALLBACK_IDS_ATTR] == {"msg-1"}


def test_a_bad_signature_is_refused_and_changes_nothing(completion: Completion) -> None:
    # Given Kling's secret stored, and a job whose task has succeeded
    hold_kling_secret(completion, OLD_SECRET)
    task_id, body = finished_task_body(completion, "forged")
    item, before = raw_item(completion, "forged"), gets(completion, task_id)
    # When a callback arrives signed with another secret, or signed for another body
    forged = completion.callback("forged", body, headers=signed(body, "msg-f", NEW_SECRET))
    altered = completion.callback(
        "forged", body.replace("succeed", "failed"), headers=signed(body, "msg-g", OLD_SECRET)
    )
    # Then both are 401, and neither the job nor Kling heard of them
    assert (forged["statusCode"], altered["statusCode"]) == (401, 401)
    assert raw_item(completion, "forged") == item
    assert gets(completion, task_id) == before
    assert completion.executions() == []


def test_a_stale_timestamp_is_refused(completion: Completion) -> None:
    # Given Kling's secret stored, and a job whose task has succeeded
    hold_kling_secret(completion, OLD_SECRET)
    _, body = finished_task_body(completion, "stale")
    item = raw_item(completion, "stale")
    # When a genuine signed callback arrives six minutes after it was signed (a replay, or a clock far off)
    answer = completion.callback("stale", body, headers=signed(body, "msg-s", OLD_SECRET, at=time.time() - 360))
    # Then it is 401 and changes nothing
    assert answer["statusCode"] == 401
    assert raw_item(completion, "stale") == item


def test_a_replayed_webhook_id_changes_nothing(completion: Completion) -> None:
    # Given a job completed by Kling's signed success callback
    hold_kling_secret(completion, OLD_SECRET)
    task_id, body = finished_task_body(completion, "replayed")
    headers = signed(body, "msg-r", OLD_SECRET)
    assert completion.callback("replayed", body, headers=headers)["statusCode"] == 200
    completion.wait_for_execution("replayed")
    item, before = raw_item(completion, "replayed"), gets(completion, task_id)
    # When the same callback (same webhook-id, within the 5 minutes) arrives again
    answer = completion.callback("replayed", body, headers=headers)
    # Then it is acknowledged as a duplicate and changes nothing
    assert answer["statusCode"] == 200
    assert action(answer).startswith("duplicate")
    assert raw_item(completion, "replayed") == item
    assert gets(completion, task_id) == before
    assert len(completion.executions()) == 1


def test_during_a_rotation_both_secrets_signatures_verify(completion: Completion) -> None:
    # Given the old and the new secret both stored (Kling is rotating its secret)
    hold_kling_secret(completion, f"{NEW_SECRET} {OLD_SECRET}")
    task_id, body = finished_task_body(completion, "rotating", status="succeed")
    before = gets(completion, task_id)
    processing = json.dumps(json.loads(body) | {"task_status": "processing", "task_result": None})
    # When a callback signed with the old secret alone, then one signed with both, arrive
    first = completion.callback("rotating", processing, headers=signed(processing, "msg-o", OLD_SECRET))
    second = completion.callback("rotating", body, headers=signed(body, "msg-n", OLD_SECRET, NEW_SECRET))
    # Then both verify, and the job completes without a GET
    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert action(first) == "SUBMITTED -> PROCESSING"
    completion.wait_for_execution("rotating")
    assert completion.pipeline.store.get("rotating").state is JobState.COMPLETED
    assert gets(completion, task_id) == before


def test_after_the_rotation_the_new_secret_alone_verifies_kling_s_new_signature(completion: Completion) -> None:
    # Given only the new secret stored (the rotation is over)
    hold_kling_secret(completion, NEW_SECRET)
    task_id, body = finished_task_body(completion, "rotated")
    before = gets(completion, task_id)
    # When Kling signs with the new secret alone
    answer = completion.callback("rotated", body, headers=signed(body, "msg-x", NEW_SECRET))
    # Then it verifies: no GET
    assert answer["statusCode"] == 200
    completion.wait_for_execution("rotated")
    assert gets(completion, task_id) == before
    # and one signed with the old secret alone no longer does
    _, other = finished_task_body(completion, "rotated-old")
    assert completion.callback("rotated-old", other, headers=signed(other, "msg-y", OLD_SECRET))["statusCode"] == 401


def test_an_unsigned_callback_is_a_hint_confirmed_with_kling(completion: Completion) -> None:
    # Given Kling's secret stored, and a job whose task has succeeded
    hold_kling_secret(completion, OLD_SECRET)
    task_id, body = finished_task_body(completion, "unsigned")
    before = gets(completion, task_id)
    # When a callback without signature headers arrives (a console without a secret, or a stripped one)
    answer = completion.callback("unsigned", body)
    # Then it is handled as today: a hint, confirmed by one GET
    assert answer["statusCode"] == 200
    completion.wait_for_execution("unsigned")
    assert completion.pipeline.store.get("unsigned").state is JobState.COMPLETED
    assert gets(completion, task_id) == before + 1


def test_with_no_secret_stored_a_signed_callback_is_a_hint(completion: Completion) -> None:
    # Given no Kling webhook secret (the stack's "none"), and a job whose task has succeeded
    task_id, body = finished_task_body(completion, "no-secret")
    before = gets(completion, task_id)
    # When a signed callback arrives
    answer = completion.callback("no-secret", body, headers=signed(body, "msg-z", OLD_SECRET))
    # Then it cannot be verified, so it is confirmed with a GET, as today
    assert answer["statusCode"] == 200
    completion.wait_for_execution("no-secret")
    assert gets(completion, task_id) == before + 1


def test_a_signed_callback_still_needs_the_url_token(completion: Completion) -> None:
    # Given Kling's secret stored, and a job whose task has succeeded
    hold_kling_secret(completion, OLD_SECRET)
    _, body = finished_task_body(completion, "no-token")
    item = raw_item(completion, "no-token")
    # When a correctly signed callback arrives without our URL token
    answer = completion.callback("no-token", body, token=None, headers=signed(body, "msg-t", OLD_SECRET))
    # Then it is 401 and changes nothing
    assert answer["statusCode"] == 401
    assert raw_item(completion, "no-token") == item


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    webhook_id=ANY_TEXT,
    timestamp=ANY_TEXT | st.integers(-(10**13), 10**13).map(str) | st.just(str(int(time.time()))),
    signature=ANY_TEXT | st.just("v1,") | st.text("v1, ,=+/abc", max_size=80),
    body=ANY_TEXT,
)
def test_no_signed_looking_callback_gets_a_5xx_or_moves_the_job(
    completion: Completion, webhook_id: str, timestamp: str, signature: str, body: str
) -> None:
    # Given Kling's secret stored and a live job, When anything with signature headers arrives with our token
    if completion.pipeline.store.find("prop-target") is None:
        hold_kling_secret(completion, OLD_SECRET)
        submitted(completion, "prop-target")
    before = completion.pipeline.store.get("prop-target")
    headers = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    answer = completion.callback("prop-target", body, headers=headers)
    # Then it is refused below 500 and the job has not moved
    assert answer["statusCode"] < 500, answer
    assert completion.pipeline.store.get("prop-target").version == before.version


def test_a_job_whose_signed_callbacks_arrive_is_never_asked_about(completion: Completion) -> None:
    # Given Kling's webhook secret is held, and jobs like the next one learned as quick (the first to end are)
    hold_kling_secret(completion, OLD_SECRET)
    completion.pipeline.sim.configure(generation_min_s=30, generation_max_s=30)
    finish(completion, "signed-quick")
    # and a job of that kind taking far longer than that (5 s here), on a deployment expecting 20 s
    completion.pipeline.resolver.parameters["ExpectedStdSeconds"] = "20"
    completion.pipeline.sim.configure(generation_min_s=3000, generation_max_s=3000)
    job = submitted(completion, "signed-slow")
    task = kling_task(completion, job.kind, job.task_id, "processing")
    # When Kling's signed callback shows it running
    processing = json.dumps(as_callback_body(task))
    answer = completion.callback("signed-slow", processing, headers=signed(processing, "msg-p", OLD_SECRET))
    assert answer["statusCode"] == 200, answer
    # and the poller runs past the learned time and the wait for callbacks, while Kling is still at work
    seen = completion.pipeline.store.get("signed-slow")
    assert seen.state is JobState.PROCESSING and seen.expected_finish_at is not None
    time.sleep(max(0.0, seen.expected_finish_at + 3.5 - time.time()))  # CallbackWaitSeconds is 2 here
    before = queries(completion)
    report = completion.poll(completion.poller())
    # Then the poller asked Kling nothing about it (counted at the simulator)
    assert report["kling_queries"] == 0 and queries(completion) == before, report
    assert completion.pipeline.store.get("signed-slow").state is JobState.PROCESSING
    # And when its task ends, its signed callback completes it, still without a query
    done = json.dumps(as_callback_body(kling_task(completion, job.kind, job.task_id, "succeed")))
    before = queries(completion)
    answer = completion.callback("signed-slow", done, headers=signed(done, "msg-s", OLD_SECRET))
    assert answer["statusCode"] == 200, answer
    assert completion.wait_for_execution("signed-slow")["status"] == "SUCCEEDED"
    assert completion.pipeline.store.get("signed-slow").state is JobState.COMPLETED
    assert queries(completion) == before


def queries(completion: Completion) -> int:
    """Every query call Kling counted (look-ups, batches, list pages)."""
    return int(completion.pipeline.sim.stats()["kling_queries"])
