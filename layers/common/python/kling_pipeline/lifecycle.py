"""The job's life in one place: its states, the transitions between them, and what an observed Kling
task means for a job.

Every observer of a Kling task (the callback, the submit path's reconciliation and the stale-job
poller) calls `advance_job`, so they can never disagree about what a task means. Every decision about
a job's state, here and in the modules that make the others (claims, submit, poller, api, download), is
one `Transition` value, and a `JobWriter` (adapters.job_store.JobStore) writes exactly it, one
conditional update on (state, version). The table of states and transitions is in
docs/architecture.md, "A job's life".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kling_pipeline.errors import InvalidTransitionError, TransitionRejectedError
from kling_pipeline.job_ids import internal_name
from kling_pipeline.observability import Metric, logger, record

if TYPE_CHECKING:  # annotations only: the download step, the API and webhooks never parse a Kling task
    from kling_pipeline.kling_task import KlingTask, KlingVideo


class JobState(StrEnum):
    """A job's states, in the order a successful job passes them; terminal ones never change again."""

    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    SUBMITTED = "SUBMITTED"
    PROCESSING = "PROCESSING"
    DOWNLOADING = "DOWNLOADING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"  # by the jobs API, only before anything was sent to Kling

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


# Kinds whose task extends no earlier video: a task carrying a parent video is of another kind.
KINDS_WITHOUT_PARENT = frozenset({"text2video", "image2video"})
TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED})
# States whose Kling task may still succeed: a TIMED_OUT job has ended for its caller, but Kling may
# yet finish (and bill) the task it accepted, and that video is collected (docs/architecture.md).
AWAITING_KLING = frozenset({JobState.SUBMITTED, JobState.PROCESSING, JobState.TIMED_OUT})

# (from, to): every move a job may make. None is "no job yet". SUBMITTING -> SUBMITTING re-claims an
# expired lease; SUBMITTING -> QUEUED is backpressure (or parking), not failure.
ALLOWED_TRANSITIONS: frozenset[tuple[JobState | None, JobState]] = frozenset(
    {
        (None, JobState.QUEUED),
        (None, JobState.FAILED),  # a message that fails validation, recorded under its job id
        (JobState.QUEUED, JobState.SUBMITTING),
        (JobState.SUBMITTING, JobState.SUBMITTING),
        (JobState.SUBMITTING, JobState.SUBMITTED),
        (JobState.SUBMITTING, JobState.QUEUED),
        (JobState.SUBMITTED, JobState.PROCESSING),
        (JobState.SUBMITTED, JobState.DOWNLOADING),
        (JobState.PROCESSING, JobState.DOWNLOADING),
        (JobState.DOWNLOADING, JobState.COMPLETED),
        (JobState.DOWNLOADING, JobState.QUEUED),  # an extend chain: a step stored, the next one queued
        (JobState.SUBMITTED, JobState.TIMED_OUT),
        (JobState.PROCESSING, JobState.TIMED_OUT),
        # Kling finished a task after the job timeout: the video is paid for, so it is collected.
        (JobState.TIMED_OUT, JobState.DOWNLOADING),
        # An operator settles a job whose create could not be proven either way (KLING_UNSETTLED, the only
        # FAILED job that may move: the job store's condition): the task found in Kling's console is
        # recorded, or the job is released to be created (`kling-pipeline settle`).
        (JobState.FAILED, JobState.SUBMITTED),
        (JobState.FAILED, JobState.QUEUED),
        (
            JobState.QUEUED,
            JobState.CANCELLED,
        ),  # never from SUBMITTING: a create may be in flight, and Kling cannot cancel
        # A fal job still in fal's queue, cancelled there (fal's PUT cancel_url answered 202): Kling's own
        # door has no cancel, so only a job of another door makes these moves (api.cancel_at_provider).
        (JobState.SUBMITTED, JobState.CANCELLED),
        (JobState.PROCESSING, JobState.CANCELLED),
    }
    | {(state, JobState.FAILED) for state in JobState if state not in TERMINAL_STATES}
)


# The error code of a job failed because no answer could prove whether Kling made its task (claims.py).
KLING_UNSETTLED = "KLING_UNSETTLED"
# Kling deletes a task's results this long after it finished: until then its video can be fetched.
KLING_KEEPS_RESULTS_S = 30 * 86400


def check_transition(from_state: JobState | None, to_state: JobState) -> None:
    if (from_state, to_state) not in ALLOWED_TRANSITIONS:
        raise InvalidTransitionError(f"{from_state} -> {to_state} is not a job transition")


def utc_now_iso() -> str:
    """Timestamps of the job record: UTC, milliseconds, `Z` (the form Step Functions' EnteredTime has)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    state: JobState
    at: str
    by: str
    note: str | None = None


class Job(BaseModel):
    """A job as stored in JobsTable (the record's shape is written by adapters.job_store)."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    state: JobState
    version: int
    kind: str
    request: dict[str, Any]
    created_at: str
    updated_at: str
    history: list[HistoryEntry] = Field(default_factory=list)
    task_id: str | None = None
    kling_status: str | None = None
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    submit_attempts: int = 0
    backpressure_count: int = 0
    claimed_at: int | None = None  # epoch s of the latest claim
    first_claimed_at: int | None = None  # epoch s of the first: no task of this job can be older
    needs_reconcile: bool = False  # an earlier attempt may have made a task: look before creating
    unsettled_since: int | None = None  # epoch s from which a task may exist unseen (query lag)
    unreadable_answers: int = 0  # answers from Kling this version could not read, in a row
    submitted_at: int | None = None  # epoch s when Kling accepted the task: the job timeout counts from it
    expected_finish_at: int | None = None  # epoch s when a job like it usually finishes (poll_schedule.py)
    late_finish_at: int | None = None  # epoch s by when nearly every job like it has finished (the same)
    next_poll_at: int | None = None  # epoch s when the stale-job poller looks at it next (live jobs only)
    poll_count: int = 0  # polls that found its task still running
    announce_pending: bool = False  # ended, and its end not yet announced in full (event, waiting caller)
    error_code: str | None = None
    error_message: str | None = None
    video_url: str | None = None
    units_charged: str | None = None  # Kling's final_unit_deduction of the job's task
    # What the task cost in cash, per currency ({"USD": "0.84"}): the newer design's billing[] (kling_task.py).
    cash_charged: dict[str, str] | None = None
    reserved_units: float | None = None  # what the job holds of reserved_day's budget (adapters.ledger)
    reserved_usd: float | None = None  # a job billed in USD (fal): what it holds of reserved_day's USD budget
    reserved_day: str | None = None
    held_for: str | None = None  # why a QUEUED job waits, beyond backpressure ("daily budget reached")
    s3_uri: str | None = None
    # An extend chain (request.extend): the step under way (1 is the base video), the steps finished
    # (each stored: extend_chain.step_record), and whether the step's message is on its way.
    step: int = 1
    steps: list[dict[str, Any]] = Field(default_factory=list)
    awaiting_message: bool = False
    # Written by name (adapters.job_store at creation, the transitions' changes), read back here.
    prompt_hash: str | None = None  # of the request's prompt: stored with the video (object metadata)
    metadata_json: str | None = None  # the request's `metadata`, as JSON: given back with the job's end
    task_token: str | None = None  # a waiting caller's Step Functions token (removed once announced)
    model_name: str | None = None  # the model Kling was asked for (claims.record_submitted)
    kling_finished_at: int | None = None  # epoch ms when Kling finished the step's task
    kling_video_id: str | None = None  # the step's Kling video: the next step of a chain extends it
    # Another provider's door (providers/, doors.py): its task's reference as stored (TaskRef.as_record),
    # the endpoint asked, and when a create that proved nothing was sent (never sent again).
    provider_task: dict[str, Any] | None = None
    provider_endpoint: str | None = None
    provider_unsettled_at: int | None = None
    # Epoch s when the provider deletes the video its task made, when that is sooner than Kling's 30 days
    # (Replicate: an hour after the prediction ended): past it the video can no longer be copied.
    video_expires_at: int | None = None
    video_duration: str | None = None  # seconds, as Kling says them ("5.1")
    video_size: int | None = None  # bytes of the stored video
    sha256: str | None = None  # of the stored video
    refused_since: int | None = None  # epoch s of a create's first 1201 with no task found (claims.REFUSED_SINCE)
    # Kling's slots (slots.py, adapters.slot_pools): the pool whose slot the job holds, or (QUEUED) waits
    # for, and its entry in the SlotQueues index (its place in the pool's line while it waits).
    slot_pool: str | None = None
    waiting_pool: str | None = None
    slot_order: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def results_expire_at(self) -> int | None:
        """Epoch s when Kling deletes the step's video (KLING_KEEPS_RESULTS_S after its task finished,
        `kling_finished_at` in ms), or sooner the provider that made it (`video_expires_at`); None while
        that is not known."""
        if self.video_expires_at is not None:
            return self.video_expires_at
        finished_ms = self.kling_finished_at
        return finished_ms // 1000 + KLING_KEEPS_RESULTS_S if finished_ms else None

    @property
    def total_steps(self) -> int:
        """1, or 1 + the extend steps of an extend chain."""
        return 1 + len(self.request.get("extend") or [])

    @property
    def is_chain(self) -> bool:
        return self.total_steps > 1

    @property
    def step_label(self) -> str:
        """ "step 2 of 3: " in a chain job's messages; "" for a single video."""
        return f"step {self.step} of {self.total_steps}: " if self.is_chain else ""

    @property
    def task_kind(self) -> str:
        """The kind of the step's Kling task, whose endpoint every call about it uses."""
        return self.kind if self.step == 1 else "video-extend"

    @property
    def task_model(self) -> str | None:
        """The model of the step's task as the job knows it (the one recorded with its task, else the
        request's), which says the design every call about the task takes (capabilities.design_of).
        None: an extend step, or a request left to the deployment's default model."""
        if self.step != 1:
            return None
        return self.model_name or self.request.get("model") or None

    @property
    def external_task_id(self) -> str:
        """What the step's task carries as external_task_id: the job id, then `<job_id>-s<n>` padded to
        65 characters (job_ids.internal_name), so each step is created exactly once, found by
        reconciliation under its own id, and never under another job's: a producer's job `shot-s2` and
        chain `shot`'s step 2 (`shot-s2___...`) cannot meet. Kling documents no length limit for it."""
        return self.job_id if self.step == 1 else internal_name(self.job_id, f"s{self.step}")

    @property
    def parent_video_id(self) -> str | None:
        """The video the step's task extends: the previous step's, or a video-extend request's own."""
        if self.step > 1:
            video = self.steps[-1].get("video_id") if self.steps else None
        else:
            video = self.request.get("video_id") if self.kind == "video-extend" else None
        return str(video) if video else None

    def owns_task(self, task: KlingTask) -> bool:
        """A task Kling found under the step's external id is the step's only when it carries that id and,
        for an extend, extends the step's parent video: another job's task (or one made outside the
        pipeline under this id) is never adopted. Kling's task object does not name its kind; the endpoint
        asked (the step's kind) does, and a parent video on a task whose kind has none marks another kind."""
        info = task.task_info
        if info.external_task_id != self.external_task_id:
            return False
        parent = (info.parent_video or {}).get("id")
        if self.task_kind in KINDS_WITHOUT_PARENT:
            return parent is None
        expected = self.parent_video_id
        # A parent Kling does not show cannot be checked; one it shows must be the step's.
        return expected is None or parent is None or parent == expected

    @property
    def total_units(self) -> str | None:
        """Kling's units for the job: every stored step's, and the step under way's once charged."""
        counted = [s.get("units_charged") for s in self.steps]
        if self.units_charged is not None and not any(s.get("step") == self.step for s in self.steps):
            counted.append(self.units_charged)
        known = [float(u) for u in counted if u is not None]
        if not known:
            return None
        total = sum(known)
        return f"{total:g}"


# ---------------------------------------------------------------------------------------------
# The ports a transition needs (implemented by adapters.job_store and adapters.download_workflow)


class JobWriter(Protocol):
    """Writes a decision (adapters.job_store.JobStore): exactly the `Transition`, or TransitionRejectedError."""

    def transition(self, job: Job, move: Transition) -> Job: ...


class GenerationLearner(Protocol):
    def learn(self, job: Job, task: KlingTask) -> None: ...


class DownloadStarter(Protocol):
    def start(self, job: Job, attempt: int = 1) -> bool: ...


class EndAnnouncer(Protocol):
    """Tells the world a job has ended (adapters.announcements): its event, its waiting caller. False
    when not all of it was done (the job stays marked, and the poller announces it again)."""

    def job_ended(self, job: Job) -> bool: ...


class ChargeLedger(Protocol):
    """Counts what Kling charged (adapters.ledger): the writes that go in the transition's transaction."""

    def charge_updates(
        self, job: Job, units: float | None, cash: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]: ...


class TaskObservers(Protocol):
    """What applying an observed task needs: every observer's dependencies (the callback's, the
    poller's, the submit path's reconciliation) have it."""

    @property
    def store(self) -> JobWriter: ...
    @property
    def workflow(self) -> DownloadStarter: ...
    @property
    def ledger(self) -> ChargeLedger: ...
    @property
    def announcer(self) -> EndAnnouncer: ...
    @property
    def estimates(self) -> GenerationLearner: ...


# ---------------------------------------------------------------------------------------------
# What an observed task means


# What a finished claim no longer holds: every move out of SUBMITTING but a re-claim removes them.
LEASE = ("lease_owner", "lease_expires_at")


@dataclass(frozen=True)
class Transition:
    """One decision about a job, as data: move it from `from_state` (the state it was read in) to
    `to_state`, made `by` someone (its history entry), setting `changes` (a value of None removes the
    attribute), removing `remove`, adding `add` to counters, with `note` in its history entry (or, not
    `logged`, kept as its last unlogged move), and `linked` writes (TransactWriteItems entries: the
    ledger's reservation, release or charge) made in the same transaction. Every decision in the
    package returns one; the job store writes exactly it (adapters.job_store.JobStore.transition, and
    `transition_write` for the download workflow's write), and what every transition writes besides
    (history, version, the live index, the TTL) is the store's alone. Only allowed moves can be made."""

    from_state: JobState
    to_state: JobState
    changes: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    by: str = ""  # an observed task's decision (observe_task) is given its observer by advance_job
    remove: tuple[str, ...] = ()
    add: Mapping[str, int] = field(default_factory=dict)
    logged: bool = True
    linked: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_transition(self.from_state, self.to_state)

    @property
    def starts_download(self) -> bool:
        return self.to_state is JobState.DOWNLOADING

    @property
    def ends(self) -> bool:
        return self.to_state in TERMINAL_STATES


def observe_task(job: Job, task: KlingTask) -> Transition | None:
    """Decide what Kling's view of a task means for the job; None when it changes nothing.

    `task` must be authoritative (a GET from Kling, or a callback Kling signed) for `succeed` and `failed`;
    a callback body may be passed for `submitted` and `processing`, which start nothing that costs money.
    Duplicates, stale and out-of-order observations give None: a job never moves backwards.
    """
    if job.task_id is not None and task.task_id != job.task_id:
        return None  # not this job's task: a lying or misrouted observation changes nothing
    status = task.task_status
    if status == "processing" and job.state is JobState.SUBMITTED:
        return Transition(JobState.SUBMITTED, JobState.PROCESSING, {"kling_status": status})
    if status == "succeed" and job.state is JobState.TIMED_OUT:
        video = task.first_video
        if video is None:
            return None  # nothing to collect: the job stays as it ended
        return Transition(
            JobState.TIMED_OUT,
            JobState.DOWNLOADING,
            succeeded(task, video)
            # The timeout's reason no longer holds. Its caller was told when the timeout was announced (the
            # token went then); a caller not yet told keeps its token, and is told how the job ends.
            | {"error_code": None, "error_message": None},
            note="Kling finished the task after the job timeout: collecting the video it charged for",
        )
    if status == "succeed" and job.state in (JobState.SUBMITTED, JobState.PROCESSING):
        video = task.first_video
        if video is None:
            return Transition(
                job.state,
                JobState.FAILED,
                {
                    "kling_status": status,
                    "kling_finished_at": task.updated_at,
                    # Kling ended (and may have billed) the task: its charge corrects the reservation.
                    "units_charged": task.final_unit_deduction,
                    "cash_charged": task.cash_charged,
                    "error_code": "KLING_NO_VIDEO",
                    "error_message": (
                        f"{job.step_label}Kling reported success but returned no video; "
                        "send the request again with a new job_id"
                    ),
                },
            )
        return Transition(job.state, JobState.DOWNLOADING, succeeded(task, video))
    if status == "failed" and job.state in (JobState.SUBMITTED, JobState.PROCESSING):
        return Transition(
            job.state,
            JobState.FAILED,
            {
                "kling_status": status,
                "kling_finished_at": task.updated_at,
                "error_code": "KLING_TASK_FAILED",
                "error_message": (
                    f"{job.step_label}Kling could not generate the video: {task.task_status_msg or 'no reason given'}"
                ),
                "units_charged": task.final_unit_deduction,
                "cash_charged": task.cash_charged,
            },
        )
    return None


def succeeded(task: KlingTask, video: KlingVideo) -> dict[str, Any]:
    """What a confirmed `succeed` records on the job: where the video is, and what Kling charged."""
    return {
        "kling_status": task.task_status,
        "kling_finished_at": task.updated_at,
        "video_url": video.url,
        "kling_video_id": video.id,
        "video_duration": video.duration,
        "units_charged": task.final_unit_deduction,
        "cash_charged": task.cash_charged,
    }


def advance_job(
    job: Job,
    task: KlingTask,
    deps: TaskObservers,
    *,
    by: str,
    next_poll_at: int | None = None,
    record_also: Mapping[str, Any] | None = None,
) -> tuple[Job, str]:
    """Apply what Kling says about a task: the one path every observer takes, so a task seen by any of
    them moves the job the same way, starts the download exactly once, and counts the units Kling
    charged exactly once (in the same transaction as the move that records them). Returns the job as
    it now stands and what happened, in words for logs and answers. A move that ends the job (Kling
    failed the task) is announced here, whoever saw it.

    `deps.estimates` learns how long the task took once Kling has finished it (the poller's cadence
    learns from it); `next_poll_at` overrides when a job still running is next due (the poller sets its own).
    `record_also`: written by the same move (a fal request adopted from its webhook: its id and reference)."""
    decision = observe_task(job, task)
    if decision is None:
        return job, "nothing to do"
    units = charged_units(decision)
    cash = decision.changes.get("cash_charged")
    move = replace(
        decision,
        by=by,
        changes={**decision.changes}
        | ({"next_poll_at": next_poll_at} if next_poll_at and not decision.ends else {})
        | dict(record_also or {}),
        linked=tuple(deps.ledger.charge_updates(job, units, cash)) if units is not None or cash else (),
    )
    try:
        moved = deps.store.transition(job, move)
    except TransitionRejectedError:
        return job, "already handled"
    if units is not None:
        model, mode = model_and_mode(moved)
        record(Metric.UNITS_CHARGED, units, model=model, mode=mode)
    if task.task_status == "succeed":
        deps.estimates.learn(moved, task)
    if decision.starts_download:
        deps.workflow.start(moved)
    if moved.is_terminal:
        deps.announcer.job_ended(moved)
    return moved, f"{decision.from_state} -> {decision.to_state}"


def charged_units(decision: Transition) -> float | None:
    """The units Kling says it charged for the task a decision ends (its `final_unit_deduction`, a
    string); None when the decision records no charge, or Kling's figure is missing or not a number
    (logged). Unknown is not zero: with None the job's budget reservation stays as it is (until its
    day ends) instead of being given back for a task Kling may have billed."""
    if "units_charged" not in decision.changes:
        return None
    raw = decision.changes["units_charged"]
    if raw is None:
        if not decision.changes.get("cash_charged"):  # a cash charge has no units, and says so
            logger.warning("Kling gave no final_unit_deduction; the reservation is kept, nothing counted")
        return None
    try:
        units = float(raw)
    except ValueError:
        logger.warning("Kling's final_unit_deduction is not a number; not counted", extra={"value": str(raw)[:40]})
        return None
    return units if math.isfinite(units) and units >= 0 else None


def model_and_mode(job: Job) -> tuple[str, str]:
    """The model and mode a job's task ran with, as costs are reported by."""
    request = job.request
    model = str(job.model_name or request.get("model") or "default")
    return model, str(request.get("mode") or "std")


def public_step(step: dict[str, Any]) -> dict[str, Any]:
    """A stored step of an extend chain as events, answers and the CLI show it."""
    return {k: step.get(k) for k in ("step", "s3_uri", "size", "sha256", "duration", "units_charged")}
