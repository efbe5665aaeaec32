"""The pipeline's own messages about a job it has recorded: a reference by id (its request stays in the
job record), so a request near the message limit never overflows a re-send or the workflow's state, and
a parked job's dead letter is its request, which a redrive makes the same job again, never a new one.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from kling_pipeline.lifecycle import JobState, Transition
from kling_pipeline.requests import MAX_MESSAGE_BYTES, JobRequest
from tests.support.scenarios import (
    ACCESS_KEY,
    SECRET_KEY,
    Completion,
    as_callback_body,
    creates_for,
    job_in,
    kling_task,
)
from tests.support.sqs_driver import drive_queue

SQS_LIMIT = 256 * 1024


def near_limit_chain(job_id: str) -> str:
    """An extend chain whose message is just under the 256 KiB limit (as UTF-8): every prompt full, in a
    script that JSON's ASCII escapes make twice as long."""
    prompt = "猫" * 2500
    body = {
        "job_id": job_id,
        "model": "kling-v1-6",
        "prompt": prompt,
        "negative_prompt": prompt,
        "extend": [{"prompt": prompt, "negative_prompt": prompt} for _ in range(16)],
    }
    text = json.dumps(body, ensure_ascii=False)
    assert SQS_LIMIT - 10_000 < len(text.encode()) <= MAX_MESSAGE_BYTES
    return text


def queued_bodies(completion: Completion, wait_s: int = 0) -> list[str]:
    """Take every message off JobsQueue (waiting up to `wait_s` for a delayed one)."""
    sqs, url = completion.pipeline.sqs, completion.pipeline.queue_url
    bodies: list[str] = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0 if bodies else wait_s
    ).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def make_due(completion: Completion, job_id: str) -> None:
    completion.pipeline.dynamodb.update_item(
        TableName=completion.pipeline.table_name,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": "0"}},
    )


def test_a_chain_near_the_message_limit_goes_step_by_step_by_reference(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a 17-step chain whose message is just under 256 KiB, taken by the submit path
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=near_limit_chain("big-chain"))
    handler = pipeline.submit_handler()
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "big-chain", JobState.SUBMITTED, JobState.PROCESSING),
    )
    job = pipeline.store.get("big-chain")
    # When step 1 succeeds and its callback arrives
    task = kling_task(completion, "text2video", job.task_id, "succeed")
    assert completion.callback("big-chain", as_callback_body(task))["statusCode"] == 200
    # Then the workflow stored it and queued step 2, its state far below Step Functions' 256 KiB
    execution = completion.wait_for_execution("big-chain")
    assert execution["status"] == "SUCCEEDED", execution
    assert len(execution.get("output") or "") < 16 * 1024
    # And step 2's message names the job alone
    (body,) = queued_bodies(completion)
    assert json.loads(body) == {"job_id": "big-chain", "resume": True}
    # When that message is lost, and the poller sends it again after the resend delay
    make_due(completion, "big-chain")
    report = completion.poll(completion.poller())
    assert report["messages_resent"] == 1 and report["errors"] == 0, report
    # Then the submit path makes step 2 once, from the request in the job's record
    handler = pipeline.submit_handler()
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "big-chain", JobState.SUBMITTED, JobState.PROCESSING),
    )
    second = pipeline.store.get("big-chain")
    assert (second.step, creates_for(pipeline, second.external_task_id)) == (2, 1)
    assert second.request["extend"][0]["prompt"] == "猫" * 2500
    assert pipeline.dead_letters() == []


def test_a_backpressured_job_near_the_message_limit_comes_back_by_reference(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given Kling answering the next create 1302 (too many requests), and a request just under the limit (a
    # 1303 puts the job in its pool's line instead; a refill sends it the same reference: adapters.slot_pools)
    pipeline.sim.configure(force_create_errors=[1302])
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=near_limit_chain("big-wait"))
    # When the submit path takes it and Kling answers 1302
    drive_queue(
        pipeline.submit_handler(), pipeline.sqs, pipeline.queue_url, until=lambda: pipeline.backpressured("big-wait")
    )
    # Then the message that comes back names the job alone, and nothing was dead-lettered
    assert [json.loads(b) for b in queued_bodies(completion, wait_s=5)] == [{"job_id": "big-wait", "resume": True}]
    assert pipeline.dead_letters() == []


def test_a_claim_parked_by_the_poller_leaves_its_request_and_a_redrive_finishes_that_job(
    completion: Completion,
) -> None:
    pipeline = completion.pipeline
    # Given a claim abandoned before any create, and Kling refusing our keys when the poller asks
    request = JobRequest.model_validate({"job_id": "parked", "prompt": "a slow boat"})
    job, _ = pipeline.store.create("parked", request, by="test")
    pipeline.store.transition(
        job,
        Transition(
            job.state,
            JobState.SUBMITTING,
            {"lease_owner": "dead", "lease_expires_at": 0, "claimed_at": 0},
            by="worker-that-dies",
        ),
    )
    secrets = boto3.client("secretsmanager")
    secret = pipeline.resolver.refs["KlingCredentials"]
    secrets.put_secret_value(SecretId=secret, SecretString=json.dumps({"access_key": "nobody", "secret_key": "x" * 32}))
    # When the poller reconciles it
    report = completion.poll(completion.poller())
    # Then the job waits in QUEUED, and the DLQ holds its request with its job id and the fix
    assert pipeline.store.get("parked").state is JobState.QUEUED, report
    (dead,) = pipeline.dead_letters()
    assert dead["MessageAttributes"]["job_id"]["StringValue"] == "parked"
    assert "dlq --redrive" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    body: dict[str, Any] = json.loads(dead["Body"])
    assert body == pipeline.store.get("parked").request
    # When the keys are fixed and the message is redriven (a new message, a new id)
    secrets.put_secret_value(
        SecretId=secret, SecretString=json.dumps({"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    )
    new_id = pipeline.send(dead["Body"])
    drive_queue(
        pipeline.submit_handler(),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "parked", JobState.SUBMITTED, JobState.PROCESSING),
    )
    # Then that job went on to Kling once, and no job was made of the redriven message
    assert pipeline.tasks_for("parked") == 1
    assert pipeline.store.find(new_id) is None


def test_a_reference_to_no_recorded_job_makes_no_job(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a reference to a job the table does not hold
    message_id = pipeline.send({"job_id": "nobody-knows", "resume": True})
    # When the submit path takes it
    pipeline.drain(pipeline.submit_handler(), lambda: len(pipeline.dead_letters()) == 1)
    # Then it is dead-lettered with why, and no job was recorded, under either id
    (dead,) = pipeline.dead_letters()
    assert "no job nobody-knows is recorded" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert pipeline.store.find("nobody-knows") is None and pipeline.store.find(message_id) is None
    assert pipeline.sim.stats()["tasks_total"] == 0
