"""The poller's cadence as rules (poll_schedule.py): when a job whose callbacks arrive is looked at on its
own, and when a job rides along in a call made for its query group anyway."""

from __future__ import annotations

from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.poll_schedule import (
    Estimate,
    PollSchedule,
    first_poll_after_s,
    late_finish_s,
    may_have_finished,
    next_poll_at,
)

SCHEDULE = PollSchedule(
    expected_std_s=75,
    expected_pro_s=180,
    poll_interval_s=15,
    callback_wait_s=60,
    download_check_s=120,
    queued_report_s=3600,
)
START = 1_800_000_000


def job(mode: str = "std", **fields: object) -> Job:
    return Job.model_validate(
        {
            "job_id": "j",
            "state": JobState.SUBMITTED,
            "version": 2,
            "kind": "text2video",
            "request": {"prompt": "p", "mode": mode},
            "created_at": "2026-12-07T10:00:00.000Z",
            "updated_at": "2026-12-07T10:00:00.000Z",
            **fields,
        }
    )


def test_a_job_seen_running_by_its_callbacks_is_not_due_before_the_slow_ones_end() -> None:
    # Given jobs like it learned as quick (the first to finish, which the mean learns from, are the quick ones)
    quick = Estimate(mean_s=20.0, deviation_s=5.0, samples=3)
    # When its first look and its late look are set at its submission
    first = first_poll_after_s(job(), SCHEDULE, quick)
    late = late_finish_s(job(), SCHEDULE, quick)
    # Then the first look (for lost callbacks) is when the quick ones end, the late one past the slow ones:
    # twice the mode's default time, not the learned mean
    assert first == 15.0
    assert late == 150.0
    # And a callback showing it running makes it due only then, plus the wait for its callbacks
    due = next_poll_at(
        JobState.PROCESSING,
        now=START + 5,
        schedule=SCHEDULE,
        expected_finish_at=START + 20,
        late_finish_at=START + int(late),
    )
    assert due == START + 150 + 60


def test_jobs_learned_slower_than_the_default_push_the_late_look_further() -> None:
    # Given pro jobs that take 300 s give or take 60 s
    slow = Estimate(mean_s=300.0, deviation_s=60.0, samples=12)
    # Then a pro job seen running waits for its callbacks until 420 s (the learned mean plus two deviations)
    assert late_finish_s(job("pro"), SCHEDULE, slow) == 420.0
    # And before anything is learned, until twice the pro default
    assert late_finish_s(job("pro"), SCHEDULE, None) == 360.0


def test_a_job_rides_along_once_half_its_expected_time_has_passed() -> None:
    # Given a job submitted at START, expected to finish 80 s later
    running = job(submitted_at=START, expected_finish_at=START + 80)
    # Then a call made for its group before 40 s does not take it, and one from 40 s on does
    assert not may_have_finished(running, START + 39)
    assert may_have_finished(running, START + 40)
    # And a job whose schedule is not recorded rides along whenever a call is made
    assert may_have_finished(job(), START)
