"""Extend chains on moto (Step Functions executing the real ASL) and the Kling simulator: a
generate -> extend -> download pipeline as one job, each step a task of its own.

Only videos made by kling-v1/v1-5/v1-6 can be extended (the simulator enforces it as Kling does),
so every chain here asks for kling-v1-6.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kling_pipeline.adapters.download_workflow import execution_name
from kling_pipeline.adapters.ledger import Ledger
from kling_pipeline.job_ids import internal_name
from kling_pipeline.lifecycle import Job, JobState
from tests.support.jobs_api import JobsApi
from tests.support.scenarios import (
    Completion,
    as_callback_body,
    creates_for,
    job_in,
    kling_task,
    submitted,
)

CHAIN = {"model": "kling-v1-6", "extend": [{"prompt": "the cat walks off the mat"}]}


def step_settled_by_callback(completion: Completion, job: Job, kind: str, status: str = "succeed") -> Job:
    """Kling finishes the job's current step; its callback arrives; its workflow (if any) ends."""
    task = kling_task(completion, kind, job.task_id, status)
    assert completion.callback(job.job_id, as_callback_body(task))["statusCode"] == 200
    if status == "succeed":
        assert completion.wait_for_execution(execution_name(job.job_id, 1, job.step))["status"] == "SUCCEEDED"
    return completion.pipeline.store.get(job.job_id)


def next_step_submitted(completion: Completion, job_id: str) -> Job:
    """The submit function takes the next step's message (sent by the workflow, or the poller)."""
    pipeline = completion.pipeline
    pipeline.drain(
        pipeline.submit_handler(),
        lambda: job_in(pipeline, job_id, JobState.SUBMITTED, JobState.PROCESSING, JobState.FAILED),
    )
    return pipeline.store.get(job_id)


def object_keys(completion: Completion, prefix: str) -> list[str]:
    listing = completion.s3.list_objects_v2(Bucket=completion.bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def units_counted(completion: Completion) -> float:
    ledger = Ledger(completion.pipeline.resolver.refs["StatsTable"])
    today = datetime.now(UTC).date()
    return sum(row.units for row in ledger.costs(today, today))


def test_a_two_step_chain_stores_each_step_and_completes_with_the_extended_video(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a job asking for a base video and one extension
    job = submitted(completion, "chain-2", **CHAIN)
    assert (job.step, job.total_steps, job.task_kind) == (1, 2, "text2video")
    # When step 1's task succeeds and its callback arrives
    queued = step_settled_by_callback(completion, job, "text2video")
    # Then step 1 is stored, and the job waits in QUEUED for step 2, whose message the workflow sent
    assert (queued.state, queued.step, queued.awaiting_message) == (JobState.QUEUED, 2, True)
    assert queued.task_id is None and [s["step"] for s in queued.steps] == [1]
    assert object_keys(completion, "videos/chain-2") == ["videos/chain-2/step-1.mp4"]
    assert completion.events() == []  # nothing is announced before the last step
    # When the submit path takes step 2's message
    second = next_step_submitted(completion, "chain-2")
    # Then Kling got one video-extend of step 1's video, under the step's own external id
    assert (second.state, second.step, second.task_kind) in {
        (JobState.SUBMITTED, 2, "video-extend"),
        (JobState.PROCESSING, 2, "video-extend"),
    }
    assert (creates_for(pipeline, "chain-2"), creates_for(pipeline, second.external_task_id)) == (1, 1)
    extension = kling_task(completion, "video-extend", second.task_id, "succeed")
    assert (extension.task_info.parent_video or {}).get("id") == queued.steps[0]["video_id"]
    # When step 2's task succeeds and its callback arrives
    done = step_settled_by_callback(completion, second, "video-extend")
    # Then the job is COMPLETED with the extended video; both steps are stored, each with its units
    assert done.state is JobState.COMPLETED
    assert done.s3_uri == f"s3://{completion.bucket}/videos/chain-2/step-2.mp4"
    assert object_keys(completion, "videos/chain-2") == ["videos/chain-2/step-1.mp4", "videos/chain-2/step-2.mp4"]
    assert [s["step"] for s in done.steps] == [1, 2]
    assert float(done.steps[1]["duration"]) > float(done.steps[0]["duration"])  # Kling's extension is longer
    step_units = [float(s["units_charged"]) for s in done.steps]
    assert all(u > 0 for u in step_units)
    assert float(done.units_charged or 0) == sum(step_units) == units_counted(completion)
    # And one completion event names both steps and the job's total units
    (event,) = completion.events()
    assert event["detail-type"] == "Video Completed"
    assert [s["step"] for s in event["detail"]["steps"]] == [1, 2]
    assert float(event["detail"]["units_charged"]) == sum(step_units)


def test_a_failed_middle_step_fails_the_job_naming_it_and_keeps_the_stored_steps(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a three-step chain whose second step Kling accepts, bills and then fails
    extend = [{"prompt": "the cat jumps [[fail]]"}, {"prompt": "the cat lands"}]
    job = submitted(completion, "chain-fails", model="kling-v1-6", extend=extend)
    step_settled_by_callback(completion, job, "text2video")
    second = next_step_submitted(completion, "chain-fails")
    # When step 2's task fails and its callback says so
    failed = step_settled_by_callback(completion, second, "video-extend", status="failed")
    # Then the job is FAILED, its message names the step, and step 1's video stays stored
    assert failed.state is JobState.FAILED
    assert failed.error_message and failed.error_message.startswith("step 2 of 3: ")
    assert object_keys(completion, "videos/chain-fails") == ["videos/chain-fails/step-1.mp4"]
    assert [s["step"] for s in failed.steps] == [1]
    # And step 3 was never created; what Kling charged for both tasks is the job's and is counted
    assert creates_for(pipeline, internal_name("chain-fails", "s3")) == 0
    charged = float(failed.steps[0]["units_charged"]) + float(failed.units_charged or 0)
    assert units_counted(completion) == float(failed.total_units or 0) == charged > 0
    (event,) = completion.events()
    assert event["detail-type"] == "Video Failed" and "step 2 of 3" in event["detail"]["error_message"]


def test_a_chain_on_a_model_kling_cannot_extend_is_refused_before_any_create(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a chain asking kling-v2-6 (whose videos Kling does not extend)
    pipeline.send({"job_id": "chain-v26", "prompt": "a cat", "model": "kling-v2-6", "extend": [{"prompt": "more"}]})
    # When the submit function takes it
    pipeline.drain(pipeline.submit_handler(), lambda: len(pipeline.dead_letters()) == 1)
    # Then it is dead-lettered with the rule and the fix, and Kling was never asked
    (dead,) = pipeline.dead_letters()
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert "extend" in reason and "kling-v2-6" in reason and "kling-v1-6" in reason
    assert pipeline.sim.stats()["tasks_total"] == 0


def test_the_poller_sends_a_next_step_message_that_was_lost(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a chain whose step 1 is stored, and whose step 2 message never reaches the submit path
    job = submitted(completion, "chain-lost", **CHAIN)
    queued = step_settled_by_callback(completion, job, "text2video")
    assert queued.awaiting_message
    lost = drop_queued_messages(completion)
    assert [json.loads(body)["job_id"] for body in lost] == ["chain-lost"]
    # When the poller runs after the resend delay has passed (moved forward here)
    make_due(completion, "chain-lost")
    report = completion.poll(completion.poller())
    # Then it sent the step's message again, and the step goes on to Kling once
    assert report["messages_resent"] == 1, report
    second = next_step_submitted(completion, "chain-lost")
    assert (second.step, creates_for(pipeline, second.external_task_id)) == (2, 1)
    assert not second.awaiting_message


def drop_queued_messages(completion: Completion) -> list[str]:
    sqs, url = completion.pipeline.sqs, completion.pipeline.queue_url
    bodies: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def make_due(completion: Completion, job_id: str) -> None:
    """The job's next look by the poller is due now (as if its resend delay had passed)."""
    pipeline = completion.pipeline
    key: dict[str, Any] = {"job_id": {"S": job_id}}
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key=key,
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": "0"}},
    )


def test_a_chain_cancelled_between_steps_says_what_was_made_and_charged(
    completion: Completion, jobs_api: JobsApi
) -> None:
    # Given a chain whose step 1 is made, charged and stored, waiting in QUEUED for step 2
    job = submitted(completion, "chain-cancel", **CHAIN)
    queued = step_settled_by_callback(completion, job, "text2video")
    assert (queued.state, queued.step) == (JobState.QUEUED, 2)
    # When it is cancelled through the jobs API
    answer = jobs_api.call("POST", "/jobs/chain-cancel/cancel")
    # Then it is CANCELLED, and its message says step 1 was charged and stays stored (not "nothing was charged")
    assert answer.status == 200 and answer.body["state"] == "CANCELLED"
    message = jobs_api.job("chain-cancel").error_message or ""
    assert "nothing was charged" not in message
    assert "step 2 of 2" in message and queued.steps[0]["s3_uri"] in message
    assert f"{queued.total_units} units" in message
    # And no step 2 task is ever made
    assert creates_for(completion.pipeline, internal_name("chain-cancel", "s2")) == 0
