"""Extend chains: a job whose request carries `extend` steps is one video made in steps, a
generate -> extend -> download pipeline with nothing left to the caller.

Step 1 is the request's own video; step n (n >= 2) is Kling's `video-extend` of step n-1's video,
with `extend[n-2]`'s prompt. Each step is a task of its own, created exactly once under its own
external id (`<job_id>-s<n>`, lifecycle.Job.external_task_id) by the submit path, settled by the
callback or the poller like any task, and stored by the download workflow under
`videos/<job_id>/step-<n>.mp4`. When a step is stored and another follows, the job goes back to
QUEUED for it (DOWNLOADING -> QUEUED) and the workflow queues its message; the last step's video is
the job's, announced as its completion. A failed step fails the job naming the step; the stored
steps stay. docs/architecture.md, "Extend chains".
"""

from __future__ import annotations

import time
from typing import Any

from kling_pipeline.lifecycle import Job, JobState, Transition

# A chain job waiting for its next step's message is looked at by the poller this long after the
# step was stored; if the message never came (the workflow could not send it), the poller sends it.
NEXT_STEP_RESEND_S = 300
# What the finished step's task leaves on the job and the next step must not inherit.
STEP_FIELDS_RESET = (
    "task_id",
    "kling_status",
    "kling_finished_at",
    "video_url",
    "kling_video_id",
    "video_duration",
    "units_charged",
    "reserved_units",
    "reserved_day",
    "needs_reconcile",
    "unsettled_since",
    "unreadable_answers",
    "claimed_at",
    "first_claimed_at",
    "submitted_at",
    "expected_finish_at",
    "late_finish_at",
)


def video_key(job: Job) -> str:
    """Where the step's video is stored: `videos/<job_id>.mp4` for a single video, else one object per
    step, so a later step never overwrites an earlier one."""
    if not job.is_chain:
        return f"videos/{job.job_id}.mp4"
    return f"videos/{job.job_id}/step-{job.step}.mp4"


def step_record(job: Job, stored: dict[str, Any]) -> dict[str, Any]:
    """What the job keeps of a stored step: its task, its Kling video (the next step extends it), where
    it is stored, and what Kling charged for it."""
    return {
        "step": job.step,
        "task_id": job.task_id,
        "video_id": job.kling_video_id,
        "duration": job.video_duration,
        "s3_uri": stored["s3_uri"],
        "size": stored.get("video_size"),
        "sha256": stored.get("sha256"),
        "units_charged": job.units_charged,
    }


def stored_move(job: Job, stored: dict[str, Any], *, by: str) -> Transition:
    """The decision the step's video in S3 makes (after_stored), as the store writes it."""
    to_state, changes = after_stored(job, stored)
    return Transition(job.state, to_state, changes, by=by)


def after_stored(job: Job, stored: dict[str, Any], *, now: float | None = None) -> tuple[JobState, dict[str, Any]]:
    """What the step's video in S3 (`stored`: the download's changes) means for the job: COMPLETED with
    it (a single video, or a chain's last step), or QUEUED for the chain's next step. The changes are
    the transition's, for the store's one write (the workflow's RecordOutcome, or the poller's repair)."""
    if not job.is_chain:
        return JobState.COMPLETED, dict(stored)
    steps = [*job.steps, step_record(job, stored)]
    if job.step >= job.total_steps:
        done = job.model_copy(update={"steps": steps})
        return JobState.COMPLETED, dict(stored) | {"steps": steps, "units_charged": done.total_units}
    due = int(time.time() if now is None else now) + NEXT_STEP_RESEND_S
    reset: dict[str, Any] = dict.fromkeys(STEP_FIELDS_RESET)
    return JobState.QUEUED, reset | {
        "steps": steps,
        "step": job.step + 1,
        "awaiting_message": True,
        "poll_count": 0,
        "next_poll_at": due,
    }
