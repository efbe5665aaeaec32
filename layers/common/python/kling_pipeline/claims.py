"""A job's claim on its Kling task, shared by the submit path and the stale-job poller: claiming with
a lease, finding the task of an earlier attempt (reconciliation), recording a task, and the ways a
job goes back to QUEUED (backpressure, or parked for an operator).

The protocol is docs/architecture.md, "Exactly once where money is spent": claim before calling
Kling; when an earlier attempt may have reached Kling (an expired claim, a create that got no
answer), ask Kling by the step's external id before creating anything. The create itself is the
submit path's alone (submit.py): the poller reconciles, never creates.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from kling_pipeline.adapters.announcements import Announcer
from kling_pipeline.adapters.download_workflow import DownloadWorkflow
from kling_pipeline.adapters.generation_estimates import GenerationEstimates
from kling_pipeline.adapters.job_queue import JobQueue
from kling_pipeline.adapters.job_store import JobStore
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.ledger import RESERVED_DAY, RESERVED_UNITS, RESERVED_USD, Ledger
from kling_pipeline.adapters.slot_pools import SlotPools
from kling_pipeline.errors import (
    KlingAccountError,
    KlingRetryableError,
    KlingShapeError,
    KlingUnavailableError,
    LinkedWriteRefusedError,
)
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import KLING_UNSETTLED, LEASE, Job, JobState, Transition, advance_job
from kling_pipeline.observability import logger
from kling_pipeline.poll_schedule import expected_generation_s, first_poll_after_s, late_finish_s
from kling_pipeline.settings import PollerSettings, SubmitSettings

BY = "submit"
# Claim-and-backpressure cycles after this many are counted, not appended to the job's history.
LOGGED_RETRY_CYCLES = 3
# Answers Kling gives about one job that we cannot read (unknown codes, unknown shapes) before the job
# is parked for an operator: a newer Kling than this code knows will not start reading them by itself.
UNREADABLE_ANSWER_LIMIT = 5
# Why a QUEUED job waits, when it is not plain backpressure (shown by `status` and the jobs API).
HELD_FOR = "held_for"
# When a create was first answered 1201 with no task of the job's found (submit.refused_as_invalid).
REFUSED_SINCE = "refused_since"
# How long after a create that may have made a task (`unsettled_since`) reconciliation may go on failing
# to prove either way (Kling unreachable, a list too long to scan, answers it cannot read) before the
# job ends FAILED with KLING_UNSETTLED and what an operator needs to settle it (`kling-pipeline settle`):
# a day outlasts Kling's outages, and on a busy account the list to scan only grows.
UNSETTLED_WINDOW_S = 86_400
# Kling's billing refusals: the account exception, arrears, a resource pack used up or expired.
BILLING_CODES = frozenset({1100, 1101, 1102})


class Outcome(StrEnum):
    SUBMITTED = "submitted"  # Kling accepted a task for this job (now or found from earlier)
    DUPLICATE = "duplicate"  # the job is already past submission: nothing to do
    REQUEUED = "requeued"  # backpressure or a claim held elsewhere: try again later
    FAILED = "failed"  # a final Kling error: the job is FAILED with Kling's message
    REJECTED = "rejected"  # the message itself is bad: dead-lettered with its reason
    PARKED = "parked"  # an operator is needed (keys, IP list, answers we cannot read): job QUEUED, message in the DLQ
    HELD = "held"  # the day's unit budget has no room: job QUEUED, its message back later (never the DLQ)
    NAMED = "named"  # the message named no job: sent again with its job id (the SQS message id) in the body
    WAITING = "waiting"  # no free Kling slot in its pool: job QUEUED in the pool's line, its message done with


@dataclass(frozen=True)
class ClaimResult:
    outcome: Outcome
    job_id: str | None
    detail: str = ""
    delay_s: int = 0
    kling_code: int | None = None
    error: str = "JOB_ID_REUSED"  # what a refused request's waiting caller is told


@dataclass(frozen=True)
class ClaimRules:
    """The numbers that claiming, reconciling and sending a job back follow (the submit path and the poller)."""

    lease_s: int
    reconcile_grace_s: int
    backpressure_base_s: float
    backpressure_max_s: int

    @classmethod
    def of(cls, settings: SubmitSettings | PollerSettings) -> ClaimRules:
        return cls(
            lease_s=settings.submit_lease_s,
            reconcile_grace_s=settings.reconcile_grace_s,
            backpressure_base_s=settings.backpressure_base_delay_s,
            backpressure_max_s=settings.backpressure_max_delay_s,
        )


class Reconciler(Protocol):
    """What claiming a job, looking for its task at Kling and sending it back need: the submit path's
    dependencies have it, and so do the stale-job poller's, which reconciles abandoned claims the same way."""

    store: JobStore
    queue: JobQueue
    workflow: DownloadWorkflow
    estimates: GenerationEstimates
    ledger: Ledger
    announcer: Announcer
    rules: ClaimRules
    slots: SlotPools  # Kling's slots (the store takes and gives them back with the job's moves)

    @property
    def kling(self) -> KlingClient:
        """Built on first use (doors.kling_on_first_use): KlingKeysMissingError where Kling has no keys."""


def claim_job(job: Job, deps: Reconciler, *, owner: str) -> Job | ClaimResult:
    """QUEUED -> SUBMITTING with a lease; an expired SUBMITTING lease is re-claimed (and reconciled)."""
    if job.state is JobState.DOWNLOADING:
        # A redelivery after the DOWNLOADING write whose workflow start failed: start it (a no-op when
        # it runs; the next attempt when it ended without finishing the job).
        started = deps.workflow.start(job)
        return ClaimResult(Outcome.DUPLICATE, job.job_id, "download started" if started else "download under way")
    if job.state not in (JobState.QUEUED, JobState.SUBMITTING):
        return ClaimResult(Outcome.DUPLICATE, job.job_id, f"job is already {job.state}")
    now = int(time.time())
    if job.state is JobState.SUBMITTING and (job.lease_expires_at or 0) > now:
        wait = (job.lease_expires_at or now) - now
        return ClaimResult(Outcome.REQUEUED, job.job_id, "another worker holds the claim", delay_s=wait + 1)
    move = claim(job, owner=owner, lease_s=deps.rules.lease_s, now=now)
    try:
        return deps.store.transition(job, move)
    except LinkedWriteRefusedError:
        pass  # the claim of a QUEUED job takes a Kling slot of its pool (job_store): none is free
    slots = deps.slots
    pool = slots.pool_for(job)
    marked = slots.mark_waiting(job, pool)
    if marked is None:
        return ClaimResult(Outcome.REQUEUED, job.job_id, "moved by another worker meanwhile", delay_s=1)
    try:
        # A slot freed between the refused claim and the mark was handed to a line we were not yet in:
        # one more try closes that gap (a claim out of the line takes the job off it).
        return deps.store.transition(marked, move)
    except LinkedWriteRefusedError:
        return ClaimResult(Outcome.WAITING, job.job_id, f"waiting for a free Kling slot in pool {pool}")


def claim(job: Job, *, owner: str, lease_s: int, now: int) -> Transition:
    """QUEUED (or SUBMITTING whose lease has expired) -> SUBMITTING, held by `owner` for `lease_s`."""
    changes = {
        "awaiting_message": None,  # an extend chain's next step: its message has come
        "lease_owner": owner,
        "lease_expires_at": now + lease_s,
        "claimed_at": now,
        "first_claimed_at": job.first_claimed_at or now,
    }
    note = None
    if job.state is JobState.SUBMITTING:
        # The earlier claim may have created a task (and crashed before recording it) at any moment
        # since it was made: reconcile, and count the grace window from then.
        earlier = job.claimed_at or now
        changes |= {"needs_reconcile": True, "unsettled_since": min(earlier, job.unsettled_since or earlier)}
        note = f"re-claimed after the lease of {job.lease_owner} expired"
    return Transition(
        job.state,
        JobState.SUBMITTING,
        changes,
        note,
        by=BY,
        add={"submit_attempts": 1},
        logged=job.backpressure_count < LOGGED_RETRY_CYCLES,
    )


def reconcile(
    job: Job,
    kind: str,
    deps: Reconciler,
    *,
    by: str = BY,
    time_left_s: Callable[[], float] | None = None,
    located: Callable[[], KlingTask | None] | None = None,
) -> ClaimResult | None:
    """An earlier attempt may have made a task: look for it (by external id, then in the list of tasks
    created since that attempt, within `time_left_s`). None means "no task, and none can still appear:
    create". Past UNSETTLED_WINDOW_S without proof either way, the job ends FAILED (KLING_UNSETTLED).
    `located`: what a batch of look-ups already answered for this job (the poller's, task_lookups.py)."""
    now = int(time.time())
    since = unsettled_from(job, now)
    try:
        existing = (
            located()
            if located is not None
            else deps.kling.locate(
                kind,
                job.external_task_id,
                created_since_ms=reconcile_since_ms(since),
                accept=job.owns_task,
                time_left_s=time_left_s,
                model=job.task_model,
            )
        )
    except (KlingRetryableError, KlingUnavailableError, KlingShapeError) as exc:
        if now - since > UNSETTLED_WINDOW_S:
            return give_up_unsettled(job, deps, since, exc, by=by)
        return release_for_retry(
            job,
            deps,
            f"could not ask Kling about an earlier attempt: {exc}",
            unreadable=isinstance(exc, KlingShapeError),
        )
    if existing is not None and not job.owns_task(existing):
        # Under the step's external id, but another job's task (its parent video, its kind): never adopted.
        logger.warning("a task under this external id is not this job's", extra={"task_id": existing.task_id})
        existing = None
    if existing is not None:
        logger.info("found the task of an earlier attempt", extra={"task_id": existing.task_id})
        return record_submitted(job, existing, deps, note="found by external_task_id after an unsettled attempt", by=by)
    wait = (job.unsettled_since or 0) + deps.rules.reconcile_grace_s - now
    if wait > 0:
        # Kling may show a new task to queries only seconds after its create: absence is not proof yet.
        return release_for_retry(
            job, deps, f"no task found yet; an earlier create may still appear (waiting {wait} s)", delay_s=wait + 1
        )
    return None


def reconcile_since_ms(since: int) -> int:
    """Back to when (ms) a list scan must reach to prove an attempt made no task (a minute of clock slack)."""
    return (since - 60) * 1000


def unsettled_from(job: Job, now: int) -> int:
    """Epoch s from which a task of this job may exist unseen: the create (or abandoned claim) that left
    it unsettled. Not the first claim: budget holds and backpressure keep that for days, and a scan
    back to it on a busy account never ends."""
    return job.unsettled_since or job.first_claimed_at or now


def give_up_unsettled(job: Job, deps: Reconciler, since: int, exc: Exception, *, by: str) -> ClaimResult:
    """The window for proof has passed: the job ends with what is known and how to settle it. Its budget
    reservation is kept (a task may have been made and billed); its caller and subscribers are told."""
    started = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    reason = (
        f"{job.step_label}a create for this job (external_task_id {job.external_task_id}, from {started}) got no "
        "answer proving whether Kling made a task, and for a day since Kling could not show it either way (last: "
        f"{str(exc)[:200]}). Kling may have made and billed a task: look in Kling's console for external_task_id "
        f"{job.external_task_id} created after {started}, then `kling-pipeline settle {job.job_id} --task-id "
        f"TASK_ID` to collect its video, or `kling-pipeline settle {job.job_id} --no-task` to have it created"
    )
    failed = deps.store.transition(
        job,
        Transition(
            job.state, JobState.FAILED, {"error_code": KLING_UNSETTLED, "error_message": reason}, by=by, remove=LEASE
        ),
    )
    deps.announcer.job_ended(failed)
    logger.error("job unsettled past the window for proof", extra={"job_id": job.job_id, "since": since})
    return ClaimResult(Outcome.FAILED, job.job_id, reason)


def record_submitted(
    job: Job,
    task: KlingTask,
    deps: Reconciler,
    *,
    model_name: str | None = None,
    note: str | None = None,
    by: str = BY,
) -> ClaimResult:
    """SUBMITTED with the task id, due for a first poll when a job like it usually finishes; a task
    found by reconciliation may already be further along (its callbacks came while we did not know the
    task id), so apply what it says at once."""
    now = int(time.time())
    schedule = deps.store.schedule
    assert schedule is not None, "the submit path's store schedules live jobs"
    started = task.created_at // 1000 if task.created_at else now
    estimate = deps.estimates.expected(job)
    expected_finish = int(started + expected_generation_s(job, schedule, estimate))
    first_poll = int(started + first_poll_after_s(job, schedule, estimate))
    changes = {
        "task_id": task.task_id,
        "kling_status": task.task_status,
        "needs_reconcile": None,
        "unsettled_since": None,
        "unreadable_answers": None,
        REFUSED_SINCE: None,
        "submitted_at": now,
        "expected_finish_at": expected_finish,
        "late_finish_at": int(started + late_finish_s(job, schedule, estimate)),
        "next_poll_at": first_poll,
        HELD_FOR: None,
    } | ({"model_name": model_name} if model_name else {})
    submitted = deps.store.transition(
        job, Transition(job.state, JobState.SUBMITTED, changes, note, by=by, remove=LEASE)
    )
    _, action = advance_job(submitted, task, deps, by=by)
    return ClaimResult(Outcome.SUBMITTED, job.job_id, f"{task.task_id} ({action})")


def account_reason(exc: KlingAccountError) -> str:
    if exc.code in BILLING_CODES:
        fix = "top up the Kling account (its resource packs, or the overdue payment)"
    else:
        fix = "check the KlingCredentials secret, the clock and Kling's IP allow-list"
    return (
        f"Kling refused our account ({exc.code}: {exc.message}); no job is at fault. Fix: {fix}, "
        "then `kling-pipeline dlq --redrive`"
    )


def park_job(
    job: Job, deps: Reconciler, reason: str, *, kling_code: int | None = None, release: bool = False
) -> ClaimResult:
    """No job is at fault and retrying will not help until an operator acts (bad keys, clock, IP
    allow-list, a used-up resource pack, answers this version cannot read): the job waits in QUEUED
    (keeping what it knows, such as needing reconciliation) and its message goes to the DLQ with the
    fix, to be redriven. `release`: Kling proved it made no task, so the budget reservation goes back."""
    deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.QUEUED,
            {RESERVED_UNITS: None, RESERVED_USD: None, RESERVED_DAY: None} if release else {},
            f"parked: {reason[:200]}",
            by=BY,
            remove=LEASE,
            linked=tuple(deps.ledger.release_update(job)) if release else (),
        ),
    )
    return ClaimResult(Outcome.PARKED, job.job_id, reason, kling_code=kling_code)


def release_for_retry(
    job: Job,
    deps: Reconciler,
    reason: str,
    *,
    unsettled: bool = False,
    unreadable: bool = False,
    delay_s: int | None = None,
    kling_code: int | None = None,
    held_for: str | None = None,
    refused_since: int | None = None,
    unsettled_since: int | None = None,
) -> ClaimResult:
    """Backpressure, not failure: back to QUEUED, and the message returns after a growing, jittered delay.
    `unsettled`: a task may exist; reconcile before creating, and create nothing until the grace window
    since now is over. `unreadable`: count an answer this version could not read (park at the limit).
    `held_for`: why the job waits, shown with it (the daily budget). `refused_since`: when a create was
    first answered 1201 with no task found (kept until a task is recorded). `unsettled_since`: when the
    task that may exist can first have been made, if before now."""
    now = int(time.time())
    unreadable_answers = (job.unreadable_answers or 0) + (1 if unreadable else 0)
    if unreadable_answers >= UNREADABLE_ANSWER_LIMIT:
        return park_job(
            job,
            deps,
            f"Kling answered {unreadable_answers} times in a way this version cannot read (last: {reason[:300]}); "
            "update kling-pipeline, then `kling-pipeline dlq --redrive` (the job will look for its task first)",
        )
    changes: dict[str, object] = {"unreadable_answers": unreadable_answers or None, HELD_FOR: held_for}
    if refused_since is not None:
        changes[REFUSED_SINCE] = refused_since
    if unsettled:
        # Look again soon (the task may show at once); only a new create waits for the grace window.
        changes |= {"needs_reconcile": True, "unsettled_since": unsettled_since or now}
    if delay_s is None:
        delay_s = backpressure_delay(
            job.backpressure_count,
            base_s=deps.rules.backpressure_base_s,
            max_s=deps.rules.backpressure_max_s,
        )
    deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.QUEUED,
            changes,
            reason[:300],
            by=BY,
            remove=LEASE,
            add={"backpressure_count": 1},
            logged=job.backpressure_count < LOGGED_RETRY_CYCLES,
        ),
    )
    return ClaimResult(Outcome.REQUEUED, job.job_id, reason, delay_s=min(delay_s, 900), kling_code=kling_code)


def backpressure_delay(attempt: int, *, base_s: float, max_s: int, rng: random.Random | None = None) -> int:
    """Exponential from the base, capped, with jitter (half to full) so a throttled batch spreads out."""
    ceiling = min(float(max_s), base_s * 2 ** min(attempt, 16))
    jittered = ceiling * (rng or random).uniform(0.5, 1.0)
    return int(min(max_s, math.ceil(jittered)))


def settle_unsettled(job: Job, store: JobStore, *, task_id: str | None, by: str = "operator") -> Job:
    """An operator settles a KLING_UNSETTLED job from what Kling's console shows (`kling-pipeline settle`):
    the task Kling made is recorded (SUBMITTED, due for the poller at once, which then carries it on as
    any task), or, Kling having made none, the job goes back to QUEUED without the reconcile mark, to be
    created by the submit path (the caller sends a reference to it; `awaiting_message` has the poller
    send one if none comes). Through the store's transitions, whose condition lets only a KLING_UNSETTLED
    job leave FAILED; leaving it restores the job's LiveJobs entry and drops the failure's announcement
    mark (adapters.job_store.transition_write)."""
    if job.state is not JobState.FAILED or job.error_code != KLING_UNSETTLED:
        raise ValueError(f"job {job.job_id} is {job.state} ({job.error_code}), not FAILED with {KLING_UNSETTLED}")
    now = int(time.time())
    cleared: dict[str, object] = {
        "error_code": None,
        "error_message": None,
        "needs_reconcile": None,
        "unsettled_since": None,
        "unreadable_answers": None,
    }
    if task_id:
        return store.transition(
            job,
            Transition(
                job.state,
                JobState.SUBMITTED,
                cleared | {"task_id": task_id, "submitted_at": now, "next_poll_at": now},
                f"settled by an operator: Kling's task {task_id} is this job's",
                by=by,
            ),
        )
    return store.transition(
        job,
        Transition(
            job.state,
            JobState.QUEUED,
            cleared | {"next_poll_at": now + 600, "awaiting_message": True},
            "settled by an operator: Kling made no task for it; to be created",
            by=by,
        ),
    )
