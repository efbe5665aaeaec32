"""The stale-job poller's use case: every job that has gone quiet is settled, and nobody is left waiting.

Each run reads the live jobs whose next poll has come from the sharded LiveJobs index (never a
scan), most overdue first, a page at a time, until its time budget is spent; what is left is the next
run's. While live jobs are due before its run time (PollerRunSeconds) ends, the run looks again every
poll interval (sooner when a job is due sooner); with nothing live due it returns at once. A job is
looked at only by the run that wins its poll claim (adapters.job_store.claim_poll), so overlapping
runs never poll a job twice. By state:

- SUBMITTED / PROCESSING: the tasks are asked about in batches (task_lookups.py: `/tasks` for the newer
  design, a kind's task list for several legacy jobs, else one look-up each), and since a batch costs one
  call whatever its size, each call also takes the jobs of its pool due within the next poll interval
  (pulled forward) and those that may have finished (riding along); a job seen running by its callbacks
  waits for them, unless a poll has found final callbacks lost (CallbackLosses); each answer is applied
  through lifecycle.advance_job, the callback's own path; a
  job older than the job timeout (from its submission) that Kling answers is still unfinished is
  TIMED_OUT and announced (one Kling could not be asked about, only after twice the timeout).
- TIMED_OUT, still watched: asked about rarely, until Kling's 30 days; a `succeed` carries it to
  DOWNLOADING (the video is paid for).
- SUBMITTING with an expired lease: reconciled exactly as the submit path does (claims.reconcile):
  the task is recorded if Kling has it, else the job goes back to QUEUED and its request to the queue;
  several such claims are looked up together first (task_lookups.claims_of).
  The poller never creates a Kling task.
- DOWNLOADING with no running workflow: completed from the stored object when it is there with its
  checksum (no second download), else the next download attempt, up to a limit, then FAILED with
  what was tried; a result link past Kling's 30 days is reported as such.
- QUEUED with `awaiting_message` (recorded, its message never claimed): the message is sent again.
- QUEUED far longer than backpressure explains: reported, not touched.
- Ended, but its end not announced in full (`announce_pending`: the event or the waiting caller
  failed): announced again (adapters.announcements).

docs/architecture.md, "The poller".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from kling_pipeline.adapters import on_reset
from kling_pipeline.adapters.announcements import Announcer, announcer
from kling_pipeline.adapters.download_workflow import DownloadWorkflow, download_workflow
from kling_pipeline.adapters.generation_estimates import GenerationEstimates, generation_estimates
from kling_pipeline.adapters.job_queue import JobQueue, job_queue
from kling_pipeline.adapters.job_store import ANNOUNCE_GRACE_S, JobStore, job_store
from kling_pipeline.adapters.kling_client import TASK_NOT_FOUND, KlingClient
from kling_pipeline.adapters.ledger import Ledger, ledger
from kling_pipeline.adapters.slot_pools import SlotPools, slot_pools
from kling_pipeline.claims import (
    ClaimResult,
    ClaimRules,
    Outcome,
    account_reason,
    claim_job,
    park_job,
    reconcile,
    reconcile_since_ms,
    release_for_retry,
    unsettled_from,
)
from kling_pipeline.door_submit import as_kling_task, fail_unsettled, observed_changes, wait_unsettled
from kling_pipeline.doors import FAL, Door, clients, door_of, kling_on_first_use, no_clients, task_ref
from kling_pipeline.errors import (
    KlingAccountError,
    KlingApiError,
    KlingFinalError,
    KlingKeysMissingError,
    KlingShapeError,
    KlingUnavailableError,
    ProviderAccountError,
    ProviderNotEnabledError,
    ProviderUnavailableError,
    TransitionRejectedError,
)
from kling_pipeline.extend_chain import stored_move, video_key
from kling_pipeline.job_ids import job_reference
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import AWAITING_KLING, KLING_KEEPS_RESULTS_S, Job, JobState, Transition, advance_job
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.poll_schedule import (
    PollSchedule,
    all_shards,
    may_have_finished,
    poll_interval_s,
    timed_out_look_s,
)
from kling_pipeline.providers import OUTPUT_EXPIRED, ProviderTask
from kling_pipeline.requests import parked_message, stored_request
from kling_pipeline.settings import PollerSettings
from kling_pipeline.slots import limit_after_quiet
from kling_pipeline.task_lookups import NOT_FOUND, Answer, NotFound, claims_of, query_group_of, tasks_of

BY = "poller"
REPAIR = "poller-repair"
PER_SHARD = 25  # jobs read from each shard per round
# How far ahead (in poll intervals) a round reads the index for jobs that may ride along in its calls: past
# the late look of a job seen running by its callbacks (poll_schedule.late_finish_s, CallbackWaitSeconds).
RIDE_HORIZON_INTERVALS = 40
MARGIN_S = 10.0  # stop starting work this long before the invocation's end
# Without an answer from Kling, a job is timed out only after this many job timeouts (see settle_running).
UNANSWERED_TIMEOUT_FACTOR = 2
ACCOUNT_LOOKBACK_MS = 400 * 86_400_000  # resource packs bought in the last 400 days (a year's pack, and some)


# After a poll found a final callback lost, jobs seen running by their callbacks are asked about like the
# others for this many poll intervals (an hour at the template's 15 s): see CallbackLosses.
LOSS_MEMORY_INTERVALS = 240


class CallbackLosses:
    """When this container's poller last found a final callback lost: Kling had ended a task more than a poll
    interval before a poll found it, and no callback had said so. Until then (and LOSS_MEMORY_INTERVALS after
    it) a job seen running by its callbacks waits for them, not asked about on its own before its late look
    (poll_schedule.late_finish_s), so a deployment whose callbacks arrive asks Kling nothing; while callbacks
    are being lost, it is asked about once it may have finished, as a job whose callbacks were all lost is.
    Kept for the container's life, as the batch size is (task_lookups.BatchSizes)."""

    def __init__(self) -> None:
        self._at: float | None = None
        self._lock = threading.Lock()

    def found(self, now: float) -> None:
        with self._lock:
            first = self._at is None
            self._at = now
        if first:
            logger.warning(
                "a poll found a task Kling had ended with no callback: jobs seen running are asked about too"
            )

    def recent(self, now: float, memory_s: float) -> bool:
        with self._lock:
            return self._at is not None and now - self._at <= memory_s

    def forget(self) -> None:
        with self._lock:
            self._at = None


callback_losses = CallbackLosses()
on_reset(callback_losses.forget)


@dataclass
class PollerDependencies:
    settings: PollerSettings
    rules: ClaimRules
    store: JobStore
    queue: JobQueue
    # Kling's own client, built on first use (doors.kling_on_first_use): KlingKeysMissingError in a deployment
    # that reaches Kling only through another door.
    kling_client: Callable[[], KlingClient]
    workflow: DownloadWorkflow
    estimates: GenerationEstimates
    ledger: Ledger
    announcer: Announcer
    slots: SlotPools
    # The other providers' doors (doors.py): a client by name, built on first use (only their jobs need one).
    door: Callable[[str], Any] = no_clients

    @cached_property
    def kling(self) -> KlingClient:
        return self.kling_client()

    @cached_property
    def s3(self) -> Any:
        """S3, imported and built on first use: only a DOWNLOADING job's repair reads it (settle_download)."""
        from kling_pipeline.adapters.video_transfer import s3_client

        return s3_client()


def poller_dependencies(settings: PollerSettings) -> PollerDependencies:
    kling = kling_on_first_use(settings)
    queue = job_queue(settings.jobs_queue_url, settings.dead_letter_queue_url)
    slots = slot_pools(settings.jobs_table_name, settings.pool_limits, queue)
    store = job_store(settings.jobs_table_name, settings.finished_job_ttl_days, settings.poll_schedule, slots)
    return PollerDependencies(
        settings=settings,
        rules=ClaimRules.of(settings),
        store=store,
        queue=queue,
        kling_client=kling,
        workflow=download_workflow(settings.download_state_machine_arn, settings.download_attempts),
        estimates=generation_estimates(settings.stats_table_name),
        ledger=ledger(settings.stats_table_name),
        announcer=announcer(settings.event_bus_name, store),
        slots=slots,
        door=clients(settings),
    )


@dataclass
class PollReport:
    """What one run did, for its log line and metrics (and the tests)."""

    looked_at: int = 0
    kling_gets: int = 0  # jobs Kling's answer was applied to
    kling_queries: int = 0  # query calls this run made (a batch or a list page is one)
    fal_queries: int = 0  # fal look-ups (one request each: fal has no look-up-many)
    door_queries: int = 0  # look-up calls to other providers' doors (fal's included; a batch is one)
    pulled_forward: int = 0  # jobs not yet due, asked about in a call made for their pool anyway
    rounds: int = 0  # looks at the due jobs (one, plus one each poll interval while live jobs were due)
    resolved_by_poll: int = 0  # Kling had finished (or failed) it and no callback had said so
    reconciled: int = 0
    repaired: int = 0  # a DOWNLOADING job completed from its stored object
    messages_resent: int = 0  # a QUEUED job's message the poller sent (a chain's next step, an API job's)
    left_for_next_run: int = 0  # claimed, but this run ran out of time before settling it
    restarted: int = 0  # a new download attempt started
    timed_out: int = 0
    failed: int = 0
    queued_too_long: int = 0
    announced: int = 0  # an ended job whose announcement had failed, announced again
    claimed_elsewhere: int = 0  # another run (or a transition) got there first
    errors: int = 0  # jobs whose settling raised an unexpected error (logged with the job id); the run went on
    max_lag_s: int = 0
    oldest_live_s: int = 0
    remaining_units: float | None = None  # in the account's usable resource packs (None: not read)
    slots_refilled: int = 0  # waiting jobs sent to fill free Kling slots (the backstop of the releasers' own)
    slot_limits_raised: int = 0  # pools whose limit, lowered by a 1303, climbed back a slot
    slot_counts_fixed: int = 0  # pools whose count of held slots the recount corrected
    actions: dict[str, str] = field(default_factory=dict)  # job id -> what happened

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "actions"}


def scheduled_run(settings: PollerSettings, *, time_left_s: Callable[[], float]) -> dict[str, Any]:
    """One scheduled run. Before the Kling keys are stored, in a deployment with no other door enabled, there
    is nothing to poll (no job can reach Kling): the run says so in one line, counts it for the KlingKeysMissing
    alarm and ends normally, so neither Lambda nor EventBridge retries it; the next run looks again."""
    try:
        deps = poller_dependencies(settings)
    except KlingKeysMissingError as exc:
        logger.error(str(exc), extra={"secret": settings.kling_credentials_secret})
        record(Metric.KLING_KEYS_MISSING)
        return {"kling_keys_missing": True}
    return run_poller(deps, time_left_s=time_left_s).as_dict()


def run_poller(
    deps: PollerDependencies, *, time_left_s: Callable[[], float], sleep: Callable[[float], None] = time.sleep
) -> PollReport:
    """Settle due jobs, most overdue first, until none is due or the time budget is spent; then, while a
    live job is due before the run's time (PollerRunSeconds) is up, wait for it (a poll interval at
    most) and look again. Nothing live due in that time: the run ends at once."""
    report = PollReport(rounds=1)
    schedule = deps.store.schedule
    interval = schedule.poll_interval_s if schedule is not None else 0
    started_with = time_left_s()
    seen: set[str] = set()
    while time_left_s() > MARGIN_S:
        now = int(time.time())
        run_left = deps.settings.poller_run_s - (started_with - time_left_s())
        looks_until = now + max(interval, int(run_left))
        # Read further ahead than this run looks: a job due later may ride along in a call made anyway.
        items = due_jobs(deps.store, due_by=max(looks_until, now + interval * RIDE_HORIZON_INTERVALS))
        due = [item for item in items if int(item["next_poll_at"]) <= now and item["job_id"] not in seen]
        waiting = [item for item in items if waits_for_callbacks(item, now) and item["job_id"] not in seen]
        lossy = bool(waiting) and callback_losses.recent(now, interval * LOSS_MEMORY_INTERVALS)
        if lossy:
            due += may_have_finished_items(deps, waiting, now)
        if due:
            seen.update(item["job_id"] for item in due)
            soon = [item for item in items if int(item["next_poll_at"]) > now and item["job_id"] not in seen]
            seen.update(settle(due, deps, report, time_left_s, soon=soon))
            continue
        upcoming = [int(item["next_poll_at"]) for item in items if now < int(item["next_poll_at"]) <= looks_until]
        if lossy:
            upcoming.append(now + interval)  # callbacks are being lost: the jobs waiting for theirs are looked at
        if not upcoming:
            break  # nothing live is due in this run's time: the next run looks
        wait = min(max(min(upcoming) - time.time(), 1.0), float(interval))
        if wait > run_left or time_left_s() - wait <= MARGIN_S + deps.settings.kling_timeout_s:
            break
        sleep(wait)
        report.rounds += 1
        seen.clear()  # a new look: a job looked at before may be due again
    if time_left_s() > MARGIN_S:
        keep_slots(deps, report)
    if time_left_s() > MARGIN_S + deps.settings.kling_timeout_s:
        check_account(deps, report)
    record_run(report)
    return report


def waits_for_callbacks(item: dict[str, Any], now: int) -> bool:
    """A job seen running by its callbacks (PROCESSING and never polled), not yet due: it waits for them."""
    return (
        item["state"] == JobState.PROCESSING.value
        and not int(item.get("poll_count") or 0)
        and int(item["next_poll_at"]) > now
    )


def may_have_finished_items(deps: PollerDependencies, waiting: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Of the jobs waiting for their callbacks, those that may have finished (poll_schedule.may_have_finished):
    asked about now, since callbacks are being lost (CallbackLosses)."""
    try:
        jobs = deps.store.get_many([item["job_id"] for item in waiting])
    except Exception as exc:
        logger.warning("could not read the jobs waiting for their callbacks", extra={"error": repr(exc)[:300]})
        return []
    return [item for item in waiting if (job := jobs.get(item["job_id"])) is not None and may_have_finished(job, now)]


def keep_slots(deps: PollerDependencies, report: PollReport) -> None:
    """Each run, for every pool: a limit lowered by a 1303 climbs back one slot after a quiet period
    (PoolQuietSeconds), the count of held slots is checked against the jobs that hold them (a drift
    seen twice is corrected), and free slots go to the pool's waiting jobs: the backstop of the hand-on
    every release makes at once (docs/architecture.md, "Kling's slots")."""
    slots = deps.slots
    now = int(time.time())
    for pool in slots.pools():
        try:
            raised = limit_after_quiet(pool, now=now, quiet_s=deps.settings.pool_quiet_s)
            if raised is not None and slots.set_limit(pool, raised, now=now):
                report.slot_limits_raised += int(raised > pool.limit)
            report.slot_counts_fixed += int(slots.recount(pool) != 0)
            report.slots_refilled += len(slots.refill(pool.name))
            publish_slots(slots, pool.name)
        except Exception:
            report.errors += 1
            logger.exception("could not keep a pool's slots", extra={"pool": pool.name})


def publish_slots(slots: SlotPools, name: str) -> None:
    """The dashboard's slots widget: a pool's held slots against its limit, and its line, as this run left them."""
    pool = slots.pool(name)
    if pool is None:
        return
    record(Metric.SLOTS_HELD, pool.held, pool=name)
    record(Metric.SLOTS_LIMIT, pool.limit, pool=name)
    record(Metric.JOBS_WAITING, slots.waiting(name), pool=name)


def check_account(deps: PollerDependencies, report: PollReport) -> None:
    """Publish what is left of the account's resource packs, per pack and in all usable packs together
    (which the RemainingUnits alarm watches): one `GET /account/costs` every AccountCheckSeconds across
    all runs, far below Kling's one a second. Kling's figure may lag up to 12 hours; the daily budget
    (submit.py) is the hard stop."""
    now = time.time()
    if not deps.ledger.claim_account_check(now=now, every_s=deps.settings.account_check_s):
        return  # another run read it this period
    now_ms = int(now * 1000)
    try:
        kling = deps.kling
    except KlingKeysMissingError:
        return  # a deployment that reaches Kling only through other doors: no Kling account to read
    try:
        packs = kling.resource_packs(since_ms=now_ms - ACCOUNT_LOOKBACK_MS, until_ms=now_ms)
    except (KlingApiError, KlingUnavailableError, KlingShapeError) as exc:
        logger.warning("could not read the account's resource packs", extra={"error": str(exc)[:300]})
        return
    usable = [pack for pack in packs if pack.usable]
    for pack in usable:
        record(Metric.REMAINING_UNITS, pack.remaining_quantity, pack=pack.resource_pack_name)
    report.remaining_units = sum(pack.remaining_quantity for pack in usable)
    record(Metric.REMAINING_UNITS, report.remaining_units)


def due_jobs(store: JobStore, *, due_by: int | None = None) -> list[dict[str, Any]]:
    """The most overdue jobs of every shard (due by `due_by`, default now), read in parallel (the index
    is sharded to spread writes)."""
    due_by = int(time.time()) if due_by is None else due_by
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda shard: store.due_jobs(shard, due_by=due_by, limit=PER_SHARD), all_shards()))
    return sorted((item for page in pages for item in page), key=lambda item: int(item["next_poll_at"]))


def settle(
    due: list[dict[str, Any]],
    deps: PollerDependencies,
    report: PollReport,
    time_left_s: Callable[[], float],
    soon: list[dict[str, Any]] | None = None,
) -> set[str]:
    """Claim and settle the due jobs; of the `soon` due, those a call for their pool takes anyway (pulled
    forward). Returns the ids of the jobs pulled forward."""
    schedule = deps.store.schedule
    assert schedule is not None, "the poller's store schedules live jobs"
    now = int(time.time())
    claimed: list[Job] = []
    for item in due:
        if time_left_s() <= MARGIN_S:
            break
        state = JobState(item["state"])
        report.looked_at += 1
        report.max_lag_s = max(report.max_lag_s, now - int(item["next_poll_at"]))
        # An ended job waits here only for its announcement, or (TIMED_OUT) to be watched for a late `succeed`.
        if not state.is_terminal:
            report.oldest_live_s = max(report.oldest_live_s, age_s(item.get("created_at"), now))
        polled = state in (JobState.SUBMITTED, JobState.PROCESSING)
        next_due = look_again_at(state, item, now, schedule)
        try:
            won = deps.store.claim_poll(item["job_id"], due=int(item["next_poll_at"]), next_due=next_due, polled=polled)
            job = deps.store.find(item["job_id"]) if won else None
        except Exception as exc:
            report.actions[item["job_id"]] = job_failed(item["job_id"], exc, report)
            continue
        if not won:
            report.claimed_elsewhere += 1
            continue
        if job is not None and (not job.is_terminal or job.announce_pending or job.state is JobState.TIMED_OUT):
            claimed.append(job)
    running = [job for job in claimed if job.state in AWAITING_KLING and job.task_id and door_of(job) is None]
    pulled = pull_forward(running, soon or [], deps, report, now, schedule)
    claimed += pulled
    asked = {job.job_id for job in running + pulled}
    answers = fetch(deps, running + pulled, report, time_left_s)
    claims = claims_found([job for job in claimed if door_of(job) is None], deps, report, now, time_left_s)
    batched = door_batches(claimed, deps, report)
    for job in claimed:
        if time_left_s() <= MARGIN_S or (job.job_id in asked and job.job_id not in answers):
            # Claimed, so due again at its next look (look_again_at): the next run takes it.
            report.left_for_next_run += 1
            report.actions[job.job_id] = "left for the next run (this one is out of time)"
            continue
        try:
            if job.job_id in claims:
                action = settle_claim(job, deps, report, now, time_left_s, claims[job.job_id])
            else:
                action = settle_one(job, answers.get(job.job_id), deps, report, now, time_left_s, batched)
        except TransitionRejectedError:
            action = "moved by someone else meanwhile"
        except KlingAccountError as exc:
            logger.error("Kling refused our account while polling", extra={"code": exc.code})
            action = f"not polled: Kling refused our account ({exc.code})"
        except Exception as exc:
            action = job_failed(job, exc, report)
        report.actions[job.job_id] = action
        logger.info("poller looked at a job", extra={"job_id": job.job_id, "state": job.state, "action": action})
    return {job.job_id for job in pulled}


def pull_forward(
    running: list[Job],
    soon: list[dict[str, Any]],
    deps: PollerDependencies,
    report: PollReport,
    now: int,
    schedule: PollSchedule,
) -> list[Job]:
    """The running jobs of the query groups (task_lookups.query_group_of) asked about now that one call answers
    too, claimed and asked about with it: those due within the next poll interval (a poll like any,
    counted), and, riding along, those due later that were polled before (their next look put off by
    their current interval, which does not grow, so a job's wait is never stretched by a ride) or may have
    finished by now (poll_schedule.may_have_finished: a job whose final callback was lost is noticed in
    the next call for its group, not at its own late look, which it keeps)."""
    groups = {query_group_of(job) for job in running}
    interval = schedule.poll_interval_s
    candidates = [item for item in soon if JobState(item["state"]) in (JobState.SUBMITTED, JobState.PROCESSING)]
    if not groups or not candidates:
        return []
    try:
        jobs = deps.store.get_many([item["job_id"] for item in candidates])
    except Exception as exc:
        logger.warning("could not read the jobs soon due; none pulled forward", extra={"error": repr(exc)[:300]})
        return []
    pulled: list[Job] = []
    for item in candidates:
        job = jobs.get(item["job_id"])
        if job is None or job.state not in (JobState.SUBMITTED, JobState.PROCESSING) or not job.task_id:
            continue
        if query_group_of(job) not in groups or door_of(job) is not None:
            continue
        polls = int(item.get("poll_count") or 0)
        due = int(item["next_poll_at"])
        polled = due <= now + interval
        if polled:
            next_due = look_again_at(job.state, item, now, schedule)
        elif polls >= 1:
            next_due = now + poll_interval_s(polls, schedule)
        elif may_have_finished(job, now):
            next_due = max(due, now + interval)  # its own look stays: it still waits for its callbacks
        else:
            continue
        try:
            won = deps.store.claim_poll(job.job_id, due=due, next_due=next_due, polled=polled)
        except Exception as exc:
            logger.warning("could not claim a job soon due", extra={"job_id": job.job_id, "error": repr(exc)[:300]})
            continue
        if won:
            report.looked_at += 1
            report.pulled_forward += 1
            pulled.append(job.model_copy(update={"next_poll_at": next_due}))
    return pulled


def fetch(
    deps: PollerDependencies, jobs: list[Job], report: PollReport, time_left_s: Callable[[], float]
) -> dict[str, KlingTask | Exception]:
    """Kling's answers for these jobs' tasks, asked in batches (task_lookups.tasks_of); a job left out for
    want of time has none (it is left for the next run). A task `/tasks` did not show is Kling's "task not
    found", as a single look-up answers it."""
    settings = deps.settings
    if not jobs:
        return {}  # no Kling client needed (a deployment may reach Kling only through other doors)
    found = tasks_of(
        deps.kling,
        jobs,
        batch_size=settings.kling_batch_size,
        page_budget=settings.kling_list_pages,
        parallelism=settings.poll_parallelism,
        time_left_s=lambda: time_left_s() - MARGIN_S,
    )
    report.kling_queries += found.calls
    missing = KlingFinalError(TASK_NOT_FOUND, "the task is not among the tasks Kling answered", 200)
    return {job_id: missing if isinstance(a, NotFound) else a for job_id, a in found.answers.items()}


def claims_found(
    claimed: list[Job], deps: PollerDependencies, report: PollReport, now: int, time_left_s: Callable[[], float]
) -> dict[str, Job | ClaimResult | tuple[Job, Callable[[], KlingTask | None]]]:
    """Where several abandoned claims are due: each claimed again (claims.claim_job) and their tasks
    looked up together (task_lookups.claims_of). Per job: the claim's result, or the claimed job and what
    the batch found for it (to reconcile with); a job with no entry is settled alone (settle_claim)."""
    stale = [job for job in claimed if job.state is JobState.SUBMITTING and (job.lease_expires_at or 0) <= now]
    if len(stale) < 2:
        return {}
    results: dict[str, Job | ClaimResult | tuple[Job, Callable[[], KlingTask | None]]] = {}
    for job in stale:
        try:
            results[job.job_id] = claim_job(job, deps, owner=BY)
        except Exception as exc:
            logger.warning("could not claim an abandoned claim", extra={"job_id": job.job_id, "error": repr(exc)[:300]})
    mine = [r for r in results.values() if isinstance(r, Job)]
    settings = deps.settings
    found = claims_of(
        deps.kling,
        mine,
        since_ms=lambda job: reconcile_since_ms(unsettled_from(job, now)),
        batch_size=settings.kling_batch_size,
        page_budget=settings.kling_list_pages,
        time_left_s=lambda: time_left_s() - MARGIN_S,
    )
    report.kling_queries += found.calls
    for job in mine:
        if job.job_id in found.answers:
            results[job.job_id] = (job, answered(found.answers[job.job_id]))
    return results


def answered(answer: Answer) -> Callable[[], KlingTask | None]:
    """A batch's answer as claims.reconcile's look-up: the task, None (no task), or the call's error raised."""

    def located() -> KlingTask | None:
        if isinstance(answer, Exception):
            raise answer
        return None if answer is NOT_FOUND else answer  # type: ignore[return-value]

    return located


def job_failed(job: Job | str, exc: Exception, report: PollReport) -> str:
    """An unexpected error settling one job: logged with its id and counted; the job is due again at
    its next look (its claim set that), so a passing fault is retried by a later run."""
    job_id = job if isinstance(job, str) else job.job_id
    report.errors += 1
    record(Metric.POLLER_JOBS, action="error")
    logger.exception("poller could not settle a job", extra={"job_id": job_id, "error": repr(exc)[:300]})
    return f"error: {type(exc).__name__}: {str(exc)[:200]}"


def look_again_at(state: JobState, item: dict[str, Any], now: int, schedule: PollSchedule) -> int:
    """When this job is next due if this run does nothing more with it (or dies on the way)."""
    if state in (JobState.SUBMITTED, JobState.PROCESSING):
        return now + poll_interval_s(int(item.get("poll_count") or 0) + 1, schedule)
    if state is JobState.SUBMITTING:
        lease = int(item.get("lease_expires_at") or 0)
        return lease + 1 if lease > now else now + schedule.poll_interval_s
    if state is JobState.DOWNLOADING:
        return now + schedule.download_check_s
    if state is JobState.TIMED_OUT:
        # Watched, rarely; if its end is still to be announced, settle_one brings its next look forward.
        return now + timed_out_look_s(schedule)
    if state.is_terminal:
        return now + ANNOUNCE_GRACE_S
    return now + schedule.queued_report_s


def settle_one(
    job: Job,
    answer: KlingTask | Exception | None,
    deps: PollerDependencies,
    report: PollReport,
    now: int,
    time_left_s: Callable[[], float] | None = None,
    batched: Mapping[str, ProviderTask | Exception] | None = None,
) -> str:
    if job.state is JobState.TIMED_OUT:
        # Its end announced first (once), then watched for a late `succeed`: a later end is never
        # announced before this one.
        if not job.announce_pending:
            return settle_timed_out(job, answer, deps, report, now)
        if not announce_again(job, deps, report):
            # Its claim made it due at the rare look: the announcement is due sooner.
            deps.store.claim_poll(
                job.job_id, due=int(job.next_poll_at or now), next_due=now + ANNOUNCE_GRACE_S, polled=False
            )
            return "announcement failed again; tried at its next look"
        return "announced (its first announcement had failed); " + settle_timed_out(job, answer, deps, report, now)
    if job.is_terminal:
        if not announce_again(job, deps, report):
            return "announcement failed again; tried at its next look"
        return "announced (its first announcement had failed)"
    door = door_of(job)
    if door is not None and job.state in (JobState.SUBMITTED, JobState.PROCESSING, JobState.SUBMITTING):
        return settle_door(job, door, deps, report, now, batched or {})
    if job.state in (JobState.SUBMITTED, JobState.PROCESSING):
        return settle_running(job, answer, deps, report, now)
    if job.state is JobState.SUBMITTING:
        return settle_claim(job, deps, report, now, time_left_s)
    if job.state is JobState.DOWNLOADING:
        return settle_download(job, deps, report, now)
    if job.state is JobState.QUEUED and job.awaiting_message:
        # Recorded and never claimed: its message was lost (a chain's next step the workflow could not
        # send, a jobs-API job whose batch failed before its message went).
        send_next_step(job, deps, report)
        message = f"step {job.step}'s message" if job.is_chain else "its message"
        return f"{message} sent again (none had reached the submit path)"
    if job.state is JobState.QUEUED and job.waiting_pool:
        return f"waiting for a free Kling slot in pool {job.waiting_pool}"
    schedule = deps.store.schedule
    if (
        job.state is JobState.QUEUED
        and schedule is not None
        and now - age_from(job.updated_at) > schedule.queued_report_s
    ):
        report.queued_too_long += 1
        record(Metric.POLLER_JOBS, action="queued_too_long")
        logger.warning(
            "job queued far longer than backpressure explains",
            extra={"job_id": job.job_id, "since": job.updated_at, "backpressure_count": job.backpressure_count},
        )
        return "reported: queued too long"
    return "nothing to do"


def door_batches(
    claimed: list[Job], deps: PollerDependencies, report: PollReport
) -> dict[str, ProviderTask | Exception]:
    """For a door that looks up many tasks in one call (AceData's retrieve_batch, its ids per call a
    setting): the answers for every claimed live job of it, by job id. A task the answers did not hold is
    absent (asked again at its next look: never a failure); a call that failed is its error for each."""
    found: dict[str, ProviderTask | Exception] = {}
    by_door: dict[str, list[Job]] = {}
    for job in claimed:
        door = door_of(job)
        if door is not None and door.looks_up_many and job.state in AWAITING_KLING and task_ref(job) is not None:
            by_door.setdefault(door.name, []).append(job)
    for name, jobs in by_door.items():
        refs = {job.job_id: task_ref(job) for job in jobs}
        try:
            client = deps.door(name)
            report.door_queries += -(-len(jobs) // max(1, int(getattr(client, "batch_size", 1))))
            answer = client.look_up_many(ref for ref in refs.values() if ref is not None)
        except (ProviderUnavailableError, ProviderNotEnabledError, ProviderAccountError) as exc:
            found |= {job.job_id: exc for job in jobs}
            continue
        for job_id, ref in refs.items():
            if ref is not None and ref.id in answer.found:
                found[job_id] = answer.found[ref.id]
    return found


def settle_door(
    job: Job,
    door: Door,
    deps: PollerDependencies,
    report: PollReport,
    now: int,
    batched: Mapping[str, ProviderTask | Exception],
) -> str:
    """A job of another provider's door gone quiet (its callback lost, or its result not readable yet): the
    provider's word on its task (one look-up, or its batch's answer), through the one lifecycle. An
    abandoned claim is never created again from here: a door that finds lost creates by listing (Replicate)
    sends it back to the submit path, which searches the list first; the others wait for the callback,
    and past the door's window end PROVIDER_UNSETTLED."""
    settings = deps.settings
    if job.state is JobState.SUBMITTING:
        if (job.lease_expires_at or 0) > now:
            return "claim still held"
        since = int(job.claimed_at or now)
        claimed = claim_job(job, deps, owner=BY)
        if isinstance(claimed, ClaimResult):
            return claimed.detail
        if door.finds_lost_creates:
            result = release_for_retry(
                claimed,
                deps,
                f"the claim was abandoned: back to the queue, where {door.label}'s list is searched before any create",
                unsettled=True,
                unsettled_since=since,
            )
            deps.queue.send(job_reference(job.job_id), delay_s=result.delay_s)
            report.reconciled += 1
            return result.detail
        why = f"a claim expired and may have sent the create to {door.label}"
        return wait_unsettled(claimed, deps, door, since, "", why).detail
    ref = task_ref(job)
    if ref is None:
        window = door.window_s(settings)
        since = job.provider_unsettled_at or now
        if now - since < window:
            return f"unsettled: waiting for {door.label}'s callback ({window - (now - since)} s left)"
        fail_unsettled(job, deps, door, since, f"no callback from {door.label} named the job within {window} s", by=BY)
        report.failed += 1
        return "failed: PROVIDER_UNSETTLED"
    client = deps.door(door.name)
    record(Metric.POLLER_JOBS, action="polled")
    if door.looks_up_many:
        answer = batched.get(job.job_id)
        if answer is None:
            return f"{door.label}'s batch answer did not hold the task (asked again at its next look)"
        if isinstance(answer, Exception):
            return f"could not read {door.label}'s answer (asked again at its next look): {answer}"
        task = answer
    else:
        report.door_queries += 1
        if door.name == FAL:
            report.fal_queries += 1
        try:
            task = client.look_up(ref)
        except ProviderUnavailableError as exc:
            return f"could not read {door.label}'s answer (asked again at its next look): {exc.message}"
    next_due = int(job.next_poll_at or now)
    within = door.poll_within_s(settings)
    if within is not None and next_due > now + within:
        # Its result may not outlive a longer wait (Replicate: an hour): looked at again well inside it.
        deps.store.claim_poll(job.job_id, due=next_due, next_due=now + within, polled=False)
        next_due = now + within
    observed = as_kling_task(task, client.charge(ref, door.charge_arguments(job), task))
    if observed is None:
        return f"{door.label}'s answer proves nothing yet ({task.error or task.status})"
    report.kling_gets += 1
    moved, action = advance_job(job, observed, deps, by=BY, next_poll_at=next_due, record_also=observed_changes(task))
    if moved.state in (JobState.DOWNLOADING, JobState.FAILED) and moved is not job:
        report.resolved_by_poll += 1
    return action


def announce_again(job: Job, deps: PollerDependencies, report: PollReport) -> bool:
    """An ended job whose announcement failed (or whose announcer died): its event again (at least once
    is the promise), its waiting caller resumed (Step Functions takes a token once: a caller already
    resumed answers InvalidToken, which is nobody's error), then its mark cleared. False: it failed
    again, and the mark stays for the next look."""
    if not deps.announcer.job_ended(job):
        return False
    report.announced += 1
    record(Metric.POLLER_JOBS, action="announced")
    return True


def settle_running(
    job: Job, answer: KlingTask | Exception | None, deps: PollerDependencies, report: PollReport, now: int
) -> str:
    current, action = job, "no answer from Kling"
    record(Metric.POLLER_JOBS, action="polled")
    if isinstance(answer, KlingTask):
        report.kling_gets += 1
        record(Metric.KLING_GETS, by=BY)
        next_due = int(job.next_poll_at or now)  # the claim set it: keep it for a job still running
        current, action = advance_job(job, answer, deps, by=BY, next_poll_at=next_due)
        if current.state in (JobState.DOWNLOADING, JobState.FAILED) and current is not job:
            report.resolved_by_poll += 1
            record(Metric.POLLER_JOBS, action="resolved")
            schedule = deps.store.schedule
            interval = schedule.poll_interval_s if schedule is not None else 0
            if answer.updated_at and answer.updated_at / 1000 < now - interval:
                callback_losses.found(now)  # Kling ended it a while ago, and no callback said so
    elif answer is not None:
        action = f"could not ask Kling: {answer}"
    if current.state not in (JobState.SUBMITTED, JobState.PROCESSING):
        return action
    waited = now - (current.submitted_at or now)
    timeout = deps.settings.job_timeout_s
    # Only Kling's own answer that the task is unfinished times a job out. When Kling cannot be asked
    # (an outage, 1302, an account error, an answer this version cannot read) it may have finished and
    # billed the task: the job waits a second job timeout before it is timed out anyway, and even then
    # it is watched for a late `succeed` (settle_timed_out).
    unfinished = isinstance(answer, KlingTask) and answer.task_status in ("submitted", "processing")
    if waited <= (timeout if unfinished else timeout * UNANSWERED_TIMEOUT_FACTOR):
        return action
    watch_until = datetime.fromtimestamp(watched_until(current), UTC).date()
    why = (
        f"Kling had not finished task {current.task_id} {waited // 60} minutes after accepting it (the job "
        f"timeout is {timeout // 60} minutes)"
        if unfinished
        else f"Kling could not be asked about task {current.task_id} for {waited // 60} minutes after accepting "
        f"it (the last ask: {str(answer)[:200] if answer is not None else 'no answer'})"
    )
    timed_out = deps.store.transition(
        current,
        Transition(
            current.state,
            JobState.TIMED_OUT,
            {
                "error_code": "JOB_TIMED_OUT",
                "error_message": (
                    f"{why}; the pipeline stopped waiting for it. Kling may still finish and charge it: the "
                    f"pipeline keeps asking until {watch_until}, and if Kling finishes it the video is stored and "
                    "the job completes."
                ),
            },
            by=BY,
        ),
    )
    deps.announcer.job_ended(timed_out)
    report.timed_out += 1
    record(Metric.POLLER_JOBS, action="timed_out")
    return "timed out"


def settle_timed_out(
    job: Job, answer: KlingTask | Exception | None, deps: PollerDependencies, report: PollReport, now: int
) -> str:
    """A TIMED_OUT job whose task Kling may still finish: a confirmed `succeed` carries it to DOWNLOADING
    (the video is paid for); Kling's `failed`, or the end of Kling's 30 days, ends the watch."""
    if isinstance(answer, KlingTask):
        report.kling_gets += 1
        record(Metric.KLING_GETS, by=BY)
        moved, action = advance_job(job, answer, deps, by=BY)
        if moved.state is JobState.DOWNLOADING:
            report.resolved_by_poll += 1
            record(Metric.POLLER_JOBS, action="resolved")
            return f"Kling finished it after the job timeout: {action}"
        if answer.task_status in ("succeed", "failed"):
            deps.store.stop_watching(job)
            return f"Kling ended its task {answer.task_status} with nothing to collect: no longer watched"
    if now >= watched_until(job):
        deps.store.stop_watching(job)
        return "no longer watched: Kling's 30 days since it accepted the task have passed"
    return "still not finished at Kling" if isinstance(answer, KlingTask) else f"could not ask Kling: {answer}"


def watched_until(job: Job) -> int:
    """Until when a TIMED_OUT job is asked about: Kling keeps a task's results 30 days, so a task still
    unfinished 30 days after it was accepted has nothing left to collect."""
    return (job.submitted_at or age_from(job.created_at)) + KLING_KEEPS_RESULTS_S


def settle_claim(
    job: Job,
    deps: PollerDependencies,
    report: PollReport,
    now: int,
    time_left_s: Callable[[], float] | None = None,
    batched: Job | ClaimResult | tuple[Job, Callable[[], KlingTask | None]] | None = None,
) -> str:
    """An abandoned claim: find its task, or give the job back to the submit path. Never a create.
    `batched`: its claim and look-up, already made with others' (claims_found)."""
    if batched is None and (job.lease_expires_at or 0) > now:
        return "claim still held"
    located = None
    claimed: Job | ClaimResult
    if isinstance(batched, tuple):
        claimed, located = batched
    else:
        claimed = batched if batched is not None else claim_job(job, deps, owner=BY)
    if isinstance(claimed, ClaimResult):
        return claimed.detail
    try:
        scan_time = None if time_left_s is None else (lambda: time_left_s() - MARGIN_S)
        result = reconcile(
            claimed, claimed.task_kind, deps, by=BY, time_left_s=scan_time, located=located
        ) or release_for_retry(
            claimed, deps, "the claim was abandoned and Kling has no task for it: sent back to the queue"
        )
    except KlingAccountError as exc:
        result = park_job(claimed, deps, account_reason(exc), kling_code=exc.code)
    report.reconciled += 1
    record(Metric.POLLER_JOBS, action="reconciled")
    if result.outcome is Outcome.REQUEUED:
        deps.queue.send(job_reference(job.job_id), delay_s=result.delay_s)
    elif result.outcome is Outcome.PARKED:
        # What the submit path leaves for a parked job: the job's request, so a redrive is this job again.
        deps.queue.dead_letter(
            parked_message(stored_request(claimed)),
            reason=result.detail,
            source_message_id=f"poller:{job.job_id}",
            job_id=job.job_id,
        )
    return f"reconciled: {result.outcome.value} ({result.detail[:120]})"


def settle_download(job: Job, deps: PollerDependencies, report: PollReport, now: int) -> str:
    """A DOWNLOADING job whose workflow is not running: finish it from S3, or download it again."""
    # Imported here: a repair is rare, and these bring the video transfer's machinery into every cold start.
    from kling_pipeline.adapters.video_transfer import stored_video
    from kling_pipeline.download import stored_changes

    attempt = deps.workflow.last_attempt(job)
    if attempt is not None and attempt.working:
        return f"download attempt {attempt.number} running"
    stored = stored_video(deps.s3, deps.settings.video_bucket, video_key(job))
    if stored is not None:
        move = stored_move(job, stored_changes(stored), by=REPAIR)
        repaired = deps.store.transition(job, move)
        report.repaired += 1
        record(Metric.POLLER_JOBS, action="repaired")
        if move.to_state is JobState.QUEUED:
            send_next_step(repaired, deps, report)
            return f"step {job.step} completed from the stored video; step {repaired.step} queued"
        deps.announcer.job_ended(repaired)
        return "completed from the stored video (no second download)"
    tried = attempt.number if attempt is not None else 0
    expires_at = job.results_expire_at
    if job.video_expires_at is not None and now > job.video_expires_at:
        from kling_pipeline.download import output_expired_message

        message = output_expired_message(job, f"not copied in {tried} download attempt(s)")
        return fail_download(job, deps, report, OUTPUT_EXPIRED, message)
    if expires_at is not None and now > expires_at:
        expired_on = datetime.fromtimestamp(expires_at, UTC).date()
        return fail_download(
            job,
            deps,
            report,
            "VIDEO_URL_EXPIRED",
            f"Kling's result link expired on {expired_on} (results are kept 30 days) before the video could be "
            f"copied ({tried} download attempt(s)); it can no longer be fetched",
        )
    if tried >= deps.settings.download_attempts:
        last = f"{attempt.error}: {(attempt.cause or '')[:300]}" if attempt is not None else "no attempt"
        return fail_download(
            job,
            deps,
            report,
            "DOWNLOAD_FAILED",
            f"the video could not be copied to S3 in {tried} attempts (the last ended with {last}); Kling's "
            "result link is valid for 30 days from completion",
        )
    deps.workflow.start(job, attempt=tried + 1)
    report.restarted += 1
    record(Metric.POLLER_JOBS, action="restarted")
    return f"download attempt {tried + 1} started"


def send_next_step(job: Job, deps: PollerDependencies, report: PollReport) -> None:
    """A QUEUED job's message (an extend chain's next step, a jobs-API job whose message was never sent)
    goes to the submit path as a reference to the job: its request is in its record. Sent twice is
    harmless: the claim makes one create of the step, the other copy finds it done."""
    deps.queue.send(job_reference(job.job_id))
    report.messages_resent += 1
    record(Metric.POLLER_JOBS, action="message_resent")


def fail_download(job: Job, deps: PollerDependencies, report: PollReport, code: str, message: str) -> str:
    failed = deps.store.transition(
        job, Transition(job.state, JobState.FAILED, {"error_code": code, "error_message": message}, by=REPAIR)
    )
    deps.announcer.job_ended(failed)
    report.failed += 1
    record(Metric.POLLER_JOBS, action="failed")
    return f"failed: {code}"


def age_s(created_at: Any, now: int) -> int:
    return max(0, now - age_from(created_at)) if created_at else 0


def age_from(timestamp: Any) -> int:
    """Epoch seconds of a record timestamp (ISO 8601, as the store writes them)."""
    try:
        return int(datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return int(time.time())


def record_run(report: PollReport) -> None:
    logger.info("poller run", extra=report.as_dict())
    record(Metric.POLL_LAG, report.max_lag_s, MetricUnit.Seconds)
    record(Metric.LIVE_JOB_AGE, report.oldest_live_s, MetricUnit.Seconds)
