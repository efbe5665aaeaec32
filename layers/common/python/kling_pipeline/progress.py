"""Apply what Kling says about a task to its job: the one path every observer takes.

The callback, the submit path's reconciliation (and the stale-job poller to come) all end here, so
a task seen by any of them moves the job the same way and starts the download exactly once.
"""

from __future__ import annotations

from kling_pipeline.jobs import Job, TransitionRejectedError, observe_task
from kling_pipeline.models import KlingTask
from kling_pipeline.store import JobStore
from kling_pipeline.workflow import DownloadWorkflow


def advance_job(job: Job, task: KlingTask, *, store: JobStore, workflow: DownloadWorkflow, by: str) -> tuple[Job, str]:
    """Returns the job as it now stands and what happened, in words for logs and answers."""
    decision = observe_task(job, task)
    if decision is None:
        return job, "nothing to do"
    try:
        moved = store.transition(job, decision.to_state, by=by, changes=decision.changes, note=decision.note)
    except TransitionRejectedError:
        return job, "already handled"
    if decision.starts_download:
        workflow.start(moved.job_id)
    return moved, f"{decision.from_state} -> {decision.to_state}"
