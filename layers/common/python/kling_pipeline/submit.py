"""The submit use case: one queued message becomes at most one Kling task, whatever gets redelivered.

Protocol (docs/architecture.md, "Exactly once where money is spent"): claim the job with a lease
before calling Kling (claims.py); send the step's external_task_id; when an earlier attempt may have
reached Kling (an expired claim, or a create that got no answer), ask Kling by it before creating
anything. Backpressure returns the job to QUEUED and re-sends its message; account problems park it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from kling_pipeline import capabilities
from kling_pipeline.adapters.announcements import Announcer, announcer
from kling_pipeline.adapters.callback_tokens import callback_url
from kling_pipeline.adapters.download_workflow import DownloadWorkflow, download_workflow
from kling_pipeline.adapters.generation_estimates import GenerationEstimates, generation_estimates
from kling_pipeline.adapters.job_queue import JobQueue, job_queue
from kling_pipeline.adapters.job_store import JobStore, job_store
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.ledger import (
    RESERVED_DAY,
    DailyBudget,
    Ledger,
    day_of,
    ledger,
    reservation,
    units_budget,
    usd_budget,
)
from kling_pipeline.adapters.secrets import callback_signing_secret
from kling_pipeline.adapters.slot_pools import SlotPools, slot_pools
from kling_pipeline.adapters.waiting_callers import WaitingCallers, waiting_callers
from kling_pipeline.claims import (
    BY,
    HELD_FOR,
    LOGGED_RETRY_CYCLES,
    ClaimResult,
    ClaimRules,
    Outcome,
    account_reason,
    claim_job,
    park_job,
    reconcile,
    record_submitted,
    release_for_retry,
)
from kling_pipeline.doors import (
    DOORS,
    clients,
    door_of,
    kling_keys_refusal,
    kling_on_first_use,
    no_clients,
    provider_of,
)
from kling_pipeline.errors import (
    ImageRefusedError,
    InvalidJobMessageError,
    KlingAccountError,
    KlingApiKeyNeededError,
    KlingCreateUnsettledError,
    KlingFinalError,
    KlingKeysMissingError,
    KlingRetryableError,
    KlingShapeError,
    KlingUnavailableError,
    LinkedWriteRefusedError,
    TransitionRejectedError,
)
from kling_pipeline.images import image_source
from kling_pipeline.job_ids import job_reference, referenced_job
from kling_pipeline.kling_body import create_body, step_body
from kling_pipeline.lifecycle import LEASE, Job, JobState, Transition
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.requests import JobRequest, parked_message, parse_job_message, stored_request
from kling_pipeline.settings import SubmitSettings
from kling_pipeline.slots import waiting_changes
from kling_pipeline.storable import storable_text
from kling_pipeline.unit_estimates import units_to_reserve

if TYPE_CHECKING:  # imported on first use: only requests with URL or S3 images need it (resolve_images)
    from kling_pipeline.adapters.input_images import InputImages

HELD_FOR_BUDGET = "daily budget reached"
INVALID_PARAMETER = 1201
OVER_CONCURRENCY = 1303  # Kling: "parallel task over resource pack limit"
BUDGET_TOO_SMALL = "BUDGET_TOO_SMALL"
SECONDS_PER_DAY = 86_400


@dataclass
class SubmitDependencies:
    """Everything the submit path talks to."""

    settings: SubmitSettings
    rules: ClaimRules
    store: JobStore
    queue: JobQueue
    # Kling's own client, built on first use (doors.kling_on_first_use): KlingKeysMissingError in a deployment
    # that reaches Kling only through another door.
    kling_client: Callable[[], KlingClient]
    callback_signing_secret: str
    workflow: DownloadWorkflow
    callers: WaitingCallers
    images: Callable[[], InputImages]  # built on first use (resolve_images)
    estimates: GenerationEstimates
    ledger: Ledger
    announcer: Announcer
    slots: SlotPools
    clock: Callable[[], float] = time.time  # the budget's day is the UTC date of clock()
    # The other providers' doors (doors.py): a client by name, built on first use; ProviderNotEnabledError
    # while its secret is empty.
    door: Callable[[str], Any] = no_clients

    @cached_property
    def kling(self) -> KlingClient:
        return self.kling_client()


def submit_dependencies(settings: SubmitSettings) -> SubmitDependencies:
    """Assembled per invocation from clients built once per container; the secrets' cache decides when
    a rotated key or signing secret is read again."""
    kling = kling_on_first_use(settings)
    queue = job_queue(settings.jobs_queue_url, settings.dead_letter_queue_url)
    slots = slot_pools(settings.jobs_table_name, settings.pool_limits, queue, settings.default_model)
    store = job_store(settings.jobs_table_name, settings.finished_job_ttl_days, settings.poll_schedule, slots)
    return SubmitDependencies(
        settings=settings,
        rules=ClaimRules.of(settings),
        estimates=generation_estimates(settings.stats_table_name),
        ledger=ledger(settings.stats_table_name),
        announcer=announcer(settings.event_bus_name, store),
        store=store,
        queue=queue,
        kling_client=kling,
        callback_signing_secret=callback_signing_secret(settings.callback_secret, max_age_s=settings.secrets_max_age_s),
        workflow=download_workflow(settings.download_state_machine_arn, settings.download_attempts),
        callers=waiting_callers(),
        slots=slots,
        images=lambda: settings_input_images(settings),
        door=clients(settings),
    )


def settings_input_images(settings: SubmitSettings) -> InputImages:
    """The input-image checker (one per container), imported and built when a request first has a URL or
    S3 image: it brings the download's URL rules and an S3 client that most cold starts never use."""
    from kling_pipeline.adapters.input_images import input_images

    return input_images(
        settings.input_bucket,
        settings.input_url_lifetime_s,
        settings.image_url_hosts,
        settings.pipeline_mode == "production",
        settings.image_timeout_s,
    )


def resolve_images(request: JobRequest, deps: SubmitDependencies) -> dict[str, str]:
    """Field -> the reference to send Kling, for the request's URL and S3 images (adapters.input_images);
    raw base64 images were checked when the message was parsed, and a request without images has none."""
    if all(image_source(field, value) == "base64" for field, value in request.image_slots()):
        return {}
    return deps.images().resolve(request)


def handle_record(
    raw_body: str, message_id: str, settings: SubmitSettings, *, owner: str, time_left_ms: int | None = None
) -> ClaimResult:
    """One SQS record. Before the Kling keys are stored (and no other door is enabled) the message is parked
    in the DLQ at once with the fix (redrive it once they are), never left to burn its receives into the DLQ
    without a reason."""
    try:
        deps = submit_dependencies(settings)
    except KlingKeysMissingError as exc:
        job_queue(settings.jobs_queue_url, settings.dead_letter_queue_url).dead_letter(
            raw_body, reason=str(exc), source_message_id=message_id, job_id=None
        )
        record(Metric.KLING_KEYS_MISSING)
        result = ClaimResult(Outcome.PARKED, None, str(exc))
        record_outcome(result)
        return result
    return handle_job_message(raw_body, message_id, deps, owner=owner, time_left_ms=time_left_ms)


def handle_job_message(
    raw_body: str, message_id: str, deps: SubmitDependencies, *, owner: str, time_left_ms: int | None = None
) -> ClaimResult:
    """Everything the submit function does with one SQS record. Raises only for infrastructure errors
    (DynamoDB, SQS), which the batch processor reports so SQS redelivers the message.

    With less time left than two Kling calls need, the message is sent back unprocessed: a batch
    never runs into the function timeout halfway through a claim."""
    request: JobRequest | None
    referenced = referenced_job(raw_body)
    if referenced is not None:
        request = recorded_request(referenced, deps)
        if request is None:
            result = reject_reference(raw_body, message_id, referenced, deps)
    else:
        try:
            request = parse_job_message(raw_body, message_id, default_model=deps.settings.default_model)
        except InvalidJobMessageError as exc:
            request = accepted_earlier(raw_body, message_id, exc, deps)
            if request is None:
                result = reject_message(raw_body, message_id, exc, deps)
    if request is not None and request.provider is None and deps.settings.default_provider != "kling":
        # The deployment's door, written into the request: every later copy names the same door.
        request = request.model_copy(update={"provider": deps.settings.default_provider})
    if request is not None:
        assert request.job_id is not None
        logger.set_correlation_id(request.job_id)
        for warning in request.warnings:
            logger.warning(warning, extra={"job_id": request.job_id})
        needed_ms = 2_000 + 2_000 * deps.settings.kling_timeout_s
        recorded = referenced is not None  # the job has a record: its messages can name it alone
        if request.job_id == message_id:
            result, recorded = name_the_job(request, deps), True
        elif time_left_ms is not None and time_left_ms < needed_ms:
            result = ClaimResult(Outcome.REQUEUED, request.job_id, "not enough time left in this invocation")
        else:
            time_left_s = scan_budget(time_left_ms, needed_ms)
            result, recorded = submit_job(request, deps, owner=owner, time_left_s=time_left_s), True
        if result.outcome in (Outcome.REQUEUED, Outcome.NAMED, Outcome.HELD):
            # A recorded job goes back as a reference: its request is in its record, however large.
            resend = job_reference(request.job_id) if recorded else request.as_message()
            deps.queue.send(resend, delay_s=result.delay_s)
        elif result.outcome is Outcome.PARKED:
            # The request with its job id (not the raw body): a redrive by any means is the same job.
            deps.queue.dead_letter(
                parked_message(request),
                reason=result.detail,
                source_message_id=message_id,
                job_id=request.job_id,
            )
        elif result.outcome is Outcome.REJECTED:
            # Refused for good: its caller is told now, and its token is not kept.
            if request.task_token:
                deps.callers.failed(request.task_token, error=result.error, cause=result.detail)
            message = request.as_message()
            message.pop("task_token", None)
            deps.queue.dead_letter(
                json.dumps(message), reason=result.detail, source_message_id=message_id, job_id=request.job_id
            )
    record_outcome(result)
    return result


def name_the_job(request: JobRequest, deps: SubmitDependencies) -> ClaimResult:
    """A message without a job id is the job of its SQS message id. Claim that id for it now and send
    the request again with the id in its body: every later copy of it (a redelivery, the DLQ, a native
    DLQ redrive, which gives messages new ids) then names the same job, never a second paid one."""
    job_id = request.job_id
    assert job_id is not None
    job, created = deps.store.create(job_id, request, by=BY)
    if not created and job.request != request.as_message():
        return ClaimResult(Outcome.REJECTED, job_id, reused_id_reason(job))
    return ClaimResult(Outcome.NAMED, job_id, "sent again with its job id in the body")


def record_outcome(result: ClaimResult) -> None:
    """One log line and one metric per message; Kling's code as a dimension where Kling refused."""
    logger.info(
        "job message handled", extra={"job_id": result.job_id, "outcome": result.outcome, "detail": result.detail}
    )
    record(Metric.SUBMIT_OUTCOMES, outcome=result.outcome.value)
    if result.kling_code is not None:
        record(Metric.KLING_REFUSALS, code=str(result.kling_code), outcome=result.outcome.value)


def accepted_earlier(
    raw_body: str, message_id: str, error: InvalidJobMessageError, deps: SubmitDependencies
) -> JobRequest | None:
    """The request of a live job whose message today's rules refuse: the pipeline's own re-sends
    (backpressure, a budget hold, the poller, a chain's next step) after a redeploy changed DefaultModel
    or the capability table. The stored request is authoritative for a job that exists: it was checked
    when it was accepted, and Kling may already hold (and bill) its task. None for anything else."""
    job = deps.store.find(error.job_id) if error.job_id else None
    if job is None or job.is_terminal:
        return None
    try:
        as_stored = parse_job_message(raw_body, message_id, stored=True)
    except InvalidJobMessageError:
        return None
    if without_token(as_stored.as_message()) != without_token(job.request):
        return None  # another request under a live job's id: refused as today, the job untouched
    logger.info(
        "message of an accepted job taken as its record holds it (today's rules refuse it)",
        extra={"job_id": job.job_id, "refused_for": error.reason},
    )
    return as_stored


def recorded_request(job_id: str, deps: SubmitDependencies) -> JobRequest | None:
    """The request of a job a reference message names, as its record holds it (checked when it was
    accepted: read as stored, not against today's rules). None when no such job is recorded."""
    job = deps.store.find(job_id)
    if job is None:
        return None
    try:
        # As UTF-8, as it came: ASCII escapes could make an accepted request twice the message limit.
        return parse_job_message(json.dumps(job.request, ensure_ascii=False), job_id, stored=True)
    except InvalidJobMessageError:
        logger.exception("a recorded request no longer reads", extra={"job_id": job_id})
        return None


def reject_reference(raw_body: str, message_id: str, job_id: str, deps: SubmitDependencies) -> ClaimResult:
    """A reference to a job with no (readable) record: there is no request to make, so no job is made
    of it (never a FAILED record under some id); the message is dead-lettered with why."""
    reason = (
        f"the message names job {job_id} to resume, and no job {job_id} is recorded with a request that reads "
        "(it may have ended and expired after FinishedJobTtlDays); send the job's request to make it"
    )
    logger.warning("resume of a job that is not recorded", extra={"job_id": job_id, "message_id": message_id})
    deps.queue.dead_letter(raw_body, reason=reason, source_message_id=message_id, job_id=job_id)
    return ClaimResult(Outcome.REJECTED, job_id, reason)


def without_token(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "task_token"}


def reject_message(
    raw_body: str, message_id: str, error: InvalidJobMessageError, deps: SubmitDependencies
) -> ClaimResult:
    """A message that can never succeed: record the job as FAILED (if it has an id and no job yet), tell
    a caller waiting with a task token, and park the message in the DLQ with the reason, on its first
    failure. The token is kept out of the record and the DLQ copy: it lets its holder resume a caller."""
    logger.warning("rejected job message", extra={"reason": error.reason, "message_id": message_id})
    kept, task_token = without_task_token(raw_body, error.job_id)
    if error.job_id:
        placeholder = JobRequest.model_construct(kind="text2video", prompt="", metadata={})
        deps.store.create(
            error.job_id,
            placeholder,
            by=BY,
            state=JobState.FAILED,
            error_code="INVALID_REQUEST",
            error_message=error.reason,
            raw_message=kept[:2000],
        )
    if task_token:
        deps.callers.failed(task_token, error="INVALID_REQUEST", cause=error.reason)
    deps.queue.dead_letter(kept, reason=error.reason, source_message_id=message_id, job_id=error.job_id)
    return ClaimResult(Outcome.REJECTED, error.job_id, error.reason)


def without_task_token(raw_body: str, job_id: str | None) -> tuple[str, str | None]:
    """The body as it may be kept (no task token; the job id in it when it is a JSON object), and the
    token it held, if it held one. Text that is not valid Unicode (a lone surrogate) is kept escaped:
    DynamoDB and SQS take only valid UTF-8."""
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError):
        return storable_text(raw_body), None
    if not isinstance(payload, dict):
        return storable_text(raw_body), None
    token = payload.pop("task_token", None)
    if job_id and not payload.get("job_id"):
        payload["job_id"] = job_id
    return json.dumps(payload, ensure_ascii=True, default=str), token if isinstance(token, str) and token else None


def reused_id_reason(job: Job) -> str:
    return (
        f"job_id {job.job_id} is already used by a different request (now {job.state.value}); "
        "send this request with a new job_id"
    )


def scan_budget(time_left_ms: int | None, needed_ms: float) -> Callable[[], float] | None:
    """What a reconciliation's list scan may use of the invocation: all of it but what the create after
    the scan needs (None: no limit known, and the scan is cut at a fixed number of pages)."""
    if time_left_ms is None:
        return None
    ends = time.monotonic() + (time_left_ms - needed_ms) / 1000
    return lambda: ends - time.monotonic()


def submit_job(
    request: JobRequest, deps: SubmitDependencies, *, owner: str, time_left_s: Callable[[], float] | None = None
) -> ClaimResult:
    job_id = request.job_id
    assert job_id is not None
    job, created = deps.store.create(job_id, request, by=BY)
    if not created and job.request != request.as_message():
        logger.warning("job id reused for a different request", extra={"state": job.state})
        return ClaimResult(Outcome.REJECTED, job_id, reused_id_reason(job))
    try:
        claimed = claim_job(job, deps, owner=owner)
    except TransitionRejectedError as exc:
        # Another worker moved it between our read and our claim: look again on the next delivery.
        return ClaimResult(Outcome.REQUEUED, job_id, f"claim lost to another worker ({exc.current})", delay_s=1)
    if isinstance(claimed, ClaimResult):
        return claimed
    if door_of(claimed) is None:
        try:
            deps.kling  # noqa: B018 - built on first use: a deployment may reach Kling only through other doors
        except KlingKeysMissingError as exc:
            # Nothing reserved or sent yet: the job waits for the keys (or a resend through a door).
            return park_job(claimed, deps, kling_keys_refusal(exc, deps.settings))
    reserved = reserve_budget(claimed, deps)  # in the unit its door bills: Kling's units, or USD
    if isinstance(reserved, ClaimResult):
        return reserved
    try:
        return submit_claimed_job(reserved, stored_request(reserved), deps, time_left_s=time_left_s)
    except KlingAccountError as exc:
        # Refused before anything was made: the reservation goes back while an operator acts.
        return park_job(reserved, deps, account_reason(exc), kling_code=exc.code, release=True)


def daily_budget(job: Job, deps: SubmitDependencies) -> tuple[DailyBudget, float] | None:
    """The daily budget `job` is held to, in the unit its door bills, and what it would reserve of it: Kling's
    units (DailyBudgetUnits), or USD for fal and Replicate (DailyBudgetUsd), never one counted in the other.
    None: no budget in its unit, or no estimate (a job its door does not serve is refused at its create)."""
    settings = deps.settings
    door = door_of(job)
    if door is not None:
        if door.usd_estimate is None:
            return None  # a door whose price is not known (AceData): its charges are counted, not budgeted
        budget = usd_budget(settings.daily_budget_usd)
        # An earlier claim may have sent its create: it waits unsettled (door_submit), never held or failed here.
        ask = budget.limit > 0 and not job.needs_reconcile
        usd = door.usd_estimate(stored_request(job), settings) if ask else None
        return None if usd is None else (budget, usd)
    budget = units_budget(settings.daily_budget_units)
    return None if budget.limit <= 0 else (budget, units_to_reserve(job, deps.estimates.expected(job)))


def reserve_budget(job: Job, deps: SubmitDependencies) -> Job | ClaimResult:
    """With a daily budget in the unit the job's door bills, hold what the job's task will cost
    (unit_estimates.py; fal's price table) before creating it: one transaction of the job's write and a
    conditional update of the day's counter of that unit, so any number of submitters at once never pass
    the budget and a job never holds without saying so. Without room, the job waits in QUEUED and its
    message comes back when the budget may have room (next UTC day, or sooner if the budget is raised). A
    job that already holds a reservation keeps it; one whose estimate exceeds the whole budget fails
    (BUDGET_TOO_SMALL) instead of waiting for ever."""
    found = daily_budget(job, deps)
    if found is None or reservation(job, found[0].field)[0] is not None:
        return job
    daily, units = found
    budget, unit = daily.limit, daily.unit
    now = deps.clock()
    day = day_of(now)
    if units > budget:
        if job.needs_reconcile:
            # An earlier create's answer proved nothing: Kling may hold (and bill) its task. Find it first;
            # a job is failed for its size only once no task of it can exist.
            try:
                settled = reconcile(job, job.task_kind, deps)
            except KlingAccountError as exc:
                return park_job(job, deps, account_reason(exc), kling_code=exc.code)
            if settled is not None:
                return settled
        return budget_too_small(job, deps, units, daily)
    try:
        return deps.store.transition(
            job,
            Transition(
                job.state,
                JobState.SUBMITTING,
                {daily.field: units, RESERVED_DAY: day, HELD_FOR: None, "next_poll_at": job.next_poll_at},
                f"reserved {units:g} {unit} of {day}'s budget",
                by=BY,
                linked=(deps.ledger.reserve_update(day, units, budget=budget, counter=daily.counter),),
            ),
        )
    except LinkedWriteRefusedError:
        pass
    held = deps.ledger.reserved(day, daily.counter)
    reason = (
        f"daily budget reached: this job needs {units:g} {unit} and {held:g} of {budget:g} are held for {day} (UTC); "
        f"it is sent when the budget has room: tomorrow, or as soon as {daily.parameter} is raised"
    )
    until_next_day = SECONDS_PER_DAY - int(now) % SECONDS_PER_DAY
    released = release_for_retry(
        job, deps, reason, delay_s=min(until_next_day + random.randint(1, 60), 900), held_for=HELD_FOR_BUDGET
    )
    return ClaimResult(Outcome.HELD, job.job_id, reason, delay_s=released.delay_s)


def budget_too_small(job: Job, deps: SubmitDependencies, units: float, daily: DailyBudget) -> ClaimResult:
    """A job whose estimate exceeds the whole daily budget would wait for ever: it fails now, saying
    why, before anything is reserved or created. Its end is announced and its waiting caller told."""
    reason = (
        f"{job.step_label}this job is estimated at {units:g} {daily.unit}, more than the whole daily budget of "
        f"{daily.limit:g} ({daily.parameter}): it could never be sent. Raise {daily.parameter}, then send it "
        "again with a new job_id"
    )
    failed = deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.FAILED,
            {"error_code": BUDGET_TOO_SMALL, "error_message": reason, HELD_FOR: None},
            "estimate over the whole daily budget",
            by=BY,
            remove=LEASE,
        ),
    )
    deps.announcer.job_ended(failed)
    return ClaimResult(Outcome.FAILED, job.job_id, reason, error=BUDGET_TOO_SMALL)


def submit_claimed_job(
    job: Job, request: JobRequest, deps: SubmitDependencies, *, time_left_s: Callable[[], float] | None = None
) -> ClaimResult:
    """We hold the claim: find an earlier task if one may exist, else create exactly one (the request's
    own video, or an extend chain's next step: extend_chain.py)."""
    door = DOORS.get(provider_of(job.request))
    if door is not None:
        from kling_pipeline.door_submit import submit_at_door

        return submit_at_door(job, request, deps, door)
    kind = job.task_kind
    if job.needs_reconcile:
        try:
            settled = reconcile(job, kind, deps, time_left_s=time_left_s)
        except KlingAccountError as exc:
            # Not the create's answer: an earlier create may have made (and billed) a task, so the
            # reservation stays until that is known (submit_job releases it only for a refused create).
            return park_job(job, deps, account_reason(exc), kling_code=exc.code)
        if settled is not None:
            return settled
    model = job.task_model or capabilities.effective_model(kind, None, deps.settings.default_model)
    try:
        deps.kling.require_new_design(model or "")
    except KlingApiKeyNeededError as exc:
        # Before the create: nothing was made, so the reservation goes back; redriven once the key is stored.
        return park_job(job, deps, f"{exc}, then `kling-pipeline dlq --redrive`", release=True)
    callback = callback_url(deps.settings.public_api_base_url, job.job_id, deps.callback_signing_secret)
    if job.step > 1:
        body = step_body(job, callback_url=callback)
    else:
        try:
            # Checked (and S3 images presigned) at every create: a presigned URL is short-lived.
            images = resolve_images(request, deps)
        except ImageRefusedError as exc:
            return refuse_request(job, deps, f"invalid job request: {exc}")
        body = create_body(
            request,
            default_model=deps.settings.default_model,
            callback_url=callback,
            external_task_id=job.external_task_id,
            images=images,
        )
    if body.get("model_name") and body["model_name"] not in deps.settings.known_models:
        logger.warning("model not in KNOWN_MODELS; passing it to Kling as is", extra={"model": body["model_name"]})
    try:
        task = deps.kling.create_task(kind, body, model=model)
    except KlingCreateUnsettledError as exc:
        # Kling may have made (and billed) the task: no new create until it has had time to show up.
        return release_for_retry(
            job, deps, f"the create is unsettled: {exc}", unsettled=True, unreadable=not exc.transient
        )
    except KlingUnavailableError as exc:
        # The request never left (no connection): a plain retry is safe.
        return release_for_retry(job, deps, f"could not reach Kling: {exc}")
    except KlingRetryableError as exc:
        if exc.code == OVER_CONCURRENCY and job.slot_pool:
            return wait_after_1303(job, deps, exc)
        return release_for_retry(job, deps, f"Kling said {exc.code}: {exc.message}", kling_code=exc.code)
    except KlingFinalError as exc:
        if exc.code == INVALID_PARAMETER:
            return refused_as_invalid(job, kind, deps, exc)
        return fail_job(job, deps, exc)
    return record_submitted(job, task, deps, model_name=body.get("model_name") or model)


def wait_after_1303(job: Job, deps: SubmitDependencies, exc: KlingRetryableError) -> ClaimResult:
    """Kling has no slot for a job that holds one of the pipeline's: the account runs tasks the pipeline
    does not hold (another client, another key). The pool's limit drops to what the pipeline holds
    besides this job (adapters.slot_pools.shared_account; the poller restores it after quiet periods),
    and the job gives its slot back and waits at its place in the pool's line: sent again when a slot
    frees, never bounced through SQS delays. Kling made no task (1303 refuses the create)."""
    assert job.slot_pool is not None
    pool = job.slot_pool
    deps.slots.shared_account(pool)
    reason = f"Kling said {exc.code} ({exc.message}): the account is shared; waiting for a free slot in pool {pool}"
    deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.QUEUED,
            waiting_changes(job, pool) | {HELD_FOR: None},
            reason[:300],
            by=BY,
            remove=LEASE,
            add={"backpressure_count": 1},
            logged=job.backpressure_count < LOGGED_RETRY_CYCLES,
        ),
    )
    return ClaimResult(Outcome.WAITING, job.job_id, reason, kling_code=exc.code)


def refused_as_invalid(job: Job, kind: str, deps: SubmitDependencies, exc: KlingFinalError) -> ClaimResult:
    """1201 answers both a parameter Kling refuses and, in words of its own (reworded, translated), a
    create whose external_task_id it already holds: a task Kling runs and bills. Which it was is told by
    what can be checked, never by the message: the task under the step's external id. The job's own →
    recorded. Another's under the same id → Kling will never take this id: FAILED. None (a new task may
    be invisible to queries for a while) → unsettled, looked for again, until the reconcile grace since
    the first such answer is over; a 1201 whose task never showed by then is a refusal: FAILED with
    Kling's message."""
    try:
        found = deps.kling.find_by_external_id(kind, job.external_task_id, model=job.task_model)
    except KlingAccountError as account:
        # Kling may already hold (and bill) our task under this id: park, keeping the reservation.
        return park_job(job, deps, account_reason(account), kling_code=account.code)
    except (KlingRetryableError, KlingUnavailableError, KlingShapeError, KlingFinalError) as lookup:
        logger.info("look-up after a 1201 gave no answer", extra={"reason": str(lookup)})
        found = None
    if found is not None and job.owns_task(found):
        return record_submitted(
            job,
            found,
            deps,
            note=f"the create was answered 1201 ({exc.message[:200]}) and "
            "Kling holds the step's task under its external_task_id: recorded",
        )
    if found is not None and found.task_info.external_task_id == job.external_task_id:
        return fail_job(
            job,
            deps,
            exc,
            detail=f"Kling holds another task ({found.task_id}) under this job's external_task_id "
            f"{job.external_task_id} and refused the create ({exc.code}): {exc.message}",
        )
    now = int(deps.clock())
    since = job.refused_since or now
    if now - since >= deps.rules.reconcile_grace_s:
        return fail_job(job, deps, exc)
    return release_for_retry(
        job,
        deps,
        f"Kling answered the create 1201 ({exc.message}) and no task of this job shows under its external_task_id "
        f"yet: looking again (a refusal if none shows by {deps.rules.reconcile_grace_s} s after the first 1201)",
        unsettled=True,
        kling_code=exc.code,
        refused_since=since,
        # If the task is ours, an earlier create made it: the list scan reaches back to that create.
        unsettled_since=job.unsettled_since or job.first_claimed_at,
    )


def refuse_request(job: Job, deps: SubmitDependencies, reason: str) -> ClaimResult:
    """A request found invalid only now (an image that cannot be fetched or breaks Kling's rules):
    refused as a bad message is, before any money is spent: FAILED with INVALID_REQUEST, and its
    message dead-lettered with the reason (handle_job_message). Its budget reservation goes back. Its end
    is announced like every other (the event, so its webhook, and its waiting caller): the token stays
    on the record until the announcement clears it, so a crash before then leaves the caller to the
    poller's announcement (handle_job_message tells it too; Step Functions takes a token once)."""
    failed = deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.FAILED,
            {"error_code": "INVALID_REQUEST", "error_message": reason},
            "refused before any Kling call",
            by=BY,
            linked=tuple(deps.ledger.release_update(job)),
        ),
    )
    deps.announcer.job_ended(failed)
    return ClaimResult(Outcome.REJECTED, job.job_id, reason, error="INVALID_REQUEST")


def fail_job(job: Job, deps: SubmitDependencies, exc: KlingFinalError, *, detail: str | None = None) -> ClaimResult:
    """Kling refused the create for good: no task was made, so the budget reservation goes back. The job
    has ended: announced, and its waiting caller told."""
    failed = deps.store.transition(
        job,
        Transition(
            job.state,
            JobState.FAILED,
            {
                "error_code": f"KLING_{exc.code}",
                "error_message": f"{job.step_label}{detail or f'Kling refused the task ({exc.code}): {exc.message}'}",
            },
            f"Kling {exc.code}",
            by=BY,
            linked=tuple(deps.ledger.release_update(job)),
        ),
    )
    deps.announcer.job_ended(failed)
    return ClaimResult(Outcome.FAILED, job.job_id, exc.message, kling_code=exc.code)
