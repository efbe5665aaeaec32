"""The submit path's fal door (submit.py calls it for a claimed job naming provider fal).

Exactly once without an idempotency key: fal has none, and no look-up by our id, so a create is sent at
most once per job. Its reference is stored by the SUBMITTED transition before anything else; a create
whose answer proves nothing (ProviderCreateUnsettledError), or a claim whose earlier holder may have sent
one (an expired lease), leaves the job SUBMITTED without a request id, waiting for fal's webhook (its
URL names the job) or the window, never sent again. fal queues and never refuses for concurrency, so a
fal job takes no Kling slot (adapters.job_store); a 429 or a create that never left is backpressure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kling_pipeline.claims import BY, HELD_FOR, REFUSED_SINCE, ClaimResult, Outcome, park_job, release_for_retry
from kling_pipeline.errors import (
    ImageRefusedError,
    ProviderAccountError,
    ProviderCapabilityError,
    ProviderCreateUnsettledError,
    ProviderRefusedError,
    ProviderUnavailableError,
)
from kling_pipeline.fal_door import (
    ENDPOINT,
    PROVIDER_TASK,
    UNSETTLED_AT,
    FalNotEnabledError,
    fal_callback_url,
)
from kling_pipeline.lifecycle import LEASE, Job, JobState, Transition
from kling_pipeline.observability import logger
from kling_pipeline.poll_schedule import expected_generation_s, first_poll_after_s
from kling_pipeline.providers import TaskRef
from kling_pipeline.providers.fal import build_arguments
from kling_pipeline.requests import JobRequest

if TYPE_CHECKING:
    from kling_pipeline.poller import PollerDependencies
    from kling_pipeline.settings import SubmitSettings
    from kling_pipeline.submit import SubmitDependencies


def submit_fal(job: Job, request: JobRequest, deps: SubmitDependencies) -> ClaimResult:
    """We hold the claim of a fal job: one create, its reference stored at once."""
    from kling_pipeline.submit import refuse_request, resolve_images

    settings = deps.settings
    if job.needs_reconcile:
        # An earlier claim expired: it may have sent the create. Never sent twice: wait for fal's webhook.
        since = int(job.unsettled_since or job.claimed_at or time.time())
        return wait_unsettled(job, deps, since, "", "an earlier claim expired and may have sent the create to fal")
    try:
        client = deps.fal()
    except FalNotEnabledError as exc:
        return park_job(job, deps, f"{exc}, then `kling-pipeline dlq --redrive`", release=True)
    try:
        images = resolve_images(request, deps)
        endpoint, arguments = build_arguments(request, default_model=settings.default_model, image_urls=images)
    except (ImageRefusedError, ProviderCapabilityError) as exc:
        return refuse_request(job, deps, f"invalid job request: {exc}")
    webhook = fal_callback_url(settings.public_api_base_url, job.job_id, deps.callback_signing_secret)
    try:
        ref = client.create(endpoint.model_id, arguments, webhook_url=webhook)
    except ProviderCreateUnsettledError as exc:
        return wait_unsettled(job, deps, int(exc.at), endpoint.model_id, str(exc))
    except ProviderUnavailableError as exc:
        # Nothing was made (no connection, or fal's 429): backpressure, as Kling's 1302.
        return release_for_retry(job, deps, f"fal: {exc.message}")
    except ProviderAccountError as exc:
        return park_job(job, deps, f"{exc.message}, then `kling-pipeline dlq --redrive`", release=True)
    except ProviderRefusedError as exc:
        return refuse_request(job, deps, f"fal refused the request: {exc.message}")
    return record_fal_submitted(job, ref, deps, model=endpoint.model)


def usd_to_reserve(request: JobRequest, settings: SubmitSettings) -> float | None:
    """What a fal job's video will cost in USD by the price table (and FalPrices), for the daily USD budget;
    None when fal does not serve it (refused at its create, before any money is spent) or no price is known."""
    from kling_pipeline.providers.fal import endpoint_for
    from kling_pipeline.providers.fal_prices import PriceTable

    try:
        endpoint = endpoint_for(request.model or settings.default_model, request.kind, request.mode)
        seconds = float(request.duration)
    except (ProviderCapabilityError, TypeError, ValueError):
        return None
    charge = PriceTable.from_setting(settings.fal_prices).charge(endpoint.model_id, seconds, audio=bool(request.sound))
    if charge is None:
        logger.warning("no fal price for the daily USD budget's estimate", extra={"endpoint": endpoint.model_id})
    return None if charge is None else charge.amount


def record_fal_submitted(job: Job, ref: TaskRef, deps: SubmitDependencies, *, model: str) -> ClaimResult:
    """SUBMITTED with fal's reference (request_id and its URLs), due for a first look when a job like it
    usually finishes and only if fal's webhook has not settled it."""
    now = int(time.time())
    schedule = deps.store.schedule
    assert schedule is not None, "the submit path's store schedules live jobs"
    estimate = deps.estimates.expected(job)
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
        "next_poll_at": int(now + first_poll_after_s(job, schedule, estimate)),
        HELD_FOR: None,
        "model_name": model,
    }
    deps.store.transition(
        job,
        Transition(
            job.state, JobState.SUBMITTED, changes, f"queued at fal as {ref.id} ({ref.endpoint})", by=BY, remove=LEASE
        ),
    )
    return ClaimResult(Outcome.SUBMITTED, job.job_id, f"fal {ref.id}")


def wait_unsettled(
    job: Job, deps: SubmitDependencies | PollerDependencies, since: int, endpoint: str, why: str
) -> ClaimResult:
    """SUBMITTED without a request id: fal's webhook (naming the job) settles it; the poller ends it
    PROVIDER_UNSETTLED once the window has passed without one. Its budget is not given back."""
    window = deps.settings.fal_webhook_window_s
    changes = {
        UNSETTLED_AT: since,
        ENDPOINT: endpoint or job.provider_endpoint or "fal",
        "needs_reconcile": None,
        "submitted_at": since,
        "next_poll_at": since + window,
        HELD_FOR: None,
    }
    logger.warning("fal create unsettled: waiting for fal's webhook", extra={"job_id": job.job_id, "why": why[:300]})
    deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.SUBMITTED,
            changes,
            f"unsettled, never sent again: {why}"[:300],
            by=BY,
            remove=LEASE,
        ),
    )
    return ClaimResult(Outcome.SUBMITTED, job.job_id, f"unsettled: waiting {window} s for fal's webhook")
