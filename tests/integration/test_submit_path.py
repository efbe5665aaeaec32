"""The submit path on moto + the Kling simulator: one queued request becomes exactly one Kling task."""

from __future__ import annotations

import json
import time

import pytest

from kling_pipeline.lifecycle import Job, JobState
from tests.support.scenarios import Completion, Pipeline, creates_for, job_in
from tests.support.sqs_driver import drive_queue, queue_messages


def test_happy_path_records_the_kling_task(pipeline: Pipeline) -> None:
    # Given a queued request for job happy-1
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "happy-1", "prompt": "a red fox in fresh snow", "duration": 5})
    # When the queue is drained until the job is SUBMITTED
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "happy-1", JobState.SUBMITTED)
    )

    # Then the job records its one Kling task and has released its claim
    job = pipeline.store.get("happy-1")
    assert job.task_id
    assert [h.state for h in job.history] == [JobState.QUEUED, JobState.SUBMITTING, JobState.SUBMITTED]
    assert creates_for(pipeline, "happy-1") == 1
    task = pipeline.kling().find_by_external_id("text2video", "happy-1")
    assert task is not None and task.task_id == job.task_id
    assert job.lease_owner is None  # the claim is released once the task is recorded


def test_message_without_job_id_uses_the_sqs_message_id(pipeline: Pipeline) -> None:
    # Given a queued request without a job_id
    handler = pipeline.submit_handler()
    message_id = pipeline.send({"prompt": "a lighthouse at dusk"})
    # When the queue is drained until the job named by the message id is SUBMITTED
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, message_id, JobState.SUBMITTED)
    )
    # Then exactly one Kling task was created for it
    assert creates_for(pipeline, message_id) == 1


def test_duplicate_messages_create_one_task(pipeline: Pipeline) -> None:
    # Given the same request queued three times
    handler = pipeline.submit_handler()
    body = {"job_id": "dup-1", "prompt": "paper boats on a pond"}
    for _ in range(3):
        pipeline.send(body)

    # When the queue is drained one message at a time until every copy is handled
    def all_handled() -> bool:
        attrs = pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])["Attributes"]
        waiting = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        return waiting == 0 and job_in(pipeline, "dup-1", JobState.SUBMITTED)

    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=all_handled, batch_size=1)
    # Then only one Kling task exists and nothing was dead-lettered
    assert creates_for(pipeline, "dup-1") == 1
    assert queue_messages(pipeline.sqs, pipeline.dlq_url) == []


def test_crash_after_kling_accepted_is_reconciled_without_a_second_create(pipeline: Pipeline) -> None:
    """A worker claimed the job and Kling accepted the task, then the worker died before writing."""
    # Given the dead worker's job, its lease over, and its task accepted at Kling
    handler = pipeline.submit_handler(SUBMIT_LEASE_S="0")  # the dead worker's lease is already over
    message, accepted = pipeline.crash_after_kling_accepted("crash-1", "a glass of water on a table")
    # When the message comes back and the queue is drained
    pipeline.send(message)  # SQS redelivers the message
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "crash-1", JobState.SUBMITTED, JobState.PROCESSING),
    )

    # Then the job is reconciled to the accepted task without a second create
    job_after: Job = pipeline.store.get("crash-1")
    assert job_after.task_id == accepted.task_id
    assert creates_for(pipeline, "crash-1") == 1
    assert pipeline.sim.stats()["calls"].get("POST text2video", 0) == 1
    assert any("external_task_id" in (h.note or "") for h in job_after.history)


def test_create_without_an_answer_is_reconciled_on_retry(pipeline: Pipeline) -> None:
    """Kling accepted but the response never arrived: the retry must find the task, not create another."""
    # Given Kling accepts creates but every answer is lost
    handler = pipeline.submit_handler()
    pipeline.sim.configure(create_response_drop_rate=1.0)
    # When a request is queued and drained until it is sent back to the queue
    pipeline.send({"job_id": "lost-answer", "prompt": "wind over wheat"})
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: pipeline.backpressured("lost-answer"),
    )
    # Then the job is marked for reconciliation
    assert pipeline.store.get("lost-answer").needs_reconcile
    # When the answers come through again and the queue is drained until the job is submitted
    pipeline.sim.configure(create_response_drop_rate=0.0)
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "lost-answer", JobState.SUBMITTED, JobState.PROCESSING),
    )
    # Then the retry found the first task instead of creating another
    assert creates_for(pipeline, "lost-answer") == 1


def test_throttling_storm_finishes_every_job_without_failures(completion: Completion) -> None:
    """200 jobs against an account limit of 3 concurrent tasks while the pipeline is told 5: 1303 is
    backpressure, never failure. Kling slots are given back when a task's end is seen (here by the poller:
    the callbacks are lost), so the poller runs beside the submit path."""
    # Given an account limit of 3 concurrent tasks and 200 queued jobs
    pipeline = completion.pipeline
    handler = pipeline.submit_handler(KLING_CONCURRENCY="5")
    poller = completion.poller(POOL_QUIET_S="1", KLING_CONCURRENCY="5")
    # Tasks of 0.2-0.4 s real time: long enough that three slots are always full while 200 wait.
    pipeline.sim.configure(concurrency_limit=3, generation_min_s=120, generation_max_s=240)
    job_ids = [f"storm-{i:03d}" for i in range(200)]
    for start in range(0, len(job_ids), 10):
        pipeline.sqs.send_message_batch(
            QueueUrl=pipeline.queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": json.dumps({"job_id": j, "prompt": f"scene {j}"})}
                for n, j in enumerate(job_ids[start : start + 10])
            ],
        )

    # When the queue is drained (the poller running every half second) until every job has been submitted
    pending = set(job_ids)
    last_poll = [0.0]

    def all_submitted() -> bool:
        if time.monotonic() - last_poll[0] > 0.5:
            completion.poll(poller)
            last_poll[0] = time.monotonic()
        pending.difference_update([j for j in list(pending)[:20] if (job := pipeline.store.find(j)) and job.task_id])
        return not pending

    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=all_submitted, batch_size=10, deadline_s=300)
    # Then Kling refused with 1303, yet every job got exactly one task and none failed
    stats = pipeline.sim.stats()
    assert stats["creates"]["refused_by_code"].get("1303", 0) > 0  # the storm really happened
    assert stats["concurrency"]["high_water"] <= 3
    assert all(creates_for(pipeline, j) == 1 for j in job_ids)
    assert queue_messages(pipeline.sqs, pipeline.dlq_url) == []
    throttled = [pipeline.store.get(j) for j in job_ids]
    assert not [j for j in throttled if j.state is JobState.FAILED]
    assert sum(j.backpressure_count for j in throttled) > 0


def test_final_kling_error_fails_the_job_with_klings_message(pipeline: Pipeline) -> None:
    # Given a request whose prompt Kling refuses with 1301
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "policy-1", "prompt": "something [[reject]] here"})
    # When the queue is drained until the job fails
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "policy-1", JobState.FAILED))
    # Then the job carries Kling's error and the message is not dead-lettered
    job = pipeline.store.get("policy-1")
    assert job.error_code == "KLING_1301"
    assert job.error_message and "1301" in job.error_message
    assert queue_messages(pipeline.sqs, pipeline.dlq_url) == []  # a Kling refusal is not a bad message


def test_malformed_json_goes_to_the_dlq_with_its_reason(pipeline: Pipeline) -> None:
    # Given a message whose body is not JSON
    handler = pipeline.submit_handler()
    message_id = pipeline.send("{this is not json")
    # When the queue is drained until the job fails
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, message_id, JobState.FAILED))
    # Then the message is in the DLQ with its reason, and Kling was never called
    dead = queue_messages(pipeline.sqs, pipeline.dlq_url)
    assert len(dead) == 1
    assert dead[0]["Body"] == "{this is not json"
    assert "not JSON" in dead[0]["MessageAttributes"]["failure_reason"]["StringValue"]
    assert dead[0]["MessageAttributes"]["source_message_id"]["StringValue"] == message_id
    assert pipeline.sim.stats()["calls"].get("POST text2video", 0) == 0


def test_invalid_field_fails_the_job_and_names_the_field(pipeline: Pipeline) -> None:
    # Given a request with an invalid duration
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "bad-duration", "prompt": "a cat", "duration": "7"})
    # When the queue is drained until the job fails
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "bad-duration", JobState.FAILED)
    )
    # Then the job and the dead letter name the field, and Kling was never called
    job = pipeline.store.get("bad-duration")
    assert job.error_code == "INVALID_REQUEST"
    assert job.error_message and "duration" in job.error_message
    dead = queue_messages(pipeline.sqs, pipeline.dlq_url)
    assert "duration" in dead[0]["MessageAttributes"]["failure_reason"]["StringValue"]
    assert pipeline.sim.stats()["calls"].get("POST text2video", 0) == 0


def test_invalid_duplicate_does_not_touch_a_running_job(pipeline: Pipeline) -> None:
    # Given a job that is already SUBMITTED
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "keep-me", "prompt": "a calm lake"})
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "keep-me", JobState.SUBMITTED)
    )
    # When an invalid request with the same job_id is queued and dead-lettered
    pipeline.send({"job_id": "keep-me", "prompt": "a calm lake", "mode": "ultra"})
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: len(queue_messages(pipeline.sqs, pipeline.dlq_url)) == 1,
    )
    # Then the running job is untouched
    assert pipeline.store.get("keep-me").state is JobState.SUBMITTED


@pytest.mark.parametrize("code", [1303, 5001])
def test_retryable_refusal_returns_the_job_to_the_queue(pipeline: Pipeline, code: int) -> None:
    # Given Kling refuses new tasks: the only slot is busy (1303) or it fails with 5xx (5001)
    handler = pipeline.submit_handler()
    if code == 1303:
        pipeline.sim.configure(concurrency_limit=1, generation_min_s=3000, generation_max_s=3000)
        pipeline.send({"job_id": "holder", "prompt": "first"})
        drive_queue(
            handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "holder", JobState.SUBMITTED)
        )
    else:
        pipeline.sim.configure(error_5xx_rate=1.0)
    # When another job is queued and drained until it is sent back to the queue
    pipeline.send({"job_id": "waiting", "prompt": "second"})
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: pipeline.backpressured("waiting"),
    )
    # Then the job is queued again, neither failed nor dead-lettered
    job = pipeline.store.get("waiting")
    assert job.state in (JobState.QUEUED, JobState.SUBMITTING)
    assert any(h.state is JobState.QUEUED and h.by == "submit" for h in job.history[1:])
    assert queue_messages(pipeline.sqs, pipeline.dlq_url) == []


def test_the_sample_sqs_event_is_what_the_submit_function_takes(pipeline: Pipeline) -> None:
    from kling_local.stack.worker import LambdaContext
    from tests.support.template import ROOT

    # Given the sample SQS event from events/
    event = json.loads((ROOT / "events" / "sqs_job_request.json").read_text())
    # When the submit function takes it
    response = pipeline.submit_handler()(event, LambdaContext.for_function("SubmitFunction"))
    # Then no record fails and the job is SUBMITTED with its metadata
    assert response == {"batchItemFailures": []}
    job = pipeline.store.get("sample-job-1")
    assert job.state is JobState.SUBMITTED
    assert job.request["metadata"] == {"sku": "MUG-001"}


def test_a_null_job_id_means_use_the_message_id(pipeline: Pipeline) -> None:
    # Given a request whose job_id is null
    handler = pipeline.submit_handler()
    message_id = pipeline.send({"job_id": None, "prompt": "a null id is no id"})
    # When the queue is drained until the job named by the message id is SUBMITTED
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, message_id, JobState.SUBMITTED)
    )
    # Then nothing was dead-lettered
    assert queue_messages(pipeline.sqs, pipeline.dlq_url) == []


def test_a_reused_job_id_with_another_request_is_refused_with_a_reason(pipeline: Pipeline) -> None:
    # Given a job already submitted for one request
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "reused", "prompt": "the first request"})
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "reused", JobState.SUBMITTED))
    # When another request comes with the same job_id and is dead-lettered
    pipeline.send({"job_id": "reused", "prompt": "a different request"})
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: len(queue_messages(pipeline.sqs, pipeline.dlq_url)) == 1,
    )
    # Then the DLQ says why, and the first job keeps its request and its one Kling task
    dead = queue_messages(pipeline.sqs, pipeline.dlq_url)[0]
    assert "already used by a different request" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert json.loads(dead["Body"])["prompt"] == "a different request"
    assert pipeline.store.get("reused").request["prompt"] == "the first request"
    assert creates_for(pipeline, "reused") == 1


def test_an_account_error_parks_the_job_instead_of_failing_it(pipeline: Pipeline) -> None:
    # Given Kling refuses creates with an account error (1000)
    handler = pipeline.submit_handler()
    pipeline.sim.configure(force_create_errors=[1000])
    # When a request is queued and drained until it is dead-lettered
    pipeline.send({"job_id": "bad-keys", "prompt": "a cat on a mat"})
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: len(queue_messages(pipeline.sqs, pipeline.dlq_url)) == 1,
    )
    # Then the job waits in QUEUED and the reason says how to fix the account
    job = pipeline.store.get("bad-keys")
    assert job.state is JobState.QUEUED  # waiting for an operator, not FAILED
    reason = queue_messages(pipeline.sqs, pipeline.dlq_url)[0]["MessageAttributes"]["failure_reason"]["StringValue"]
    assert "1000" in reason and "KlingCredentials" in reason and "redrive" in reason
    # Once the account is fixed, the redriven message completes the submission.
    # When the dead letter is redriven to the jobs queue and drained
    dead = queue_messages(pipeline.sqs, pipeline.dlq_url)[0]
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=dead["Body"])
    drive_queue(
        handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "bad-keys", JobState.SUBMITTED)
    )
    # Then the job is submitted with a single Kling task
    assert creates_for(pipeline, "bad-keys") == 1


def test_a_record_is_sent_back_unprocessed_when_the_invocation_is_nearly_over(pipeline: Pipeline) -> None:
    from kling_local.stack.sqs_source import lambda_record
    from kling_local.stack.worker import LambdaContext

    # Given a queued request, received by hand
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "late", "prompt": "a sunset"})
    message = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, AttributeNames=["All"])["Messages"][0]
    queue_arn = pipeline.resolver.arns["JobsQueue"]
    # When the submit function gets it with too little time left to call Kling
    response = handler(
        {"Records": [lambda_record(message, queue_arn, "us-east-1")]},
        LambdaContext.for_function("SubmitFunction", timeout_s=3),
    )
    # Then the record is reported done (and deleted, as Lambda would) with no Kling call and no job
    assert response == {"batchItemFailures": []}
    pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert pipeline.sim.stats()["calls"].get("POST text2video", 0) == 0
    assert pipeline.store.find("late") is None
    # Then the copy it sent back to the queue is submitted on the next drain
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=lambda: job_in(pipeline, "late", JobState.SUBMITTED))
