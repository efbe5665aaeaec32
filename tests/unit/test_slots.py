"""Kling's slots as rules (slots.py), what the job record says about them (job_store.transition_write),
the request's `priority` and the settings that give C per pool."""

from __future__ import annotations

import pytest

from kling_pipeline.adapters.job_store import transition_write
from kling_pipeline.errors import ConfigError, InvalidJobMessageError
from kling_pipeline.lifecycle import Job, JobState, Transition
from kling_pipeline.poll_schedule import PollSchedule
from kling_pipeline.requests import parse_job_message
from kling_pipeline.settings import PollerSettings
from kling_pipeline.slots import Pool, PoolLimits, limit_after_quiet, pool_of, waiting_order
from tests.support.template import placeholder_resolver

SCHEDULE = PollSchedule(
    expected_std_s=60,
    expected_pro_s=120,
    poll_interval_s=30,
    callback_wait_s=60,
    download_check_s=60,
    queued_report_s=600,
)


def job(
    job_id: str = "j", *, state: JobState = JobState.QUEUED, created: str = "2026-12-07T10:00:00.000Z", **extra: object
) -> Job:
    request = {"prompt": "p", **extra.pop("request", {})}  # type: ignore[dict-item]
    return Job.model_validate(
        {
            "job_id": job_id,
            "state": state,
            "version": 3,
            "kind": "text2video",
            "request": request,
            "created_at": created,
            "updated_at": created,
        }
        | extra
    )


def test_the_line_is_by_priority_then_arrival_then_job_id() -> None:
    # Given jobs of several priorities and arrivals
    jobs = [
        job("late-urgent", created="2026-12-07T10:00:05.000Z", request={"priority": 9}),
        job("first-default", created="2026-12-07T10:00:00.000Z"),
        job("second-five", created="2026-12-07T10:00:00.001Z", request={"priority": 5}),
        job("early-low", created="2026-12-07T09:00:00.000Z", request={"priority": 0}),
    ]
    # When they are sorted by their keys in the waiting index
    line = sorted(jobs, key=waiting_order)
    # Then the higher priority goes first, equal priorities (5 by default) keep their arrival order
    assert [j.job_id for j in line] == ["late-urgent", "first-default", "second-five", "early-low"]


def test_a_job_counts_in_its_models_pool() -> None:
    assert pool_of(job(request={"model": "kling-v3"}), "kling-v2-6") == "kling-v3"
    assert pool_of(job(), "kling-v2-6") == "kling-v2-6"
    assert pool_of(job(model_name="kling-v1"), "kling-v2-6") == "kling-v1"  # the model its task ran with
    extend = job(request={"video_id": "v"}).model_copy(update={"kind": "video-extend"})
    assert pool_of(extend, "kling-v2-6") == "kling-v2-6"
    assert PoolLimits.of_table(5, {"kling-v3": 2}).of("kling-v3") == 2
    assert PoolLimits.of_table(5, {"kling-v3": 2}).of("kling-v1") == 5


@pytest.mark.parametrize(
    ("limit", "quiet_since", "now", "expected"),
    [
        (2, 100, 150, None),  # lowered, not yet quiet for 60 s
        (2, 100, 160, 3),  # quiet: one slot back
        (5, 0, 1000, None),  # at C
        (7, 0, 1000, 5),  # C was lowered: at once
    ],
)
def test_a_lowered_limit_climbs_one_slot_per_quiet_period(
    limit: int, quiet_since: int, now: int, expected: int | None
) -> None:
    pool = Pool("p", held=2, limit=limit, configured=5, quiet_since=quiet_since)
    assert limit_after_quiet(pool, now=now, quiet_s=60) == expected


def test_a_move_out_of_queued_leaves_the_line_and_a_move_off_kling_drops_the_slot() -> None:
    # Given a waiting job, and a job holding a slot
    queued = job(waiting_pool="kling-v2-6", slot_order="5#x#j", slot_queue="wait#kling-v2-6")
    cancel = Transition(JobState.QUEUED, JobState.CANCELLED, by="api")
    running = job(state=JobState.PROCESSING, slot_pool="kling-v2-6", slot_queue="held#kling-v2-6", slot_order="j")
    done = Transition(JobState.PROCESSING, JobState.DOWNLOADING, {"video_url": "https://v"}, by="callback")
    still = Transition(JobState.PROCESSING, JobState.TIMED_OUT, by="poller")
    # When their writes are built
    cancelled = transition_write(queued, cancel, now="t", expires_at=1, schedule=SCHEDULE)
    downloading = transition_write(running, done, now="t", expires_at=1, schedule=SCHEDULE)
    timed_out = transition_write(running, still, now="t", expires_at=1, schedule=SCHEDULE)
    # Then the first leaves the pool's line, and the second no longer holds its slot (nor after a timeout)
    assert {"waiting_pool", "slot_queue", "slot_order"} <= set(cancelled.names.values())
    for write in (downloading, timed_out):
        assert {"slot_pool", "slot_queue", "slot_order"} <= set(write.names.values())
        assert "REMOVE" in write.update_expression


def test_a_move_between_states_at_kling_keeps_the_slot() -> None:
    running = job(state=JobState.SUBMITTED, slot_pool="kling-v2-6", slot_queue="held#kling-v2-6", slot_order="j")
    write = transition_write(
        running,
        Transition(JobState.SUBMITTED, JobState.PROCESSING, by="callback"),
        now="t",
        expires_at=1,
        schedule=SCHEDULE,
    )
    assert "slot_pool" not in write.names.values()


@pytest.mark.parametrize("bad", ["10", "-1", "true", "4.5", '"high"'])
def test_a_priority_outside_zero_to_nine_is_refused_naming_the_field_and_the_fix(bad: str) -> None:
    with pytest.raises(InvalidJobMessageError, match=r"priority: .* is not a priority; use a whole number from 0"):
        parse_job_message('{"prompt": "p", "priority": ' + bad + "}", "m")
    assert parse_job_message('{"prompt": "p", "priority": 0}', "m").priority == 0
    assert parse_job_message('{"prompt": "p"}', "m").priority is None  # 5 in line; the record stays as sent


def test_a_pool_concurrency_that_is_not_a_map_of_whole_numbers_fails_the_cold_start_by_name() -> None:
    environment = placeholder_resolver().function_environment("PollerFunction")
    assert PollerSettings.from_environment(environment).pool_limits == PoolLimits(5)
    for bad in ('{"kling-v3": 0}', "[3]", "three"):
        with pytest.raises(ConfigError, match="KLING_POOL_CONCURRENCY"):
            PollerSettings.from_environment(environment | {"KLING_POOL_CONCURRENCY": bad})
