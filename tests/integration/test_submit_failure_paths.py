"""Never pay twice, never strand a job: the submit path against Kling's worst case.

Kling's contract does not promise that a reused external_task_id is refused, nor that a new task is
visible to queries at once, nor that an error answer means nothing was made. The simulator does all
of that here, and each test counts the tasks Kling made (and billed) for the job.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from kling_local.sim import SimConfig
from kling_pipeline.lifecycle import JobState
from tests.support.scenarios import Completion, Pipeline, job_in

AT_KLING = (JobState.SUBMITTED, JobState.PROCESSING, JobState.DOWNLOADING)


def submitted_after(pipeline: Pipeline, handler: Any, job_id: str, fault: dict[str, Any], *, prompt: str = "x") -> None:
    """Queue the job with `fault` on until it is sent back once, then with the fault off until Kling has it."""
    pipeline.sim.configure(**fault)
    pipeline.send({"job_id": job_id, "prompt": prompt})
    pipeline.drain(handler, lambda: pipeline.backpressured(job_id))
    pipeline.sim.configure(**{key: SimConfig.model_fields[key].default for key in fault})
    pipeline.drain(handler, lambda: job_in(pipeline, job_id, *AT_KLING))


@pytest.mark.parametrize(
    ("name", "fault", "env"),
    [
        ("created, then answered 5000 or a bare 502", {"create_lost_answer_rate": 1.0}, {}),
        ("created, then the connection cut", {"create_response_drop_rate": 1.0}, {}),
        ("created, then no answer in time", {"slow_rate": 1.0, "slow_s": 2.5}, {"KLING_TIMEOUT_S": "1"}),
        ("created, then answered without a task_id", {"shape_drift_rate": 1.0}, {}),
    ],
)
def test_an_unsettled_create_is_reconciled_never_repeated(
    pipeline: Pipeline, name: str, fault: dict[str, Any], env: dict[str, str]
) -> None:
    # Given a create that Kling performs but whose answer does not say so
    handler = pipeline.submit_handler(**env)
    if "shape_drift_rate" in fault:
        fault = fault | {"shape_drift_mode": "missing_task_id"}
    # When the job is queued, sent back, and the answers come through again
    submitted_after(pipeline, handler, "unsettled", fault)
    # Then the job holds the task Kling made, and Kling made one
    job = pipeline.store.get("unsettled")
    assert job.task_id is not None
    assert pipeline.tasks_for("unsettled") == 1, name
    assert any("unsettled" in (h.note or "") for h in job.history)


def test_an_unknown_code_on_a_create_is_reconciled_then_created_once_the_grace_is_over(pipeline: Pipeline) -> None:
    # Given a create answered with a code no version of this pipeline knows (nothing was made)
    handler = pipeline.submit_handler(RECONCILE_GRACE_S="2")
    pipeline.sim.configure(force_create_errors=[9999])
    # When the job is queued until Kling has it
    pipeline.send({"job_id": "unknown-code", "prompt": "x"})
    pipeline.drain(handler, lambda: job_in(pipeline, "unknown-code", *AT_KLING))
    # Then it looked for the task before creating again, and Kling holds exactly one
    job = pipeline.store.get("unknown-code")
    assert pipeline.tasks_for("unknown-code") == 1
    assert pipeline.sim.stats()["create_attempts_by_external_task_id"]["unknown-code"] == 2
    notes = " ".join(h.note or "" for h in job.history)
    assert "9999" in notes


def test_a_task_hidden_by_query_lag_is_waited_for_not_created_again(pipeline: Pipeline) -> None:
    # Given Kling hides a new task from queries for 3 s, and the first create's answer is lost
    handler = pipeline.submit_handler(RECONCILE_GRACE_S="6")
    pipeline.sim.configure(query_lag_s=3.0)
    # When the job is queued until Kling has it
    submitted_after(pipeline, handler, "lagged", {"create_lost_answer_rate": 1.0})
    # Then no second create was made while the task could not be seen
    assert pipeline.tasks_for("lagged") == 1
    assert pipeline.sim.stats()["create_attempts_by_external_task_id"]["lagged"] == 1
    assert pipeline.sim.stats()["faults"]["query_lag_hidden"] >= 1


def test_the_list_scan_finds_the_task_when_the_lookup_route_answers_a_bare_404(pipeline: Pipeline) -> None:
    # Given Kling's look-up by external id answers a bare 404 (not proof of anything)
    handler = pipeline.submit_handler()
    pipeline.sim.configure(external_id_lookup="missing")
    # When a create's answer is lost and the job comes back
    submitted_after(pipeline, handler, "via-list", {"create_lost_answer_rate": 1.0})
    # Then the list of recent tasks was scanned and the task recorded, not created again
    assert pipeline.tasks_for("via-list") == 1
    assert pipeline.sim.stats()["calls"].get("GET text2video list", 0) >= 1


def test_external_task_id_already_exists_never_fails_a_job_kling_is_running(pipeline: Pipeline) -> None:
    # Given Kling refuses a reused external id, hides new tasks for 6 s (longer than the 3 s reconcile grace,
    # shorter than two), and loses the first answer
    handler = pipeline.submit_handler(RECONCILE_GRACE_S="3")
    pipeline.sim.configure(refuse_reused_external_id=True, query_lag_s=6.0)
    # When the grace is over before the task shows, so a second create is refused with 1201
    submitted_after(pipeline, handler, "exists", {"create_lost_answer_rate": 1.0})
    # Then the job was not failed: it waited and recorded the one task Kling runs
    job = pipeline.store.get("exists")
    assert job.state in AT_KLING and job.task_id is not None
    assert pipeline.tasks_for("exists") == 1
    assert any("answered the create 1201" in (h.note or "") for h in job.history)


def test_answers_in_an_unknown_shape_park_the_job_for_an_operator_and_a_redrive_finds_its_task(
    pipeline: Pipeline,
) -> None:
    # Given every answer from Kling lacks its task_id (a newer API than this version reads)
    handler = pipeline.submit_handler(BACKPRESSURE_BASE_DELAY_S="0")
    pipeline.sim.configure(shape_drift_rate=1.0, shape_drift_mode="missing_task_id")
    # When the job is queued until it is parked
    pipeline.send({"job_id": "drifted", "prompt": "x"})
    pipeline.drain(handler, lambda: len(pipeline.dead_letters()) == 1)
    # Then it is QUEUED (not SUBMITTING, not FAILED), still to be reconciled, its message in the DLQ with
    # the reason, and the one task Kling made is not repeated
    job = pipeline.store.get("drifted")
    assert job.state is JobState.QUEUED and job.needs_reconcile
    (dead,) = pipeline.dead_letters()
    assert "cannot read" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert json.loads(dead["Body"])["job_id"] == "drifted"
    assert pipeline.tasks_for("drifted") == 1
    # When Kling's answers are readable again and the message is redriven
    pipeline.sim.configure(shape_drift_rate=0.0)
    pipeline.send(dead["Body"])
    pipeline.drain(handler, lambda: job_in(pipeline, "drifted", *AT_KLING))
    # Then the job finds its task: still one
    assert pipeline.store.get("drifted").task_id is not None
    assert pipeline.tasks_for("drifted") == 1


def test_a_message_without_a_job_id_is_sent_again_naming_its_job(pipeline: Pipeline) -> None:
    # Given a message with no job_id (its job is its SQS message id)
    handler = pipeline.submit_handler()
    message_id = pipeline.send({"prompt": "a kite over dunes"})
    # When it is first seen
    pipeline.drain(handler, lambda: pipeline.store.find(message_id) is not None)
    # Then the copy now on the queue names the job, so a native DLQ redrive (new message ids) is the
    # same job: sending that body again as a new message makes no second job and no second task
    waiting = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, VisibilityTimeout=0)["Messages"]
    assert json.loads(waiting[0]["Body"])["job_id"] == message_id
    pipeline.drain(handler, lambda: job_in(pipeline, message_id, *AT_KLING))
    pipeline.send(waiting[0]["Body"])
    pipeline.drain(
        handler,
        lambda: (
            int(
                pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])["Attributes"][
                    "ApproximateNumberOfMessages"
                ]
            )
            == 0
        ),
    )
    assert pipeline.tasks_for(message_id) == 1
    assert pipeline.sim.stats()["creates"]["accepted"] == 1


def test_backpressure_for_days_keeps_the_job_record_small(pipeline: Pipeline) -> None:
    # Given Kling answers 1302 (too many requests) to forty creates in a row (a 1303 makes the job wait in
    # its pool's line instead, for a slot: test_kling_slots.py)
    handler = pipeline.submit_handler(BACKPRESSURE_BASE_DELAY_S="0")
    pipeline.sim.configure(force_create_errors=[1302] * 40)
    # When the job is queued until Kling takes it
    pipeline.send({"job_id": "storm", "prompt": "x"})
    pipeline.drain(handler, lambda: job_in(pipeline, "storm", *AT_KLING))
    # Then the forty cycles are counted, not each appended to the history
    job = pipeline.store.get("storm")
    assert job.backpressure_count == 40
    assert len(job.history) <= 10
    item = pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": "storm"}})["Item"]
    assert len(json.dumps(item)) < 8_000
    assert (job.model_extra or {})["last_unlogged_move"]["state"] == "SUBMITTING"


def test_a_refused_request_tells_the_caller_waiting_with_a_task_token(pipeline: Pipeline) -> None:
    # Given a Step Functions caller that sends an invalid request with its task token and waits
    execution = pipeline.caller_waiting_for({"job_id": "refused-caller", "prompt": "x", "duration": "7"})
    sfn = boto3.client("stepfunctions")
    # When the pipeline reads the request
    handler = pipeline.submit_handler()
    pipeline.drain(handler, lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING")
    # Then the caller is resumed with the refusal, and the token is kept neither on the job nor in the DLQ
    assert sfn.describe_execution(executionArn=execution)["status"] == "FAILED"
    job = pipeline.store.get("refused-caller")
    assert job.state is JobState.FAILED and job.error_code == "INVALID_REQUEST"
    assert "task_token" not in json.loads((job.model_extra or {})["raw_message"])
    (dead,) = pipeline.dead_letters()
    assert "task_token" not in json.loads(dead["Body"]) and json.loads(dead["Body"])["job_id"] == "refused-caller"


def test_a_failed_workflow_start_after_the_downloading_write_is_retried_by_the_next_delivery(
    completion: Completion,
) -> None:
    pipeline = completion.pipeline
    # Given a crashed claim whose task Kling has already finished
    message, accepted = pipeline.crash_after_kling_accepted("start-fails", "a red boat")
    pipeline.sim.configure(generation_min_s=1, generation_max_s=2)
    # When the redelivered message finds it but the workflow cannot be started
    broken = pipeline.submit_handler(SUBMIT_LEASE_S="0", DOWNLOAD_STATE_MACHINE_ARN=completion.state_machine_arn + "x")
    pipeline.send(message)
    pipeline.drain(broken, lambda: job_in(pipeline, "start-fails", JobState.DOWNLOADING))
    assert completion.executions() == []
    # Then the next delivery (the workflow reachable again) starts it, and the video is stored
    working = pipeline.submit_handler(SUBMIT_LEASE_S="0", DOWNLOAD_STATE_MACHINE_ARN=completion.state_machine_arn)
    pipeline.drain(working, lambda: job_in(pipeline, "start-fails", JobState.COMPLETED))
    assert pipeline.tasks_for("start-fails") == 1
    assert pipeline.store.get("start-fails").task_id == accepted.task_id


def test_an_accepted_jobs_own_message_is_never_refused_by_a_redeploys_rules(pipeline: Pipeline) -> None:
    # Given a job naming no model, 8 s long: valid for the deployment's DefaultModel kling-v3
    handler = pipeline.submit_handler(DEFAULT_MODEL="kling-v3")
    pipeline.sim.configure(create_lost_answer_rate=1.0)
    pipeline.send({"job_id": "redeployed", "prompt": "a lighthouse", "duration": "8"})
    # When Kling makes (and bills) its task but answers 5000, so the job goes back to the queue unsettled
    pipeline.drain(handler, lambda: pipeline.backpressured("redeployed"))
    assert pipeline.tasks_for("redeployed") == 1
    pipeline.sim.configure(create_lost_answer_rate=0.0)
    # And a redeploy makes kling-v2-6 the default, which takes only 5 or 10 s
    redeployed = pipeline.submit_handler(DEFAULT_MODEL="kling-v2-6")
    pipeline.drain(redeployed, lambda: job_in(pipeline, "redeployed", *AT_KLING) or bool(pipeline.dead_letters()))
    # Then the job's own message is taken as its record holds it: its task is found and recorded, never
    # dead-lettered as invalid, never created twice
    job = pipeline.store.get("redeployed")
    assert job.state in AT_KLING and job.task_id is not None
    assert pipeline.dead_letters() == []
    assert pipeline.tasks_for("redeployed") == 1


def test_a_different_invalid_request_under_a_live_jobs_id_is_refused_and_the_job_untouched(
    pipeline: Pipeline,
) -> None:
    # Given a job accepted and at Kling
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "taken", "prompt": "a lighthouse"})
    pipeline.drain(handler, lambda: job_in(pipeline, "taken", *AT_KLING))
    before = pipeline.store.get("taken")
    # When another, invalid request arrives under its id
    pipeline.send({"job_id": "taken", "prompt": "something else", "duration": "7"})
    pipeline.drain(handler, lambda: len(pipeline.dead_letters()) == 1)
    # Then that message is refused with its reason, and the job is as it was
    (dead,) = pipeline.dead_letters()
    assert "duration" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    after = pipeline.store.get("taken")
    assert (after.state, after.request) == (before.state, before.request)
