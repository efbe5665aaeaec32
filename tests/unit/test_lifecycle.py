"""The transition table and the one function that maps an observed Kling task to a transition."""

import pytest

from kling_pipeline.errors import InvalidTransitionError
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job, JobState, check_transition, observe_task


def make_job(state: JobState, task_id: str | None = "t-1") -> Job:
    return Job(
        job_id="j1",
        state=state,
        version=3,
        kind="text2video",
        request={"prompt": "x"},
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        task_id=task_id,
    )


def task(status: str, task_id: str = "t-1", **extra: object) -> KlingTask:
    return KlingTask.model_validate({"task_id": task_id, "task_status": status} | extra)


SUCCEED = {
    "task_result": {"videos": [{"id": "v1", "url": "https://cdn.klingai.com/v.mp4", "duration": "5.1"}]},
    "final_unit_deduction": "1",
}


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (None, JobState.QUEUED),
        (JobState.QUEUED, JobState.SUBMITTING),
        (JobState.SUBMITTING, JobState.SUBMITTED),
        (JobState.SUBMITTING, JobState.QUEUED),
        (JobState.SUBMITTED, JobState.PROCESSING),
        (JobState.PROCESSING, JobState.DOWNLOADING),
        (JobState.DOWNLOADING, JobState.COMPLETED),
        (JobState.QUEUED, JobState.FAILED),
        (JobState.DOWNLOADING, JobState.FAILED),
        (JobState.PROCESSING, JobState.TIMED_OUT),
    ],
)
def test_design_transitions_are_allowed(src: JobState | None, dst: JobState) -> None:
    check_transition(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (JobState.COMPLETED, JobState.FAILED),
        (JobState.FAILED, JobState.PROCESSING),
        (JobState.PROCESSING, JobState.SUBMITTED),
        (JobState.QUEUED, JobState.SUBMITTED),
        (JobState.DOWNLOADING, JobState.PROCESSING),
        (JobState.QUEUED, JobState.TIMED_OUT),
        (JobState.TIMED_OUT, JobState.COMPLETED),
        (JobState.TIMED_OUT, JobState.PROCESSING),
    ],
)
def test_backwards_and_terminal_moves_are_refused(src: JobState, dst: JobState) -> None:
    with pytest.raises(InvalidTransitionError):
        check_transition(src, dst)


def test_processing_moves_submitted_forward_once() -> None:
    decision = observe_task(make_job(JobState.SUBMITTED), task("processing"))
    assert decision is not None
    assert (decision.from_state, decision.to_state) == (JobState.SUBMITTED, JobState.PROCESSING)
    assert observe_task(make_job(JobState.PROCESSING), task("processing")) is None


def test_succeed_starts_the_download_with_the_video_url() -> None:
    for state in (JobState.SUBMITTED, JobState.PROCESSING):
        decision = observe_task(make_job(state), task("succeed", **SUCCEED))
        assert decision is not None
        assert decision.to_state is JobState.DOWNLOADING
        assert decision.starts_download
        assert decision.changes["video_url"] == "https://cdn.klingai.com/v.mp4"
        assert decision.changes["units_charged"] == "1"


def test_failed_records_klings_reason() -> None:
    decision = observe_task(make_job(JobState.PROCESSING), task("failed", task_status_msg="nsfw content"))
    assert decision is not None
    assert decision.to_state is JobState.FAILED
    assert "nsfw content" in decision.changes["error_message"]


@pytest.mark.parametrize("state", [JobState.DOWNLOADING, JobState.COMPLETED, JobState.FAILED, JobState.TIMED_OUT])
def test_late_or_duplicate_observations_change_nothing(state: JobState) -> None:
    for status, extra in (("submitted", {}), ("processing", {}), ("succeed", SUCCEED), ("failed", {})):
        if (state, status) == (JobState.TIMED_OUT, "succeed"):
            continue  # the one late observation that moves a job: Kling finished a task it charges for
        assert observe_task(make_job(state), task(status, **extra)) is None


def test_a_succeed_after_the_timeout_collects_the_video_and_clears_the_timeout() -> None:
    decision = observe_task(make_job(JobState.TIMED_OUT), task("succeed", **SUCCEED))
    assert decision is not None
    assert (decision.from_state, decision.to_state) == (JobState.TIMED_OUT, JobState.DOWNLOADING)
    assert decision.starts_download and decision.changes["units_charged"] == "1"
    assert decision.changes["error_code"] is None and decision.changes["error_message"] is None
    # a succeed with no video leaves the timed-out job as it ended
    assert observe_task(make_job(JobState.TIMED_OUT), task("succeed")) is None


def test_observation_of_another_task_changes_nothing() -> None:
    assert observe_task(make_job(JobState.PROCESSING), task("succeed", task_id="other", **SUCCEED)) is None


def test_success_without_a_video_fails_with_an_actionable_message() -> None:
    decision = observe_task(make_job(JobState.PROCESSING), task("succeed"))
    assert decision is not None
    assert decision.to_state is JobState.FAILED
    assert decision.changes["error_code"] == "KLING_NO_VIDEO"
