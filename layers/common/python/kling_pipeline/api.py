"""The jobs API use case: submit, read, query, list and cancel jobs over HTTPS.

Submitting is the queue path's, not a second way to Kling: a request is validated by the same rules
(`requests.parse_job_message`), its job recorded QUEUED (a conditional put, which is where the job
id as idempotency key is decided) and its message sent to JobsQueue, from which the submit function
takes it as it takes any other. Reads never scan: one GetItem, one BatchGetItem, or a query of the
JobsByState index. Cancelling is a transition like every other (QUEUED -> CANCELLED through the job
store), announced like every other end (docs/architecture.md, "The jobs API").

The request and response models, what the API validates and answers, are kling_pipeline.api_models;
the OpenAPI document is generated from them (kling_pipeline.api_routes).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kling_pipeline.adapters.announcements import Announcer, announcer
from kling_pipeline.adapters.job_queue import JobQueue
from kling_pipeline.adapters.job_store import JobStore, ShardPositions, job_store
from kling_pipeline.adapters.ledger import Ledger, ledger
from kling_pipeline.adapters.video_links import VideoLinks, video_links
from kling_pipeline.adapters.webhook_targets import WebhookPolicy, check_webhook_url
from kling_pipeline.api_models import (
    Accepted,
    BatchAccepted,
    ErrorDetail,
    HistoryItem,
    ItemProblem,
    JobBatch,
    JobList,
    JobSummary,
    JobView,
    QueryResult,
)
from kling_pipeline.doors import Door, clients, door_of, enabled, no_clients, task_ref
from kling_pipeline.errors import (
    InvalidJobMessageError,
    JobsApiError,
    ProviderNotEnabledError,
    ProviderUnavailableError,
    QueueUnavailableError,
    TransitionRejectedError,
    WebhookRefusedError,
)
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.lifecycle import Job, JobState, Transition, public_step
from kling_pipeline.observability import logger
from kling_pipeline.poll_schedule import SHARDS, shard_number
from kling_pipeline.providers import ProviderTask, TaskRef
from kling_pipeline.requests import JobRequest, parse_job_message
from kling_pipeline.settings import ApiSettings

BY = "api"
DEFAULT_PAGE = 50

# ---------------------------------------------------------------------------------------------
# Dependencies


@dataclass
class JobsApiDependencies:
    settings: ApiSettings
    store: JobStore
    queue: JobQueue
    links: VideoLinks
    announcer: Callable[[], Announcer]  # built on first use: only a cancel announces
    webhook_policy: WebhookPolicy
    ledger: Ledger  # a cancelled job's budget reservation goes back
    # The doors enabled (kling always; another once its secret holds a key), read on first use.
    providers: Callable[[], frozenset[str]] = lambda: frozenset({"kling"})
    # The other providers' doors (doors.py): a client by name, built on first use (only a cancel needs one).
    door: Callable[[str], Any] = no_clients


def enabled_providers(settings: ApiSettings) -> frozenset[str]:
    """kling, and each door whose secret holds a key (cached as every secret is, SecretsMaxAgeSeconds)."""
    return enabled(settings)


def jobs_api_dependencies(settings: ApiSettings) -> JobsApiDependencies:
    """Assembled per invocation from clients built once per container."""
    from kling_pipeline.adapters.job_queue import job_queue

    store = job_store(settings.jobs_table_name, settings.finished_job_ttl_days, settings.poll_schedule)
    return JobsApiDependencies(
        settings=settings,
        store=store,
        queue=job_queue(settings.jobs_queue_url, ""),  # the API never dead-letters
        links=video_links(settings.download_url_ttl_s),
        announcer=lambda: announcer(settings.event_bus_name, store),
        webhook_policy=WebhookPolicy.from_settings(
            settings.webhook_allowed_hosts, pipeline_mode=settings.pipeline_mode
        ),
        ledger=ledger(settings.stats_table_name),
        providers=lambda: enabled_providers(settings),
        door=clients(settings),
    )


def job_url(base_url: str, job_id: str) -> str:
    return f"{base_url.rstrip('/')}/jobs/{job_id}"


# ---------------------------------------------------------------------------------------------
# POST /jobs


@dataclass(frozen=True)
class PostJobsAnswer:
    """What POST /jobs answers: its status and its body."""

    status: int
    body: Accepted | BatchAccepted


def submit_jobs(body: JobRequest | JobBatch, base_url: str, deps: JobsApiDependencies) -> PostJobsAnswer:
    """One job or a batch. A batch with any invalid job is refused whole (400, every problem listed,
    nothing queued); otherwise each job is accepted, found to exist already, or in conflict."""
    batch = isinstance(body, JobBatch)
    requests = checked_requests(body.jobs if isinstance(body, JobBatch) else [body], batch, deps)
    results = enqueue(requests, base_url, deps)
    for result, request in zip(results, requests, strict=True):
        result.warnings = request.warnings or None  # as the CLI warns, so does the API
    if not batch:
        (result,) = results
        if result.outcome == "conflict" and result.error is not None:
            raise JobsApiError(409, result.error.code, result.error.message, "job_id")
        if result.outcome == "not_queued":
            raise JobsApiError(503, "QUEUE_UNAVAILABLE", "the job could not be queued; send the same request again")
        return PostJobsAnswer(202 if result.outcome == "accepted" else 200, result)
    accepted = any(r.outcome == "accepted" for r in results)
    return PostJobsAnswer(202 if accepted else 200, BatchAccepted(jobs=results))


def checked_requests(requests: list[JobRequest], batch: bool, deps: JobsApiDependencies) -> list[JobRequest]:
    """Each request with its job id (a new one where none was given), checked as the submit path checks
    a message, and its webhook URL against the webhook rules. Raises 400 naming every problem."""
    problems: list[ItemProblem] = []
    checked: list[JobRequest] = []
    seen: dict[str, int] = {}
    for index, request in enumerate(requests):
        prefix = f"jobs[{index}]." if batch else ""
        job_id = request.job_id or uuid.uuid4().hex
        try:
            parsed = parse_job_message(
                json.dumps(request.as_message() | {"job_id": job_id}),
                job_id,
                default_model=deps.settings.default_model,
                default_provider=deps.settings.default_provider,
                providers=deps.providers(),
            )
        except InvalidJobMessageError as exc:
            problems.append(ItemProblem(index=index, field=f"{prefix}request", message=exc.reason))
            continue
        if job_id in seen:
            problems.append(
                ItemProblem(index=index, field=f"{prefix}job_id", message=f"job_id {job_id} is also job {seen[job_id]}")
            )
            continue
        seen[job_id] = index
        if parsed.webhook_url is not None:
            try:
                check_webhook_url(parsed.webhook_url, deps.webhook_policy)
            except WebhookRefusedError as exc:
                problems.append(ItemProblem(index=index, field=f"{prefix}webhook_url", message=exc.message))
                continue
        checked.append(parsed)
    if problems:
        first = problems[0]
        message = (
            f"{len(problems)} of {len(requests)} jobs are invalid; nothing was queued (fix them, send the batch again)"
            if batch
            else first.message
        )
        raise JobsApiError(400, "INVALID_REQUEST", message, first.field, [p.model_dump() for p in problems])
    return checked


def enqueue(requests: list[JobRequest], base_url: str, deps: JobsApiDependencies) -> list[Accepted]:
    """Record each new job QUEUED, awaiting its message, and send its message; existing jobs are compared.
    An existing job that still awaits its message (no submitter has claimed it) may have been recorded by
    a try that never sent it (a batch that failed midway, between its puts and its messages): its message
    is sent again. A second copy is harmless (the claim makes one create; the other finds it done). The
    claim clears `awaiting_message`; the poller sends the message of a job no retry comes for."""
    ids = [r.job_id for r in requests if r.job_id]
    existing = deps.store.get_many(ids)
    results: dict[str, Accepted] = {}
    created: list[tuple[Job, JobRequest]] = []
    resent: list[JobRequest] = []
    for request in requests:
        job_id = request.job_id
        assert job_id is not None
        job = existing.get(job_id)
        if job is None:
            job, fresh = deps.store.create(job_id, request, by=BY, awaiting_message=True)
            if fresh:
                created.append((job, request))
                continue
        results[job_id] = compared(job, request, base_url)
        if results[job_id].outcome == "existing" and job.state is JobState.QUEUED and job.awaiting_message:
            resent.append(request)
    if resent:
        # Best effort: a job whose message is lost again is sent by the poller.
        with contextlib.suppress(QueueUnavailableError):
            deps.queue.send_many([request.as_message() for request in resent])
    if created:
        try:
            sent = deps.queue.send_many([request.as_message() for _, request in created])
        except QueueUnavailableError:
            for job, _ in created:
                deps.store.discard_unsent(job)
            logger.exception("could not queue jobs; their records are discarded")
            raise JobsApiError(
                503, "QUEUE_UNAVAILABLE", "the jobs could not be queued; send the same request again"
            ) from None
        for (job, _), ok in zip(created, sent, strict=True):
            if ok or not deps.store.discard_unsent(job):
                results[job.job_id] = Accepted(
                    job_id=job.job_id, state=job.state, url=job_url(base_url, job.job_id), outcome="accepted"
                )
            else:
                results[job.job_id] = Accepted(
                    job_id=job.job_id,
                    url=job_url(base_url, job.job_id),
                    outcome="not_queued",
                    error=ErrorDetail(code="QUEUE_UNAVAILABLE", message="not queued; send this job again"),
                )
    return [results[r.job_id] for r in requests if r.job_id]


def compared(job: Job, request: JobRequest, base_url: str) -> Accepted:
    url = job_url(base_url, job.job_id)
    if job.request == request.as_message():
        return Accepted(job_id=job.job_id, state=job.state, url=url, outcome="existing")
    return Accepted(
        job_id=job.job_id,
        state=job.state,
        url=url,
        outcome="conflict",
        error=ErrorDetail(
            code="JOB_ID_REUSED",
            message=(
                f"job_id {job.job_id} is already used by a different request (now {job.state.value}); "
                "send this request with a new job_id"
            ),
            field="job_id",
        ),
    )


# ---------------------------------------------------------------------------------------------
# GET /jobs/{job_id}, POST /jobs/query


def get_job(job_id: str, base_url: str, deps: JobsApiDependencies) -> JobView:
    job = deps.store.find(job_id)
    if job is None:
        raise not_found(job_id)
    shown = view(job, base_url, deps)
    # One job's place in line is one count of the SlotQueues index (not done for POST /jobs/query's 100).
    line = deps.store.place_in_line(job)
    if line is not None:
        shown.waiting_pool, shown.place_in_line = line
    return shown


def query_jobs(ids: list[str], base_url: str, deps: JobsApiDependencies) -> QueryResult:
    """The batch retrieve: one BatchGetItem for up to 100 ids, in the order asked."""
    wanted = list(dict.fromkeys(ids))
    found = deps.store.get_many(wanted)
    return QueryResult(
        jobs=[view(found[j], base_url, deps) for j in wanted if j in found],
        unknown=[j for j in wanted if j not in found],
    )


def not_found(job_id: str) -> JobsApiError:
    return JobsApiError(404, "JOB_NOT_FOUND", f"no job {job_id}", "job_id")


def view(job: Job, base_url: str, deps: JobsApiDependencies) -> JobView:
    request = {k: v for k, v in job.request.items() if k != "task_token"}  # a token resumes its caller: not shown
    link: tuple[str | None, str | None] = (None, None)
    if job.state is JobState.COMPLETED and job.s3_uri:
        link = deps.links.download_url(job.s3_uri)
    return JobView(
        job_id=job.job_id,
        state=job.state,
        kind=job.kind,
        url=job_url(base_url, job.job_id),
        created_at=job.created_at,
        updated_at=job.updated_at,
        request=request,
        history=[HistoryItem(state=h.state, at=h.at, by=h.by, note=h.note) for h in job.history],
        task_id=job.task_id,
        error_code=job.error_code,
        error_message=job.error_message,
        units_charged=job.total_units,
        cash_charged=job.cash_charged,
        reserved_units=job.reserved_units,
        reserved_usd=job.reserved_usd,
        held_for=job.held_for,
        s3_uri=job.s3_uri,
        video_size=job.video_size,
        sha256=job.sha256,
        step=job.step,
        steps=[public_step(step) for step in job.steps],
        download_url=link[0],
        download_url_expires_at=link[1],
    )


# ---------------------------------------------------------------------------------------------
# GET /jobs?state=...&since=...&limit=...&next_token=...


def list_jobs(
    state: JobState,
    since: str | None,
    limit: int,
    next_token: str | None,
    base_url: str,
    deps: JobsApiDependencies,
) -> JobList:
    """Jobs in one state, updated since a time (`listing_since`), newest first, a page at a time (the
    JobsByState index, every shard of the state merged)."""
    start = decode_token(next_token, state, since) if next_token else None
    items, last = deps.store.jobs_in_state(state, since=since, limit=limit, start_key=start)
    summaries = [
        JobSummary.model_validate(
            {k: item.get(k) for k in JobSummary.model_fields if k != "url"}
            | {"url": job_url(base_url, str(item["job_id"]))}
        )
        for item in items
    ]
    return JobList(jobs=summaries, next_token=encode_token(state, last) if last else None)


def listing_since(since: datetime | None) -> str | None:
    """`since` in the record's form; a time that leaves the calendar once taken to UTC is a 400, not an
    overflow (and a 500)."""
    try:
        return record_time(since) if since is not None else None
    except OverflowError:
        raise JobsApiError(
            400, "INVALID_REQUEST", "since must lie between the years 1 and 9999 once taken to UTC", "since"
        ) from None


def record_time(moment: datetime) -> str:
    """A time in the job record's form (UTC, milliseconds, Z), so it compares with `updated_at` as text."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


TOKEN_VERSION = 2  # each shard's position (v1 held one index key, before the index was sharded)


def _is_record_time(text: str) -> bool:
    try:
        return record_time(datetime.fromisoformat(text)) == text
    except (ValueError, OverflowError):
        return False


def encode_token(state: JobState, positions: ShardPositions) -> str:
    """An opaque page token: the listing's state, and where each shard of the index goes on from (nothing
    a caller could not read anyway)."""
    shards = {str(n): list(at) if at is not None else None for n, at in sorted(positions.items())}
    raw = json.dumps(
        {"v": TOKEN_VERSION, "state": state.value, "s": shards}, separators=(",", ":"), sort_keys=True
    ).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, state: JobState, since: str | None) -> ShardPositions:
    """The shards' positions a token holds, if it is one of ours for this listing; 400 otherwise."""
    invalid = JobsApiError(
        400, "INVALID_NEXT_TOKEN", "next_token is not a token of this listing; start again without it", "next_token"
    )
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise invalid from None
    ours = isinstance(decoded, dict) and decoded.get("v") == TOKEN_VERSION and decoded.get("state") == state.value
    shards = decoded.get("s") if ours else None
    if not isinstance(shards, dict) or not shards or not set(shards) <= {str(n) for n in range(SHARDS)}:
        raise invalid
    positions: ShardPositions = {}
    for shard, at in shards.items():
        if at is None:
            positions[int(shard)] = None
            continue
        # DynamoDB refuses an empty key value (a ValidationException, which would be a 500): only what a
        # record can hold passes, and only a job of this shard, updated since the listing's `since`.
        if not (isinstance(at, list) and len(at) == 2 and all(isinstance(v, str) for v in at)):
            raise invalid
        updated_at, job_id = at
        if not is_valid_job_id(job_id) or not _is_record_time(updated_at) or shard_number(job_id) != int(shard):
            raise invalid
        if since is not None and updated_at < since:
            raise invalid
        positions[int(shard)] = (updated_at, job_id)
    return positions


# ---------------------------------------------------------------------------------------------
# POST /jobs/{job_id}/cancel


def cancel_job(job_id: str, base_url: str, deps: JobsApiDependencies) -> JobView:
    """QUEUED -> CANCELLED, only while nothing can have reached Kling; announced like every other end.
    Anything else is refused (409) with what it means: Kling has no cancel, and bills what it accepted."""
    job = deps.store.find(job_id)
    if job is None:
        raise not_found(job_id)
    door = door_of(job)
    if door is not None and not job.is_terminal and (job.state is not JobState.QUEUED or job.needs_reconcile):
        return cancel_at_provider(job, base_url, deps, door)
    for _ in range(3):  # the job may move under us (a claim, a backpressure cycle): decide on what it is now
        if job.state is JobState.CANCELLED:
            return view(job, base_url, deps)  # cancelling twice is the same answer
        refusal = why_not_cancellable(job)
        if refusal is not None:
            raise refusal
        try:
            cancelled = deps.store.transition(
                job,
                Transition(
                    job.state,
                    JobState.CANCELLED,
                    {"error_code": "CANCELLED", "error_message": cancelled_message(job)},
                    "cancelled",
                    by=BY,
                    linked=tuple(deps.ledger.release_update(job)),
                ),
            )
        except TransitionRejectedError:
            job = deps.store.get(job_id)
            continue
        deps.announcer().job_ended(cancelled)
        logger.info("job cancelled", extra={"job_id": job_id})
        return view(cancelled, base_url, deps)
    raise JobsApiError(409, "JOB_BUSY", f"job {job_id} keeps changing; try again", "job_id")


def cancel_at_provider(job: Job, base_url: str, deps: JobsApiDependencies, door: Door) -> JobView:
    """A job still in its provider's queue is cancelled there (fal: PUT cancel_url; Replicate: POST .../cancel)
    and ends CANCELLED, saying what the provider will bill; one the provider has finished, or a door with no
    cancel (AceData), is refused (409) with the same. So is one whose create is unsettled or under way (no
    request id to cancel), and a fal request already running: fal does not stop it, and the pipeline still
    collects the video it pays for. Kling's own door has no cancel."""
    ref = task_ref(job)
    name = door.label
    try:
        client = deps.door(door.name)
        if ref is None or job.state not in (JobState.SUBMITTED, JobState.PROCESSING):
            raise cannot_cancel(job, door, client, ref, "")
        if not door.cancels_running:
            now = client.status(ref)  # None: finished
            if now is None or now.status in ("running", "succeeded", "failed"):
                raise cannot_cancel(job, door, client, ref, "finished" if now is None else now.status)
        outcome = client.cancel(ref)
    except (ProviderUnavailableError, ProviderNotEnabledError) as exc:
        why = f"{name} could not be asked to cancel: {exc}"
        raise JobsApiError(503, "PROVIDER_UNAVAILABLE", why, "job_id") from exc
    if outcome.result != "cancel_requested":
        raise JobsApiError(409, "PROVIDER_CANNOT_CANCEL", f"{name}: {outcome.result}: {outcome.billed}", "job_id")
    try:
        cancelled = deps.store.transition(
            job,
            Transition(
                job.state,
                JobState.CANCELLED,
                {"error_code": "CANCELLED", "error_message": f"cancelled at {name} ({ref.id}): {outcome.billed}"},
                f"cancelled at {name}",
                by=BY,
                linked=tuple(deps.ledger.release_update(job)),
            ),
        )
    except TransitionRejectedError:
        raise JobsApiError(409, "JOB_BUSY", f"job {job.job_id} moved meanwhile; look at it again", "job_id") from None
    deps.announcer().job_ended(cancelled)
    return view(cancelled, base_url, deps)


def cannot_cancel(job: Job, door: Door, client: Any, ref: TaskRef | None, status: str) -> JobsApiError:
    """Why a provider's job cannot be cancelled now, and what the provider bills for it (its price table's figure)."""
    name = door.label
    if ref is None:
        why = (
            f"it is being sent to {name}, or a create's answer proved nothing, so there is no {name} request id to "
            f"cancel. The pipeline waits for {name}'s callback; if {name} made the request it runs to its end and "
            f"is billed at {name}'s price; see {door.dashboard}"
        )
        return JobsApiError(409, "PROVIDER_CANNOT_CANCEL", f"job {job.job_id} cannot be cancelled: {why}", "job_id")
    finished = ProviderTask(provider=ref.provider, id=ref.id, status="succeeded")
    charge = client.charge(ref, door.charge_arguments(job), finished)
    cost = f"${charge.amount:g}: {charge.basis}" if charge is not None else f"at {name}'s price per second of video"
    if status == "running":
        why = (
            f"{name} is running request {ref.id}, and a running request is not stopped by {name}'s cancel: it runs "
            f"to its end and is billed ({cost}); the video will still be stored"
        )
    else:
        why = (
            f"{name} has finished request {ref.id}: it is billed as made ({cost}); the pipeline collects its result "
            "and stores the video"
        )
    return JobsApiError(409, "PROVIDER_CANNOT_CANCEL", f"job {job.job_id} cannot be cancelled: {why}", "job_id")


def cancelled_message(job: Job) -> str:
    """What a cancel ended, and what it did not undo: an extend chain's stored steps were made and billed."""
    if not job.steps:
        return "cancelled through the jobs API before it was sent to Kling; nothing was charged"
    made = ", ".join(f"{s.get('step')} ({s.get('s3_uri')})" for s in job.steps)
    units = f" for {job.total_units} units" if job.total_units is not None else ""
    return (
        f"cancelled through the jobs API before step {job.step} of {job.total_steps} was sent to Kling: nothing "
        f"more is charged. The steps already made were charged{units} and stay stored: {made}"
    )


def why_not_cancellable(job: Job) -> JobsApiError | None:
    if job.state is JobState.QUEUED and not job.needs_reconcile:
        return None
    if job.is_terminal:
        return JobsApiError(409, "JOB_ENDED", f"job {job.job_id} has already ended ({job.state.value})", "job_id")
    cost = kling_cost(job)
    if job.state is JobState.QUEUED:  # an earlier create's answer proved nothing: Kling may hold (and bill) a task
        message = (
            f"job {job.job_id} cannot be cancelled: an earlier request to Kling may have created its task (the "
            f"answer proved nothing), and Kling has no cancel. The pipeline is finding out; if the task exists it "
            f"runs to its end and is billed ({cost})"
        )
    elif job.state is JobState.SUBMITTING:
        message = (
            f"job {job.job_id} cannot be cancelled: it is being sent to Kling right now, and Kling has no cancel. "
            f"If Kling accepts it, it runs to its end and is billed ({cost})"
        )
    else:
        message = (
            f"job {job.job_id} cannot be cancelled: Kling is running task {job.task_id} and has no cancel. It runs "
            f"to its end and is billed ({cost}); the video will still be stored"
        )
    return JobsApiError(409, "KLING_CANNOT_CANCEL", message, "job_id")


def kling_cost(job: Job) -> str:
    """What Kling charges for this job, in its own terms: the units once known, else what decides them."""
    if job.units_charged:
        return f"{job.units_charged} units"
    request = job.request
    model = job.model_name or request.get("model") or "the default model"
    return (
        f"one {request.get('mode', 'std')} {request.get('duration', '5')} s video of {model}; "
        "the units are known when it ends"
    )
