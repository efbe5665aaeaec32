"""When each live job is next looked at: the rules of the stale-job poller's cadence.

Every live job carries `next_poll_at` (epoch seconds), the sort key of the sharded LiveJobs index the
poller reads, most overdue first. A job whose callbacks arrive is never polled: its first poll is
set for when the quicker jobs of its kind finish, and a callback that shows it running pushes that to
when nearly every job like it has finished (`late_finish_s`), plus `callback_wait_s`, so only a job
whose callbacks were lost is ever due on its own. A job not due rides along, free, in a call made for
its query group anyway, once it may have finished (`may_have_finished`). After a poll that
finds it still running, the interval grows from `poll_interval_s` by half each time, up to ten
times it. Expected generation times are learned from finished jobs (adapters.generation_estimates);
before any data, the per-mode defaults of the schedule apply (docs/architecture.md, "The poller").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from kling_pipeline.lifecycle import Job, JobState

SHARDS = 16
GROWTH = 1.5
MAX_INTERVAL_FACTOR = 10


class PollSchedule(BaseModel):
    """The cadence, in seconds (template parameters; the local stack scales them with its clock)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expected_std_s: int = Field(ge=1)  # a std job's generation time before anything is learned
    expected_pro_s: int = Field(ge=1)  # a pro job's
    poll_interval_s: int = Field(ge=1)  # after a poll that finds the task running; grows by half each time
    # How much later than expected a job whose callbacks arrive is looked at: it covers a callback's
    # delivery and handling, so a job whose callbacks arrive is never polled.
    callback_wait_s: int = Field(ge=0)
    download_check_s: int = Field(ge=1)  # how often a DOWNLOADING job's workflow is checked on
    queued_report_s: int = Field(ge=1)  # a QUEUED job older than this is reported (never touched)


@dataclass(frozen=True)
class Estimate:
    """Generation time of a kind of job, in seconds: a running mean and its mean deviation; and the
    units Kling charged the latest such job (None before one is known), which the budget reserves."""

    mean_s: float
    deviation_s: float
    samples: int
    units: float | None = None


def live_shard(job_id: str) -> str:
    """The LiveJobs index partition of a job: spread over SHARDS values so that no partition takes
    every live job's writes (DynamoDB allows about 1,000 writes a second per partition)."""
    return f"live#{shard_number(job_id)}"


def all_shards() -> list[str]:
    return [f"live#{n}" for n in range(SHARDS)]


def shard_number(job_id: str) -> int:
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) % SHARDS


def state_shard(state: str, job_id: str) -> str:
    """The JobsByState index partition of a job in `state`: `QUEUED#7`, spread over SHARDS values per
    state so that a batch of jobs entering one state does not write one partition."""
    return f"{state}#{shard_number(job_id)}"


def expected_generation_s(job: Job, schedule: PollSchedule, estimate: Estimate | None) -> float:
    """How long jobs like `job` usually take: the learned mean, or the mode's default."""
    if estimate is not None and estimate.samples > 0:
        return estimate.mean_s
    return float(schedule.expected_pro_s if job.request.get("mode") == "pro" else schedule.expected_std_s)


def first_poll_after_s(job: Job, schedule: PollSchedule, estimate: Estimate | None) -> float:
    """When to look at a job whose callbacks may be lost: about when the quicker ones finish (a mean
    deviation before the mean; half the default before anything is learned). From then on it is polled
    on every poller run (the interval is shorter than the schedule's period), so a finished job waits
    at most a period to be noticed, and most need one or two GETs."""
    expected = expected_generation_s(job, schedule, estimate)
    if estimate is not None and estimate.samples > 0:
        return max(expected - estimate.deviation_s, expected / 2)
    return expected / 2


# A job seen running by its callbacks waits for them until this many times the mode's default generation
# time (or the learned mean plus this many mean deviations, if longer) has passed.
LATE_FACTOR = 2


def late_finish_s(job: Job, schedule: PollSchedule, estimate: Estimate | None) -> float:
    """By when nearly every job like `job` has finished: a job whose callbacks are seen to arrive is not
    looked at on its own before this (plus `callback_wait_s`). The learned mean alone is too early: the
    first jobs to finish, which it learns from, are the quick ones."""
    default = float(schedule.expected_pro_s if job.request.get("mode") == "pro" else schedule.expected_std_s)
    late = LATE_FACTOR * default
    if estimate is not None and estimate.samples > 0:
        late = max(late, estimate.mean_s + LATE_FACTOR * estimate.deviation_s)
    return late


def may_have_finished(job: Job, now: int) -> bool:
    """Whether a running job is worth asking about when a call for its query group is made anyway: once
    half the time jobs like it usually take has passed (the first look before anything is learned)."""
    if job.submitted_at is None or job.expected_finish_at is None:
        return True
    return now >= job.submitted_at + (job.expected_finish_at - job.submitted_at) / 2


def poll_interval_s(polls_so_far: int, schedule: PollSchedule) -> int:
    """The wait after the `polls_so_far`-th poll found the task still running."""
    grown = schedule.poll_interval_s * GROWTH ** max(0, polls_so_far - 1)
    return int(min(grown, schedule.poll_interval_s * MAX_INTERVAL_FACTOR))


# A TIMED_OUT job's task may still succeed at Kling (and be billed): the poller asks about it again this
# many poll intervals apart (an hour at the template's 15 s), until Kling's 30 days from its submission.
TIMED_OUT_LOOK_INTERVALS = 240


def timed_out_look_s(schedule: PollSchedule) -> int:
    """How long a TIMED_OUT job waits between the poller's looks: rarely, since it has already ended for
    its caller, and Kling finishing a task past the timeout is the exception."""
    return schedule.poll_interval_s * TIMED_OUT_LOOK_INTERVALS


def next_poll_at(
    to_state: JobState,
    *,
    now: int,
    schedule: PollSchedule,
    expected_finish_at: int | None = None,
    late_finish_at: int | None = None,
    lease_expires_at: int | None = None,
) -> int:
    """When a job entering `to_state` now is next due, if nothing (a callback, the workflow) settles it first."""
    if to_state is JobState.QUEUED:
        return now + schedule.queued_report_s
    if to_state is JobState.SUBMITTING:
        return (now if lease_expires_at is None else lease_expires_at) + 1
    if to_state is JobState.SUBMITTED:
        return expected_finish_at or now + schedule.expected_std_s
    if to_state is JobState.PROCESSING:
        # Seen running (a callback; a poll sets its own): its callbacks arrive, so wait for them until a while
        # after nearly every job like it has ended.
        return max(late_finish_at or expected_finish_at or now, now) + schedule.callback_wait_s
    if to_state is JobState.DOWNLOADING:
        return now + schedule.download_check_s
    raise ValueError(f"{to_state} is not a live state")
