"""The submit use case: one queued message becomes at most one Kling task, whatever gets redelivered.

Protocol (docs/architecture.md, "Exactly once where money is spent"): claim the job with a lease
before calling Kling; send external_task_id = job_id; when an earlier attempt may have reached Kling
(an expired claim, or a create that got no answer), ask Kling by external_task_id before creating
anything. Backpressure returns the job to QUEUED and re-sends its message; account problems park it.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from enum import StrEnum

from kling_pipeline.adapters.callback_tokens import callback_url
from kling_pipeline.adapters.download_workflow import DownloadWorkflow, download_workflow
from kling_pipeline.adapters.job_queue import JobQueue, job_queue
from kling_pipeline.adapters.job_store import JobStore, job_store
from kling_pipeline.adapters.kling_client import KlingClient, shared_client
from kling_pipeline.adapters.secrets import callback_signing_secret, kling_credentials
from kling_pipeline.errors import (
    InvalidJobMessageError,
    KlingAccountError,
    KlingFinalError,
    KlingRetryableError,
    KlingUnavailableError,
    TransitionRejectedError,
)
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job, JobState, advance_job
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.requests import JobRequest, parse_job_message
from kling_pipeline.settings import SubmitSettings

S = JobState
BY = "submit"


class Outcome(StrEnum):
    SUBMITTED = "submitted"  # Kling accepted a task for this job (now or found from earlier)
    DUPLICATE = "duplicate"  # the job is already past submission: nothing to do
    REQUEUED = "requeued"  # backpressure or a claim held elsewhere: try again later
    FAILED = "failed"  # a final Kling error: the job is FAILED with Kling's message
    REJECTED = "rejected"  # the message itself is bad: dead-lettered with its reason
    PARKED = "parked"  # our Kling account needs an operator (keys, IP list): job QUEUED, message in the DLQ


@dataclass(frozen=True)
class SubmitResult:
    outcome: Outcome
    job_id: str | None
    detail: str = ""
    delay_s: int = 0
    kling_code: int | None = None


@dataclass
class SubmitDependencies:
    """Everything the submit path talks to."""

    settings: SubmitSettings
    store: JobStore
    queue: JobQueue
    kling: KlingClient
    callback_signing_secret: str
    workflow: DownloadWorkflow


def submit_dependencies(settings: SubmitSettings) -> SubmitDependencies:
    """Assembled per invocation from clients built once per container; the secrets' cache decides when
    a rotated key or signing secret is read again."""
    access_key, secret_key = kling_credentials(settings.kling_credentials_secret, max_age_s=settings.secrets_max_age_s)
    return SubmitDependencies(
        settings=settings,
        store=job_store(settings.jobs_table_name, settings.finished_job_ttl_days),
        queue=job_queue(settings.jobs_queue_url, settings.dead_letter_queue_url),
        kling=shared_client(settings.kling_base_url, access_key, secret_key, timeout_s=settings.kling_timeout_s),
        callback_signing_secret=callback_signing_secret(settings.callback_secret, max_age_s=settings.secrets_max_age_s),
        workflow=download_workflow(settings.download_state_machine_arn, settings.finished_job_ttl_days),
    )


def handle_job_message(
    raw_body: str, message_id: str, deps: SubmitDependencies, *, owner: str, time_left_ms: int | None = None
) -> SubmitResult:
    """Everything the submit function does with one SQS record. Raises only for infrastructure errors
    (DynamoDB, SQS), which the batch processor reports so SQS redelivers the message.

    With less time left than two Kling calls need, the message is sent back unprocessed: a batch
    never runs into the function timeout halfway through a claim."""
    try:
        request = parse_job_message(raw_body, message_id)
    except InvalidJobMessageError as exc:
        result = reject_message(raw_body, message_id, exc, deps)
    else:
        logger.set_correlation_id(request.job_id)
        needed_ms = 2_000 + 2_000 * deps.settings.kling_timeout_s
        if time_left_ms is not None and time_left_ms < needed_ms:
            result = SubmitResult(Outcome.REQUEUED, request.job_id, "not enough time left in this invocation")
        else:
            result = submit_job(request, deps, owner=owner)
        if result.outcome is Outcome.REQUEUED:
            deps.queue.send(request.as_message(), delay_s=result.delay_s)
        elif result.outcome in (Outcome.PARKED, Outcome.REJECTED):
            deps.queue.dead_letter(raw_body, reason=result.detail, source_message_id=message_id, job_id=request.job_id)
    record_outcome(result)
    return result


def record_outcome(result: SubmitResult) -> None:
    """One log line and one metric per message; Kling's code as a dimension where Kling refused."""
    logger.info(
        "job message handled", extra={"job_id": result.job_id, "outcome": result.outcome, "detail": result.detail}
    )
    record(Metric.SUBMIT_OUTCOMES, outcome=result.outcome.value)
    if result.kling_code is not None:
        record(Metric.KLING_REFUSALS, code=str(result.kling_code), outcome=result.outcome.value)


def reject_message(
    raw_body: str, message_id: str, error: InvalidJobMessageError, deps: SubmitDependencies
) -> SubmitResult:
    """A message that can never succeed: record the job as FAILED (if it has an id and no job yet) and
    park the message in the DLQ with the reason, on its first failure."""
    logger.warning("rejected job message", extra={"reason": error.reason, "message_id": message_id})
    if error.job_id:
        placeholder = JobRequest.model_construct(kind="text2video", prompt="", metadata={})
        deps.store.create(
            error.job_id,
            placeholder,
            by=BY,
            state=S.FAILED,
            error_code="INVALID_REQUEST",
            error_message=error.reason,
            raw_message=raw_body[:2000],
        )
    deps.queue.dead_letter(raw_body, reason=error.reason, source_message_id=message_id, job_id=error.job_id)
    return SubmitResult(Outcome.REJECTED, error.job_id, error.reason)


def submit_job(request: JobRequest, deps: SubmitDependencies, *, owner: str) -> SubmitResult:
    job_id = request.job_id
    assert job_id is not None
    job, created = deps.store.create(job_id, request, by=BY)
    if not created and job.request != request.as_message():
        reason = (
            f"job_id {job_id} is already used by a different request (now {job.state.value}); "
            "send this request with a new job_id"
        )
        logger.warning("job id reused for a different request", extra={"state": job.state})
        return SubmitResult(Outcome.REJECTED, job_id, reason)
    try:
        claimed = claim_job(job, deps, owner=owner)
    except TransitionRejectedError as exc:
        # Another worker moved it between our read and our claim: look again on the next delivery.
        return SubmitResult(Outcome.REQUEUED, job_id, f"claim lost to another worker ({exc.current})", delay_s=1)
    if isinstance(claimed, SubmitResult):
        return claimed
    try:
        return submit_claimed_job(claimed, claimed.job_request, deps)
    except KlingAccountError as exc:
        return park_job(claimed, deps, exc)


def claim_job(job: Job, deps: SubmitDependencies, *, owner: str) -> Job | SubmitResult:
    """QUEUED -> SUBMITTING with a lease; an expired SUBMITTING lease is re-claimed (and reconciled)."""
    if job.state not in (S.QUEUED, S.SUBMITTING):
        return SubmitResult(Outcome.DUPLICATE, job.job_id, f"job is already {job.state}")
    now = int(time.time())
    lease = {"lease_owner": owner, "lease_expires_at": now + deps.settings.submit_lease_s}
    if job.state is S.SUBMITTING:
        if (job.lease_expires_at or 0) > now:
            wait = (job.lease_expires_at or now) - now
            return SubmitResult(Outcome.REQUEUED, job.job_id, "another worker holds the claim", delay_s=wait + 1)
        return deps.store.transition(
            job,
            S.SUBMITTING,
            by=BY,
            changes=lease | {"needs_reconcile": True},
            add={"submit_attempts": 1},
            note=f"re-claimed after the lease of {job.lease_owner} expired",
        )
    return deps.store.transition(job, S.SUBMITTING, by=BY, changes=lease, add={"submit_attempts": 1})


def submit_claimed_job(job: Job, request: JobRequest, deps: SubmitDependencies) -> SubmitResult:
    """We hold the claim: find an earlier task if one may exist, else create exactly one."""
    kind = request.kind
    if job.needs_reconcile:
        try:
            existing = deps.kling.find_by_external_id(kind, job.job_id)
        except (KlingRetryableError, KlingUnavailableError) as exc:
            return release_for_retry(job, deps, f"could not ask Kling about an earlier attempt: {exc}")
        if existing is not None:
            logger.info("found the task of an earlier attempt", extra={"task_id": existing.task_id})
            return record_submitted(job, existing, deps, note="found by external_task_id after an interrupted attempt")
    body = request.kling_body(
        default_model=deps.settings.default_model,
        callback_url=callback_url(deps.settings.public_api_base_url, job.job_id, deps.callback_signing_secret),
        external_task_id=job.job_id,
    )
    if body.get("model_name") and body["model_name"] not in deps.settings.known_models:
        logger.warning("model not in KNOWN_MODELS; passing it to Kling as is", extra={"model": body["model_name"]})
    try:
        task = deps.kling.create_task(kind, body)
    except KlingUnavailableError as exc:
        # No answer: Kling may have created the task. Reconcile before any new create.
        return release_for_retry(job, deps, f"no answer from Kling: {exc}", needs_reconcile=True)
    except KlingRetryableError as exc:
        return release_for_retry(job, deps, f"Kling said {exc.code}: {exc.message}", kling_code=exc.code)
    except KlingFinalError as exc:
        if exc.code == 1201 and "external_task_id" in exc.message.lower():
            # Kling already has a task under this job id: that is our earlier submission.
            existing = deps.kling.find_by_external_id(kind, job.job_id)
            if existing is not None:
                return record_submitted(job, existing, deps, note="Kling already had this external_task_id")
        return fail_job(job, deps, exc)
    return record_submitted(job, task, deps, model_name=body.get("model_name"))


def record_submitted(
    job: Job, task: KlingTask, deps: SubmitDependencies, *, model_name: str | None = None, note: str | None = None
) -> SubmitResult:
    """SUBMITTED with the task id; a task found by reconciliation may already be further along (its
    callbacks came while we did not know the task id), so apply what it says at once."""
    submitted = deps.store.transition(
        job,
        S.SUBMITTED,
        by=BY,
        changes={
            "task_id": task.task_id,
            "kling_status": task.task_status,
            "needs_reconcile": None,
            "model_name": model_name,
        },
        remove=("lease_owner", "lease_expires_at"),
        note=note,
    )
    _, action = advance_job(submitted, task, store=deps.store, workflow=deps.workflow, by=BY)
    return SubmitResult(Outcome.SUBMITTED, job.job_id, f"{task.task_id} ({action})")


def park_job(job: Job, deps: SubmitDependencies, exc: KlingAccountError) -> SubmitResult:
    """Kling refused us, not the job (bad keys, clock, IP allow-list, an unknown code): the job waits in
    QUEUED and its message goes to the DLQ with the fix, to be redriven once the account is fixed."""
    reason = (
        f"Kling refused our account ({exc.code}: {exc.message}); no job is at fault. Check the KlingCredentials "
        "secret, the clock and Kling's IP allow-list, then `kling-pipeline dlq --redrive`"
    )
    deps.store.transition(
        job, S.QUEUED, by=BY, remove=("lease_owner", "lease_expires_at"), note=f"parked: Kling {exc.code}"
    )
    return SubmitResult(Outcome.PARKED, job.job_id, reason, kling_code=exc.code)


def release_for_retry(
    job: Job,
    deps: SubmitDependencies,
    reason: str,
    *,
    needs_reconcile: bool = False,
    kling_code: int | None = None,
) -> SubmitResult:
    """Backpressure, not failure: back to QUEUED, and the message returns after a growing, jittered delay."""
    delay = backpressure_delay(
        job.backpressure_count,
        base_s=deps.settings.backpressure_base_delay_s,
        max_s=deps.settings.backpressure_max_delay_s,
    )
    deps.store.transition(
        job,
        S.QUEUED,
        by=BY,
        changes={"needs_reconcile": True if needs_reconcile or job.needs_reconcile else None},
        remove=("lease_owner", "lease_expires_at"),
        add={"backpressure_count": 1},
        note=reason[:300],
    )
    return SubmitResult(Outcome.REQUEUED, job.job_id, reason, delay_s=delay, kling_code=kling_code)


def backpressure_delay(attempt: int, *, base_s: float, max_s: int, rng: random.Random | None = None) -> int:
    """Exponential from the base, capped, with jitter (half to full) so a throttled batch spreads out."""
    ceiling = min(float(max_s), base_s * 2 ** min(attempt, 16))
    jittered = ceiling * (rng or random).uniform(0.5, 1.0)
    return int(min(max_s, math.ceil(jittered)))


def fail_job(job: Job, deps: SubmitDependencies, exc: KlingFinalError) -> SubmitResult:
    deps.store.transition(
        job,
        S.FAILED,
        by=BY,
        changes={
            "error_code": f"KLING_{exc.code}",
            "error_message": f"Kling refused the task ({exc.code}): {exc.message}",
        },
        note=f"Kling {exc.code}",
    )
    return SubmitResult(Outcome.FAILED, job.job_id, exc.message, kling_code=exc.code)
