"""Kling's webhook: authenticate by our own URL token, treat the body as a hint, confirm with a GET.

Answers fast and changes nothing for forged, unknown, duplicate, stale or out-of-order callbacks.
The decision of what an observed task means is jobs.observe_task, shared with the poller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kling_pipeline.jobs import Job
from kling_pipeline.kling import KlingApiError, KlingClient, KlingUnavailableError
from kling_pipeline.models import JobState, KlingTask
from kling_pipeline.observability import logger
from kling_pipeline.progress import advance_job
from kling_pipeline.store import JobStore
from kling_pipeline.tokens import verify_job_token
from kling_pipeline.workflow import DownloadWorkflow

MAX_CALLBACK_BYTES = 64 * 1024
BY = "callback"
S = JobState


@dataclass
class CallbackDependencies:
    store: JobStore
    kling: KlingClient
    workflow: DownloadWorkflow
    signing_secret: str


@dataclass(frozen=True)
class CallbackAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def handle_callback(
    job_id: str, token: str | None, raw_body: str | bytes | None, deps: CallbackDependencies
) -> CallbackAnswer:
    """Everything the callback endpoint does; never raises for anything a caller sent."""
    if not verify_job_token(deps.signing_secret, job_id, token):
        logger.warning("callback refused: bad or missing token", extra={"job_id": job_id})
        return CallbackAnswer(401, {"message": "invalid or missing callback token"})
    job = deps.store.find(job_id)
    if job is None:
        return CallbackAnswer(404, {"message": f"no job {job_id}"})
    logger.set_correlation_id(job_id)
    body = raw_body.encode() if isinstance(raw_body, str) else (raw_body or b"")
    if len(body) > MAX_CALLBACK_BYTES:
        logger.warning("callback body too large", extra={"bytes": len(body)})
        return CallbackAnswer(413, {"message": f"callback body over {MAX_CALLBACK_BYTES} bytes"})
    try:
        hint = KlingTask.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError) as exc:
        logger.warning("malformed callback body", extra={"error": str(exc)[:500]})
        return CallbackAnswer(400, {"message": "body is not a Kling task object"})
    return apply_hint(job, hint, deps)


def apply_hint(job: Job, hint: KlingTask, deps: CallbackDependencies) -> CallbackAnswer:
    if job.state is S.DOWNLOADING:
        # Repairs a crash between the DOWNLOADING write and the start; a started execution is a no-op.
        deps.workflow.start(job.job_id)
        return answer(job, "download already under way")
    if job.is_terminal or job.task_id is None:
        return answer(job, "nothing to do")
    if hint.task_status in ("submitted", "processing"):
        # Cheap states start nothing that costs: the body may move the job, if it is this job's task.
        return move(job, hint, deps)
    if job.state not in (S.SUBMITTED, S.PROCESSING):
        return answer(job, "nothing to do")
    try:
        confirmed = deps.kling.get_task(job.kind, job.task_id)
    except (KlingApiError, KlingUnavailableError) as exc:
        # Kling will call again or the poller will look; a 5xx tells Kling this one did not land.
        logger.warning("could not confirm the callback with Kling", extra={"error": str(exc)})
        return CallbackAnswer(503, {"message": "could not confirm the task with Kling; try again"})
    if confirmed.task_status != hint.task_status:
        logger.info(
            "callback body disagrees with Kling", extra={"hint": hint.task_status, "kling": confirmed.task_status}
        )
    return move(job, confirmed, deps)


def move(job: Job, task: KlingTask, deps: CallbackDependencies) -> CallbackAnswer:
    moved, action = advance_job(job, task, store=deps.store, workflow=deps.workflow, by=BY)
    return answer(moved, action)


def answer(job: Job, action: str) -> CallbackAnswer:
    return CallbackAnswer(200, {"job_id": job.job_id, "state": job.state.value, "action": action})
