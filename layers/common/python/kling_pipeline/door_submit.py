"""The submit path through another provider's door (submit.py calls it for a claimed job naming fal,
replicate or acedata; doors.py says what differs per provider).

Exactly once without an idempotency key: none of the three has one. The reference a create answers is
stored by the SUBMITTED transition itself, before anything else is done with it. What happens after a
create whose answer proves nothing (ProviderCreateUnsettledError), or a claim whose earlier holder may
have sent one (an expired lease), depends on the door:
- **by listing** (Replicate, `Door.finds_lost_creates`): the job goes back to the queue marked
  `needs_reconcile`, and before any new create its webhook URL (the same for every create of the job) is
  searched for in the provider's list (`find_by_webhook`): found, the job takes that task (no create);
  passed the create's time without it, a create is safe; a walk that cannot finish is asked again, never
  read as "not made", and past a day the job ends PROVIDER_UNSETTLED.
- **waiting** (fal, AceData): the job waits SUBMITTED without a task id (`provider_unsettled_at`) for the
  callback whose URL names it, or for the door's window, never sent again.
A provider job takes no Kling slot (adapters.job_store); a 429 or a create that never left is backpressure.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kling_pipeline.claims import (
    BY,
    HELD_FOR,
    REFUSED_SINCE,
    UNSETTLED_WINDOW_S,
    ClaimResult,
    Outcome,
    park_job,
    release_for_retry,
    unsettled_from,
)
from kling_pipeline.doors import ENDPOINT, PROVIDER_TASK, PROVIDER_UNSETTLED, UNSETTLED_AT, Door
from kling_pipeline.errors import (
    ImageRefusedError,
    ProviderAccountError,
    ProviderCapabilityError,
    ProviderCreateUnsettledError,
    ProviderNotEnabledError,
    ProviderRefusedError,
    ProviderUnavailableError,
)
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import LEASE, Job, JobState, Transition
from kling_pipeline.observability import logger
from kling_pipeline.poll_schedule import expected_generation_s, first_poll_after_s
from kling_pipeline.providers import Charge, ProviderTask, TaskRef
from kling_pipeline.requests import JobRequest

if TYPE_CHECKING:
    from kling_pipeline.poller import PollerDependencies
    from kling_pipeline.submit import SubmitDependencies

STATUSES = {"queued": "submitted", "running": "processing", "succeeded": "succeed", "failed": "failed"}


def submit_at_door(job: Job, request: JobRequest, deps: SubmitDependencies, door: Door) -> ClaimResult:
    """We hold the claim of a job naming `door`'s provider: one create, its reference stored at once."""
    from kling_pipeline.submit import refuse_request, resolve_images

    settings = deps.settings
    if job.needs_reconcile and not door.finds_lost_creates:
        # An earlier claim expired: it may have sent the create. Never sent twice: wait for the callback.
        since = int(job.unsettled_since or job.claimed_at or time.time())
        why = f"an earlier claim expired and may have sent the create to {door.label}"
        return wait_unsettled(job, deps, door, since, "", why)
    try:
        client = deps.door(door.name)
    except ProviderNotEnabledError as exc:
        return park_job(job, deps, f"{exc}, then `kling-pipeline dlq --redrive`", release=True)
    try:
        images = resolve_images(request, deps)
        built = door.build(request, settings.default_model, images)
    except (ImageRefusedError, ProviderCapabilityError) as exc:
        return refuse_request(job, deps, f"invalid job request: {exc}")
    webhook = door.callback_url(settings.public_api_base_url, job.job_id, deps.callback_signing_secret)
    if job.needs_reconcile:
        found = find_lost_create(job, deps, door, client, webhook)
        if isinstance(found, ClaimResult):
            return found
        if found is not None:
            return record_door_submitted(job, found, deps, model=built.model, note="found by listing")
    try:
        ref = client.create(built.endpoint, built.arguments, webhook_url=webhook)
    except ProviderCreateUnsettledError as exc:
        if door.finds_lost_creates:
            # Its list will show whether it was made: reconciled by listing before any new create.
            return release_for_retry(
                job,
                deps,
                f"{door.label}: {exc.message}"[:300],
                unsettled=True,
                unsettled_since=int(exc.at),
                delay_s=deps.rules.reconcile_grace_s + 1,
            )
        return wait_unsettled(job, deps, door, int(exc.at), built.endpoint, str(exc))
    except ProviderUnavailableError as exc:
        # Nothing was made (no connection, or a 429): backpressure, as Kling's 1302.
        return release_for_retry(job, deps, f"{door.label}: {exc.message}")
    except ProviderAccountError as exc:
        return park_job(job, deps, f"{exc.message}, then `kling-pipeline dlq --redrive`", release=True)
    except ProviderRefusedError as exc:
        return refuse_request(job, deps, f"{door.label} refused the request: {exc.message}")
    return record_door_submitted(job, ref, deps, model=built.model)


def find_lost_create(
    job: Job, deps: SubmitDependencies, door: Door, client: Any, webhook: str
) -> TaskRef | ClaimResult | None:
    """Exactly once by listing: the task an earlier create made, found by the webhook URL naming the job
    (a reference: record it); None when the list proves none was made (create); a ClaimResult when it
    cannot tell yet (asked again later; past a day without proof, the job ends PROVIDER_UNSETTLED)."""
    now = int(time.time())
    since = unsettled_from(job, now)
    try:
        found: TaskRef | None = client.find_by_webhook(webhook, float(since))
    except ProviderUnavailableError as exc:
        if now - since > UNSETTLED_WINDOW_S:
            return fail_unsettled(job, deps, door, since, f"its list could not be read for a day ({exc.message})")
        return release_for_retry(job, deps, f"{door.label}: could not search the list: {exc.message}"[:300])
    if found is not None:
        logger.info("found the task of an earlier create by listing", extra={"task_id": found.id})
        return found
    wait = since + deps.rules.reconcile_grace_s - now
    if wait > 0:
        # A list may show a new task only moments after its create: absence is not proof yet.
        return release_for_retry(job, deps, f"no {door.label} task found yet (waiting {wait} s)", delay_s=wait + 1)
    return None


def record_door_submitted(
    job: Job, ref: TaskRef, deps: SubmitDependencies, *, model: str, note: str = ""
) -> ClaimResult:
    """SUBMITTED with the provider's reference, due for a first look when a job like it usually finishes
    (sooner for a door that must be looked at within a while) and only if its callback has not settled it."""
    from kling_pipeline.doors import door

    now = int(time.time())
    schedule = deps.store.schedule
    assert schedule is not None, "the submit path's store schedules live jobs"
    estimate = deps.estimates.expected(job)
    first_look = int(now + first_poll_after_s(job, schedule, estimate))
    within = door(ref.provider).poll_within_s(deps.settings)
    changes = {
        "task_id": ref.id,
        PROVIDER_TASK: ref.as_record(),
        "kling_status": "submitted",
        "needs_reconcile": None,
        "unsettled_since": None,
        "unreadable_answers": None,
        REFUSED_SINCE: None,
        "submitted_at": now,
        "expected_finish_at": int(now + expected_generation_s(job, schedule, estimate)),
        "next_poll_at": first_look if within is None else min(first_look, now + within),
        HELD_FOR: None,
        "model_name": model,
    }
    what = f"queued at {ref.provider} as {ref.id} ({ref.endpoint})" + (f", {note}" if note else "")
    deps.store.transition(job, Transition(job.state, JobState.SUBMITTED, changes, what, by=BY, remove=LEASE))
    return ClaimResult(Outcome.SUBMITTED, job.job_id, f"{ref.provider} {ref.id}")


def wait_unsettled(
    job: Job, deps: SubmitDependencies | PollerDependencies, door: Door, since: int, endpoint: str, why: str
) -> ClaimResult:
    """SUBMITTED without a task id: the provider's callback (naming the job) settles it; the poller ends it
    PROVIDER_UNSETTLED once the door's window has passed without one. Its budget is not given back."""
    window = door.window_s(deps.settings)
    changes = {
        UNSETTLED_AT: since,
        ENDPOINT: endpoint or job.provider_endpoint or door.name,
        "needs_reconcile": None,
        "submitted_at": since,
        "next_poll_at": since + window,
        HELD_FOR: None,
    }
    logger.warning(
        "create unsettled: waiting for the provider's callback",
        extra={"job_id": job.job_id, "provider": door.name, "why": why[:300]},
    )
    deps.store.transition(
        job,
        Transition(
            job.state, JobState.SUBMITTED, changes, f"unsettled, never sent again: {why}"[:300], by=BY, remove=LEASE
        ),
    )
    return ClaimResult(Outcome.SUBMITTED, job.job_id, f"unsettled: waiting {window} s for {door.label}'s callback")


def fail_unsettled(job: Job, deps: Any, door: Door, since: int, what: str, *, by: str = BY) -> ClaimResult:
    """FAILED PROVIDER_UNSETTLED, with what is known and how to check it; its budget is kept."""
    failed = deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.FAILED,
            {"error_code": PROVIDER_UNSETTLED, "error_message": unsettled_reason(job, door, since, what)},
            f"unsettled at {door.label}",
            by=by,
            remove=LEASE,
        ),
    )
    deps.announcer.job_ended(failed)
    return ClaimResult(Outcome.FAILED, job.job_id, failed.error_message or PROVIDER_UNSETTLED)


def unsettled_reason(job: Job, door: Door, since: int, what: str) -> str:
    """PROVIDER_UNSETTLED: what is known and how to check it."""
    when = datetime.fromtimestamp(since or 0, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    endpoint = job.provider_endpoint or door.name
    again = (
        "It was not sent again (a second create could be a second charge)"
        if not door.finds_lost_creates
        else "No new create was sent while its list could not show whether the first was made"
    )
    return (
        f"a create for this job on {door.label} ({endpoint}, sent {when}) got no answer proving whether "
        f"{door.label} made it, and {what}. {again}. {door.label} may have made and billed it: look for a task "
        f"of {endpoint} at {when} in {door.dashboard}; send the request again with a new job_id if there is none"
    )


def as_kling_task(task: ProviderTask, charge: Charge | None = None) -> KlingTask | None:
    """A provider's view of a task as the observation the lifecycle decides on; None for `unknown`."""
    status = STATUSES.get(task.status)
    if status is None:
        return None
    body: dict[str, Any] = {"task_id": task.id, "task_status": status, "task_status_msg": task.error}
    if task.status == "succeeded" and task.video_url:
        video: dict[str, Any] = {"id": task.id, "url": task.video_url}
        if task.duration_s is not None:
            video["duration"] = f"{task.duration_s:g}"
        body["task_result"] = {"videos": [video]}
    if charge is not None and charge.unit == "USD":
        body["billing"] = [{"charge_type": "cash", "amount": f"{charge.amount:.4f}", "currency": "USD"}]
    return KlingTask.model_validate(body)


def observed_changes(task: ProviderTask) -> dict[str, Any]:
    """What a provider's task records beyond Kling's vocabulary: when its video stops being fetchable
    (Replicate: an hour after the prediction ended), and an output the provider no longer holds
    (PROVIDER_OUTPUT_EXPIRED, said plainly instead of Kling's words)."""
    changes: dict[str, Any] = {}
    if task.status == "succeeded" and task.video_expires_at is not None:
        changes["video_expires_at"] = int(task.video_expires_at)
    if task.status == "failed" and task.error_code:
        changes |= {"error_code": task.error_code, "error_message": task.error or task.error_code}
    return changes
