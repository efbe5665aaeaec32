"""What AWS answers and moto never did: transaction conflicts on the shared counters, PutEvents' failed
entries, 403 for a missing object, one job's error in a poller run. Each is played by moto through
kling_local.aws_faults (AWS_FAULTS.inject: the next matching requests get AWS's answer), so the
pipeline's real code meets it over boto3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from kling_local.aws_faults import ACCESS_DENIED, AWS_FAULTS, TRANSACTION_CONFLICT
from kling_pipeline.adapters.announcements import Announcer
from kling_pipeline.adapters.ledger import Ledger, day_of
from kling_pipeline.adapters.video_transfer import stored_video
from kling_pipeline.errors import TransitionRejectedError
from kling_pipeline.lifecycle import Job, JobState, Transition
from kling_pipeline.requests import JobRequest
from tests.support.scenarios import Completion, Pipeline, finish, job_in, kling_task, submitted


@pytest.fixture(autouse=True)
def no_faults_left_behind() -> Iterator[None]:
    AWS_FAULTS.clear()
    yield
    AWS_FAULTS.clear()


def ledger_of(pipeline: Pipeline) -> Ledger:
    return Ledger(pipeline.resolver.refs["StatsTable"])


def queued_job(pipeline: Pipeline, job_id: str) -> Job:
    request = JobRequest.model_validate({"job_id": job_id, "prompt": f"a video for {job_id}"})
    job, _ = pipeline.store.create(job_id, request, by="test")
    return job


# -- item 8: TransactionConflict on the shared counters ----------------------------------------------


def test_a_charge_whose_transaction_meets_another_on_the_daily_aggregate_is_sent_again_and_counted_once(
    completion: Completion,
) -> None:
    pipeline = completion.pipeline
    # Given DynamoDB cancels the next two transactions on today's cost aggregate (another in flight)
    conflicts = AWS_FAULTS.inject(
        TRANSACTION_CONFLICT, "dynamodb", operation="TransactWriteItems", contains="cost#", times=2
    )
    # When Kling's succeed callback records the task's charge with the job's move
    job, execution = finish(completion, "conflicted-charge")
    # Then the transaction was sent again until it went through: the job completed, charged once
    assert conflicts.fired == 2
    assert execution["status"] == "SUCCEEDED" and job.state is JobState.COMPLETED
    (row,) = ledger_of(pipeline).costs(*[time_today()] * 2)
    assert row.tasks == 1 and row.units == pipeline.sim.stats()["units_charged_total"]


def test_a_conflicted_move_sent_again_after_another_writer_moved_the_job_is_rejected_and_reserves_nothing(
    pipeline: Pipeline,
) -> None:
    # Given a queued job, and a claim that takes units from today's budget in the same transaction
    job = queued_job(pipeline, "conflict-then-moved")
    ledger = ledger_of(pipeline)
    reserve = ledger.reserve_update(day_of(), 1, budget=10)

    def another_submitter_claims_it() -> None:
        current = pipeline.store.get(job.job_id)
        pipeline.store.transition(current, Transition(current.state, JobState.SUBMITTING, by="other-submitter"))

    # And DynamoDB cancels that transaction (a conflict on the budget counter) while another
    # submitter claims the job
    AWS_FAULTS.inject(
        TRANSACTION_CONFLICT,
        "dynamodb",
        operation="TransactWriteItems",
        contains="budget#",
        then=another_submitter_claims_it,
    )
    # When this claim's transaction is sent again
    with pytest.raises(TransitionRejectedError):
        pipeline.store.transition(
            job, Transition(job.state, JobState.SUBMITTING, by="this-submitter", linked=(reserve,))
        )
    # Then it fails its condition on (state, version) as any late move does: the job was moved once,
    # by the other, and nothing was reserved by the cancelled claim
    moved = pipeline.store.get(job.job_id)
    assert [h.by for h in moved.history] == ["test", "other-submitter"]
    assert ledger.reserved(day_of()) == 0


def time_today() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


# -- item 7: PutEvents' failed entries -----------------------------------------------------------


def ended_job(pipeline: Pipeline, job_id: str) -> Job:
    job = queued_job(pipeline, job_id)
    return pipeline.store.transition(
        job, Transition(job.state, JobState.FAILED, {"error_code": "X", "error_message": "failed"}, by="test")
    )


def test_an_end_event_whose_entry_eventbridge_failed_is_sent_again_and_arrives(completion: Completion) -> None:
    # Given EventBridge answers the next two PutEvents 200 with every entry failed
    failures = AWS_FAULTS.inject("FailedEntries", "events", operation="PutEvents", times=2)
    job = ended_job(completion.pipeline, "event-retried")
    # When the job's end is announced
    Announcer("default").job_ended(job)
    # Then the entry was sent again until EventBridge took it, and the event arrived once
    assert failures.fired == 2
    assert [e["detail"]["job_id"] for e in completion.events()] == ["event-retried"]


def test_an_end_event_eventbridge_keeps_failing_is_logged_with_the_job_and_counted(
    completion: Completion, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given EventBridge fails every entry of every PutEvents
    AWS_FAULTS.inject("FailedEntries", "events", operation="PutEvents", times=None)
    job = ended_job(completion.pipeline, "event-undelivered")
    # When the job's end is announced
    Announcer("default").job_ended(job)
    # Then nothing arrived, and the failure is not silent: an error naming the job and a metric
    assert completion.events() == []
    (error,) = [r for r in caplog.records if "end event was not delivered" in r.getMessage()]
    assert getattr(error, "job_id", None) == "event-undelivered"
    output = capsys.readouterr().out
    assert '"Announcements"' in output and '"undelivered"' in output


# -- item 5: 403 for a missing object, one job's error in a run ----------------------------------------


def test_a_403_from_head_object_is_taken_as_not_stored(completion: Completion) -> None:
    # Given S3 answers HeadObject with 403, as it does for a missing key to a role without s3:ListBucket
    AWS_FAULTS.inject(ACCESS_DENIED, "s3", method="HEAD", contains="videos/missing.mp4")
    # When the poller's check asks whether the video is stored
    # Then it is not stored (missing or forbidden), rather than an error
    assert stored_video(completion.s3, completion.bucket, "videos/missing.mp4") is None


def test_a_stranded_download_is_repaired_when_s3_answers_403_for_its_missing_video(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a DOWNLOADING job with no workflow running and no video stored, and a poller role S3
    # answers 403 for the missing key (no s3:ListBucket)
    job = submitted(completion, "stranded-403")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    assert done.first_video is not None
    pipeline.store.transition(
        job, Transition(job.state, JobState.DOWNLOADING, {"video_url": done.first_video.url}, by="test")
    )
    AWS_FAULTS.inject(ACCESS_DENIED, "s3", method="HEAD", contains="stranded-403", times=None)
    time.sleep(2.2)  # past the DOWNLOADING check interval (2 s here)
    # When the poller comes by
    report = completion.poll(completion.poller())
    # Then it starts the next download attempt, which stores the video
    assert report["restarted"] == 1 and report["errors"] == 0, report
    assert completion.wait_for_execution("stranded-403")["status"] == "SUCCEEDED"
    assert job_in(pipeline, "stranded-403", JobState.COMPLETED)


def test_one_jobs_error_in_a_poller_run_is_counted_and_the_others_are_settled(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given three jobs Kling has finished whose callbacks were lost, and Step Functions refusing to
    # start the download of one of them
    ids = ["isolated-a", "isolated-broken", "isolated-b"]
    for job_id in ids:
        job = submitted(completion, job_id)
        kling_task(completion, job.kind, job.task_id, "succeed")
    refusal = AWS_FAULTS.inject(
        ACCESS_DENIED, "states", operation="StartExecution", contains="isolated-broken", times=None
    )
    time.sleep(1.2)  # their first poll is due (ExpectedStdSeconds is 1 here)
    # When the poller runs
    report = completion.poll(completion.poller())
    # Then that job's error is counted and named, and the run settled the other two
    assert report["errors"] == 1, report
    assert refusal.fired >= 1
    for job_id in ("isolated-a", "isolated-b"):
        assert completion.wait_for_execution(job_id)["status"] == "SUCCEEDED"
        assert job_in(pipeline, job_id, JobState.COMPLETED)
    # And once Step Functions takes it again, a later run repairs the one left behind
    AWS_FAULTS.clear()
    deadline = time.monotonic() + 60
    while not job_in(pipeline, "isolated-broken", JobState.COMPLETED):
        assert time.monotonic() < deadline, pipeline.store.get("isolated-broken")
        completion.poll(completion.poller())
        time.sleep(0.5)
