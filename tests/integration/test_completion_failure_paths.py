"""Never strand a paid video: the completion path when AWS or the workflow itself fails."""

from __future__ import annotations

import json

from kling_pipeline.adapters.download_workflow import DownloadWorkflow, execution_name
from kling_pipeline.lifecycle import JobState, Transition
from tests.support.scenarios import Completion, as_callback_body, kling_task, submitted


def test_an_execution_that_ended_without_finishing_the_job_is_not_taken_for_success(completion: Completion) -> None:
    # Given a job whose first download workflow failed (its function could not read the table)
    job = submitted(completion, "second-attempt")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME="no-such-table")
    assert completion.callback("second-attempt", as_callback_body(done))["statusCode"] == 200
    first = completion.wait_for_execution("second-attempt")
    assert first["status"] == "FAILED"
    assert completion.pipeline.store.get("second-attempt").state is JobState.DOWNLOADING
    # When the function works again and Kling calls back once more (or the message comes back)
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME=completion.pipeline.table_name)
    assert completion.callback("second-attempt", as_callback_body(done))["statusCode"] == 200
    # Then a second attempt (not "already exists, fine") stores the video
    assert completion.wait_for_execution(execution_name("second-attempt", 2))["status"] == "SUCCEEDED"
    assert completion.pipeline.store.get("second-attempt").state is JobState.COMPLETED


def test_an_outcome_that_cannot_be_recorded_leaves_the_job_for_repair_with_the_object_checksummed(
    completion: Completion,
) -> None:
    # Given a workflow whose write to the job fails (its table is unreachable), a job, its video at Kling
    resolver = completion.pipeline.resolver
    real_table = resolver.refs["JobsTable"]
    resolver.refs["JobsTable"] = "unreachable-table"
    definition = resolver.state_machine_definition("DownloadStateMachine")
    resolver.refs["JobsTable"] = real_table
    role = "arn:aws:iam::123456789012:role/fn"
    broken = completion.sfn.create_state_machine(name="download-broken", definition=definition, roleArn=role)
    job = submitted(completion, "not-recorded")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    downloading = completion.pipeline.store.transition(
        job,
        Transition(
            job.state,
            JobState.DOWNLOADING,
            {"video_url": done.first_video.url if done.first_video else None},
            by="test",
        ),
    )
    # When that workflow runs
    arn = broken["stateMachineArn"]
    completion.sfn.start_execution(
        stateMachineArn=arn,
        name="not-recorded",
        input=json.dumps({"job_id": "not-recorded", "attempt": 1, "version": downloading.version}),
    )
    execution = completion.wait_for_execution("not-recorded", state_machine_arn=arn)
    # Then it stops as OutcomeNotRecorded, telling nobody to pay Kling again; the job stays DOWNLOADING
    # and the object carries its size and checksum, so a repair can complete it without downloading
    assert execution["status"] == "FAILED" and execution.get("error") == "OutcomeNotRecorded"
    cause = execution.get("cause") or ""
    assert "job_id" not in cause and "send" not in cause.lower() and "repair" in cause
    assert completion.pipeline.store.get("not-recorded").state is JobState.DOWNLOADING
    key = "videos/not-recorded.mp4"
    tags = completion.s3.get_object_tagging(Bucket=completion.bucket, Key=key)["TagSet"]
    assert {t["Key"] for t in tags} == {"sha256"}
    assert completion.s3.head_object(Bucket=completion.bucket, Key=key)["ContentLength"] == 300_000


def test_the_workflow_state_stays_small() -> None:
    # Whole items (history, inline images) can pass Step Functions' 256 KB and fail the execution with
    # an uncatchable States.DataLimitExceeded after the job is already COMPLETED: nothing reads them.
    from tests.support.template import ROOT

    text = (ROOT / "statemachine" / "download.asl.json").read_text(encoding="utf-8")
    assert "ALL_NEW" not in text and "ALL_OLD" not in text
    # The one read (ReadOutcome, after a write whose answer was lost) projects three small attributes.
    reads = [s for s in json.loads(text)["States"].values() if s.get("Resource", "").endswith(":getItem")]
    assert [r["Parameters"]["ProjectionExpression"] for r in reads] == ["#state, #version, updated_at"]


def test_download_attempts_are_the_deployments_not_a_fixed_five(completion: Completion) -> None:
    # Given a job, and a workflow whose every execution fails at once
    job = submitted(completion, "many-attempts")
    always_fails = completion.sfn.create_state_machine(
        name="download-always-fails",
        definition=json.dumps({"StartAt": "Fail", "States": {"Fail": {"Type": "Fail", "Error": "Nope"}}}),
        roleArn="arn:aws:iam::123456789012:role/fn",
    )["stateMachineArn"]
    # When a deployment with DownloadAttempts=7 starts six attempts, one after another
    seven = DownloadWorkflow(always_fails, attempts=7, sfn=completion.sfn)
    for number in range(1, 7):
        assert seven.start(job, attempt=number)
        name = execution_name(job.job_id, number, job.step)
        assert completion.wait_for_execution(name, state_machine_arn=always_fails)["status"] == "FAILED"
    # Then the sixth is seen as the latest (the repair counts it, and starts the seventh)
    latest = seven.last_attempt(job)
    assert latest is not None and latest.number == 6
    # When a deployment with DownloadAttempts=2 is asked to start the job's download again
    two = DownloadWorkflow(always_fails, attempts=2, sfn=completion.sfn)
    assert not two.start(job)
    # Then it starts nothing past its own limit, and sees no attempt past it
    executions = completion.sfn.list_executions(stateMachineArn=always_fails)["executions"]
    assert len(executions) == 6
    latest = two.last_attempt(job)
    assert latest is not None and latest.number == 2
