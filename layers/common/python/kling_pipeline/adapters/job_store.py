"""JobsTable on DynamoDB, and the one definition of what a transition writes to a job record.

Every transition is one conditional update on (state, version), so a duplicate or late event can
never move a job backwards or twice: the losing writer gets TransitionRejectedError and treats it
as "already done". `transition_write` writes a decision (lifecycle.Transition) as it is, and is the
only place that decides what every transition sets besides (the history entry, `updated_at`, the
live-index attribute, the TTL, the announcement mark); the download
state machine's RecordOutcome sends the write this module builds (and ClearAnnouncement its
`announced_write`), checked by a test (docs/architecture.md, "The job record").
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    LinkedWriteRefusedError,
    TransitionRejectedError,
)
from kling_pipeline.lifecycle import (
    KLING_KEEPS_RESULTS_S,
    KLING_UNSETTLED,
    TERMINAL_STATES,
    Job,
    JobState,
    Transition,
    check_transition,
    utc_now_iso,
)
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.poll_schedule import SHARDS, PollSchedule, live_shard, next_poll_at, state_shard, timed_out_look_s
from kling_pipeline.slots import (
    HOLDING_STATES,
    ORDER_ATTR,
    QUEUE_ATTR,
    SLOT_POOL,
    WAITING_POOL,
    holding_changes,
    wait_queue,
)

if TYPE_CHECKING:
    from kling_pipeline.requests import JobRequest

# Non-terminal jobs carry LIVE_ATTR (their shard, poll_schedule.live_shard) and NEXT_POLL_ATTR: the sparse
# LiveJobs GSI holds exactly the live jobs, by shard, most overdue first; the poller reads it, never
# a scan. It projects only what the poller reads.
LIVE_ATTR = "live_shard"
NEXT_POLL_ATTR = "next_poll_at"
LIVE_INDEX = "LiveJobs"
TTL_ATTR = "expires_at"
# What a finished job no longer needs: a claim, and the signed CDN URL.
TERMINAL_REMOVES = ("lease_owner", "lease_expires_at", "video_url")
# A job that has just ended is still to be announced (its event, its waiting caller): it keeps its
# LiveJobs entry, due ANNOUNCE_GRACE_S later, until the announcer clears ANNOUNCE_ATTR and the entry
# with it; the poller announces what is still pending when it comes due (docs/architecture.md,
# "Announcing an end").
ANNOUNCE_ATTR = "announce_pending"
ANNOUNCE_GRACE_S = 30
ANNOUNCED_REMOVES = (ANNOUNCE_ATTR, LIVE_ATTR, NEXT_POLL_ATTR, "task_token")
UNLOGGED_ATTR = "last_unlogged_move"
# The `webhook-id`s of the verified Kling callbacks a job has had (a string set): each is acted on once.
CALLBACK_IDS_ATTR = "kling_webhook_ids"
# Every job by state, newest update first (the jobs API's listing); projects what a listing shows. Its
# partition key is STATE_SHARD_ATTR (`QUEUED#7`: poll_schedule.state_shard), written with every state, so one
# state's writes spread over SHARDS partitions; a listing reads every shard of its state.
STATE_INDEX = "JobsByState"
STATE_SHARD_ATTR = "state_shard"
# A listing's position: per shard (0..SHARDS-1), the (updated_at, job_id) of the last job it returned
# from that shard, None where the shard is read to its end; a shard not in it starts from its newest.
ShardPositions = dict[int, tuple[str, str] | None]
# A transaction cancelled by a conflict is sent again up to this many times in all, after a jittered
# backoff from CONFLICT_BACKOFF_S doubling (docs/architecture.md, "Shared counters and conflicts").
TRANSACTION_CONFLICT = "TransactionConflict"
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF_S = 0.05
# Kling's slots (slots.py): what a job holding a slot, or waiting for one, carries, and the sparse index
# of the jobs holding each pool's slots and waiting for one (adapters.slot_pools).
SLOT_INDEX = "SlotQueues"
SLOT_ATTRS = (SLOT_POOL, QUEUE_ATTR, ORDER_ATTR)
WAITING_ATTRS = (WAITING_POOL, QUEUE_ATTR, ORDER_ATTR)


class SlotKeeper(Protocol):
    """Kling's slots as the store needs them (adapters.slot_pools.SlotPools)."""

    def pool_for(self, job: Job) -> str: ...
    def take_update(self, pool: str) -> dict[str, Any]: ...
    def refill(self, pool: str, *, room: int | None = None) -> list[str]: ...


def pool_key(pool: str) -> dict[str, str]:
    """A pool's counter of Kling slots is an item of JobsTable: a `#` no job id may hold keeps it apart."""
    return {"job_id": f"pool#{pool}"}


def release_update(table_name: str, pool: str) -> dict[str, Any]:
    """The TransactWriteItems entry that gives one slot of `pool` back. Unconditional: the transition it
    goes with is conditional on the job's (state, version), which makes it once; a counter that drifted
    is the poller's recount to fix, never a reason to refuse a job's move."""
    return {
        "Update": {
            "TableName": table_name,
            "Key": pool_key(pool),
            "UpdateExpression": "ADD held :minus",
            "ExpressionAttributeValues": {":minus": -1},
        }
    }


def prompt_hash(request: JobRequest) -> str:
    return hashlib.sha256(request.prompt.encode()).hexdigest()[:16]


def finished_expiry(ttl_days: int, *, now: float | None = None) -> int:
    """DynamoDB TTL (epoch seconds) of a job that finishes now."""
    return int(time.time() if now is None else now) + ttl_days * 86400


@dataclass(frozen=True)
class TransitionWrite:
    """One transition as a DynamoDB UpdateItem: the expressions and the values they use."""

    update_expression: str
    condition_expression: str
    names: dict[str, str]
    values: dict[str, Any]

    def for_step_functions(self) -> dict[str, Any]:
        """The UpdateItem parameters in DynamoDB's typed JSON, as a `dynamodb:updateItem` task takes them."""
        serializer = TypeSerializer()
        return {
            "UpdateExpression": self.update_expression,
            "ConditionExpression": self.condition_expression,
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": {k: serializer.serialize(v) for k, v in _dynamo(self.values).items()},
        }


def announced_write(version: int, *, watched: bool = False, next_look_at: int | None = None) -> TransitionWrite:
    """The write that says an ended job (at `version`) has been announced: its pending mark, its
    LiveJobs entry and its task token go. Conditional on the mark, so it is made once; not a
    transition (no version, no history): the job's end is what it was.

    `watched`: the job is still watched (TIMED_OUT: Kling may yet finish its task), so it keeps its
    LiveJobs entry, next due at `next_look_at` (if given; else when it is due already)."""
    removed: tuple[str, ...] = ANNOUNCED_REMOVES
    sets = ""
    names = {"#version": "version"}
    values: dict[str, Any] = {":version": version}
    if watched:
        removed = tuple(key for key in ANNOUNCED_REMOVES if key not in (LIVE_ATTR, NEXT_POLL_ATTR))
        if next_look_at is not None:
            sets = "SET #due = :due "
            names["#due"] = NEXT_POLL_ATTR
            values[":due"] = next_look_at
    names |= {f"#r{i}": key for i, key in enumerate(removed)}
    return TransitionWrite(
        update_expression=sets + "REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed))),
        condition_expression="attribute_exists(#r0) AND #version = :version",
        names=names,
        values=values,
    )


def transition_write(
    job: Job,
    move: Transition,
    *,
    now: str,
    expires_at: int,
    schedule: PollSchedule | None = None,
) -> TransitionWrite:
    """What making `move` on `job` (as last read) writes: the decision's own changes (values of None are
    removed), and what every transition writes besides (its history entry, version, the live index, the TTL).

    A job entering a live state gets its `next_poll_at` (from the changes, or from `schedule`).

    A move not `logged` is not appended to `history` but kept as `last_unlogged_move`: the submit
    path's repeated claim-and-backpressure cycles would otherwise grow the item without bound
    (DynamoDB's 400 KB); their number is in `backpressure_count`."""
    if move.from_state is not job.state:
        raise InvalidTransitionError(f"a move from {move.from_state} made on a job that is {job.state}")
    if not move.by:
        raise ValueError(f"{move.from_state} -> {move.to_state}: a transition says who made it (`by`)")
    to_state, by, note = move.to_state, move.by, move.note
    changes: dict[str, Any] = dict(move.changes)
    names: dict[str, str] = {"#state": "state", "#version": "version"}
    values: dict[str, Any] = {
        ":expected_state": job.state.value,
        ":expected_version": job.version,
        ":to": to_state.value,
        ":next_version": job.version + 1,
        ":now": now,
        ":entry": [{"state": to_state.value, "at": now, "by": by} | ({"note": note} if note else {})],
        ":state_shard": state_shard(to_state.value, job.job_id),
    }
    sets = ["#state = :to", "#version = :next_version", "updated_at = :now", f"{STATE_SHARD_ATTR} = :state_shard"]
    if move.logged:
        sets.append("history = list_append(history, :entry)")
    else:
        values[":entry"] = values[":entry"][0]
        sets.append(f"{UNLOGGED_ATTR} = :entry")
    removes: list[str] = list(move.remove)
    # Kling's slots: a job leaving QUEUED leaves its pool's line; one moving to a state that occupies no
    # slot no longer holds one (JobStore.transition gives the slot back in the same transaction).
    if job.state is JobState.QUEUED and to_state is not JobState.QUEUED and job.waiting_pool:
        removes += [key for key in WAITING_ATTRS if key not in changes]
    if job.slot_pool and to_state not in HOLDING_STATES:
        removes += [key for key in SLOT_ATTRS if key not in changes]
    if to_state in TERMINAL_STATES:
        # Ended, not yet announced: kept in LiveJobs, due for the poller after the grace. (A TIMED_OUT job
        # stays there once announced too, watched for a late `succeed`: announced_write.)
        sets += [f"{TTL_ATTR} = :ttl", f"{ANNOUNCE_ATTR} = :pending", f"{LIVE_ATTR} = :shard"]
        sets.append(f"{NEXT_POLL_ATTR} = :due")
        if to_state is JobState.TIMED_OUT:
            # Watched for a late `succeed` until Kling's 30 days are over: never deleted before that.
            expires_at += KLING_KEEPS_RESULTS_S
        values |= {
            ":ttl": expires_at,
            ":pending": True,
            ":shard": live_shard(job.job_id),
            ":due": int(time.time()) + ANNOUNCE_GRACE_S,
        }
        removes.extend(TERMINAL_REMOVES)
        changes = {k: v for k, v in changes.items() if k not in (ANNOUNCE_ATTR, LIVE_ATTR, NEXT_POLL_ATTR)}
    elif job.state in TERMINAL_STATES:
        # Leaving a terminal state (TIMED_OUT -> DOWNLOADING, an operator's settling of a FAILED job): live
        # again, so back in the index, no TTL; the earlier end's announcement mark goes (the next end
        # writes its own). A caller not yet told of that end keeps its token, to be told the next one.
        sets.append(f"{LIVE_ATTR} = :shard")
        values[":shard"] = live_shard(job.job_id)
        removes += [TTL_ATTR, ANNOUNCE_ATTR]
    if to_state not in TERMINAL_STATES and NEXT_POLL_ATTR not in changes:
        if schedule is None:
            raise ValueError(f"{to_state} is live: give next_poll_at, or a poll schedule to the store")
        due = next_poll_at(
            to_state,
            now=int(time.time()),
            schedule=schedule,
            expected_finish_at=changes.get("expected_finish_at") or job.expected_finish_at,
            late_finish_at=changes.get("late_finish_at") or job.late_finish_at,
            lease_expires_at=changes.get("lease_expires_at"),
        )
        changes = changes | {NEXT_POLL_ATTR: due}
    for i, (key, value) in enumerate(changes.items()):
        if value is None:
            removes.append(key)
            continue
        names[f"#c{i}"] = key
        values[f":c{i}"] = value
        sets.append(f"#c{i} = :c{i}")
    for i, (key, amount) in enumerate(move.add.items()):
        names[f"#a{i}"] = key
        values[f":a{i}"] = amount
        values[":zero"] = 0
        sets.append(f"#a{i} = if_not_exists(#a{i}, :zero) + :a{i}")
    expression = "SET " + ", ".join(sets)
    unique_removes = list(dict.fromkeys(removes))
    if unique_removes:
        for i, key in enumerate(unique_removes):
            names[f"#r{i}"] = key
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(unique_removes)))
    condition = "#state = :expected_state AND #version = :expected_version"
    if job.state is JobState.FAILED:
        # The one FAILED job that may move: an operator's settling of a create never proven (lifecycle.py).
        names["#error_code"] = "error_code"
        values[":unsettled"] = KLING_UNSETTLED
        condition += " AND #error_code = :unsettled"
    return TransitionWrite(
        update_expression=expression,
        condition_expression=condition,
        names=names,
        values=values,
    )


class JobStore:
    """`schedule` is how live jobs are scheduled for the poller; a store without one (the download step,
    the CLI) writes terminal transitions only, or transitions that say when the job is due."""

    def __init__(
        self,
        table_name: str,
        *,
        finished_ttl_days: int = 90,
        dynamodb: Any = None,
        schedule: PollSchedule | None = None,
        slots: SlotKeeper | None = None,
    ) -> None:
        resource = dynamodb or aws_clients.resource("dynamodb")
        self._table = resource.Table(table_name)
        self.finished_ttl_days = finished_ttl_days
        self.schedule = schedule
        self.slots = slots

    # -- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise JobNotFoundError(job_id)
        return Job.model_validate(_plain(item))

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except JobNotFoundError:
            return None

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """Up to 100 jobs per BatchGetItem call (one request instead of one per job); missing ones are absent."""
        found: dict[str, Job] = {}
        table = self._table.name
        for start in range(0, len(job_ids), 100):
            keys: list[dict[str, Any]] = [{"job_id": j} for j in dict.fromkeys(job_ids[start : start + 100])]
            request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._table.meta.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(table, []):
                    job = Job.model_validate(_plain(item))
                    found[job.job_id] = job
                request = response.get("UnprocessedKeys") or {}
        return found

    def due_jobs(self, shard: str, *, due_by: int, limit: int = 100) -> list[dict[str, Any]]:
        """Live jobs of one shard whose next poll has come, most overdue first, as the index projects
        them (enough to decide what to do; read the job before changing it)."""
        # The resource's client (thread-safe, unlike the Table) takes and gives plain values: boto3
        # serializes DynamoDB types for every call made through a resource's client.
        response = self._table.meta.client.query(
            TableName=self._table.name,
            IndexName=LIVE_INDEX,
            KeyConditionExpression="#shard = :shard AND #due <= :now",
            ExpressionAttributeNames={"#shard": LIVE_ATTR, "#due": NEXT_POLL_ATTR},
            ExpressionAttributeValues={":shard": shard, ":now": due_by},
            ScanIndexForward=True,
            Limit=limit,
        )
        return [_plain(item) for item in response.get("Items", [])]

    def place_in_line(self, job: Job) -> tuple[str, int] | None:
        """The pool a waiting job (as read) waits for, and its place in that pool's line (1: the next
        to be sent when a slot frees); None for a job that is not waiting. For `status` and the jobs API:
        one count of the SlotQueues index (Query), never a scan."""
        if not job.waiting_pool or not job.slot_order:
            return None
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "IndexName": SLOT_INDEX,
            "KeyConditionExpression": "#q = :q AND #o < :before",
            "ExpressionAttributeNames": {"#q": QUEUE_ATTR, "#o": ORDER_ATTR},
            "ExpressionAttributeValues": {":q": wait_queue(job.waiting_pool), ":before": job.slot_order},
            "Select": "COUNT",
        }
        ahead = 0
        while True:
            response = self._table.meta.client.query(**kwargs)
            ahead += int(response.get("Count", 0))
            if not response.get("LastEvaluatedKey"):
                return job.waiting_pool, ahead + 1
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def claim_poll(self, job_id: str, *, due: int, next_due: int, polled: bool) -> bool:
        """Move a due job's next poll from `due` to `next_due`, if nobody did since: the one poller run
        that wins looks at the job, any other skips it. The version is left alone: a poll is not a
        transition, so a callback's transition in flight is never refused because of it."""
        sets = f"{NEXT_POLL_ATTR} = :next"
        values: dict[str, Any] = {":due": due, ":next": next_due}
        if polled:
            sets += ", poll_count = if_not_exists(poll_count, :zero) + :one"
            values |= {":zero": 0, ":one": 1}
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET " + sets,
                ConditionExpression="#due = :due AND attribute_exists(#shard)",
                ExpressionAttributeNames={"#due": NEXT_POLL_ATTR, "#shard": LIVE_ATTR},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def stop_watching(self, job: Job) -> bool:
        """Take a terminal job that was still watched (TIMED_OUT) out of the LiveJobs index, if it has not
        moved since it was read and its end has been announced (the poller announces what is pending
        only while the job is in the index). Not a transition: its state and version stay as they are."""
        try:
            self._table.update_item(
                Key={"job_id": job.job_id},
                UpdateExpression="REMOVE #shard, #due",
                ConditionExpression="#state = :state AND #version = :version AND attribute_not_exists(#pending)",
                ExpressionAttributeNames={
                    "#shard": LIVE_ATTR,
                    "#due": NEXT_POLL_ATTR,
                    "#state": "state",
                    "#version": "version",
                    "#pending": ANNOUNCE_ATTR,
                },
                ExpressionAttributeValues={":state": job.state.value, ":version": job.version},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def remember_callback(self, job_id: str, webhook_id: str) -> bool:
        """Note a verified Kling callback's `webhook-id` on its job: False when it was noted already (a
        replay, or Kling delivering it again). Not a transition (the version is left alone); the ids
        are a handful per task and go with the job's record (its TTL)."""
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="ADD #ids :ids",
                ConditionExpression="attribute_exists(#key) AND NOT contains(#ids, :id)",
                ExpressionAttributeNames={"#ids": CALLBACK_IDS_ATTR, "#key": "job_id"},
                ExpressionAttributeValues={":ids": {webhook_id}, ":id": webhook_id},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def forget_callback(self, job_id: str, webhook_id: str) -> None:
        """Undo remember_callback for a callback that could not be handled, so its redelivery is."""
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="DELETE #ids :ids",
                ConditionExpression="attribute_exists(#key)",  # else the update would make an item
                ExpressionAttributeNames={"#ids": CALLBACK_IDS_ATTR, "#key": "job_id"},
                ExpressionAttributeValues={":ids": {webhook_id}},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    # -- writes -------------------------------------------------------------------------------

    def create(
        self, job_id: str, request: JobRequest, *, by: str, state: JobState = JobState.QUEUED, **extra: Any
    ) -> tuple[Job, bool]:
        """First sight of a job: a conditional put. Returns (job, created); an existing job is returned as is."""
        check_transition(None, state)
        now = utc_now_iso()
        item: dict[str, Any] = {
            "job_id": job_id,
            "state": state.value,
            STATE_SHARD_ATTR: state_shard(state.value, job_id),
            "version": 1,
            "kind": request.kind,
            "request": request.model_dump(mode="json", exclude_none=True) | {"job_id": job_id},
            "prompt_hash": prompt_hash(request),
            "created_at": now,
            "updated_at": now,
            "history": [{"state": state.value, "at": now, "by": by}],
            "submit_attempts": 0,
            "backpressure_count": 0,
            # Read by the download state machine (JSONPath cannot read nested maps in plain form).
            "metadata_json": json.dumps(request.metadata, separators=(",", ":"), default=str),
            "task_token": request.task_token,
        }
        item |= extra
        item = {k: v for k, v in item.items() if v is not None}
        if state in TERMINAL_STATES:
            item[TTL_ATTR] = finished_expiry(self.finished_ttl_days)
        else:
            if self.schedule is None:
                raise ValueError("a live job needs a poll schedule: give one to the store")
            item[LIVE_ATTR] = live_shard(job_id)
            item[NEXT_POLL_ATTR] = next_poll_at(state, now=int(time.time()), schedule=self.schedule)
        try:
            self._table.put_item(Item=_dynamo(item), ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if _is_condition_failure(exc):
                return self.get(job_id), False
            raise
        return Job.model_validate(item), True

    def transition_write(self, job: Job, move: Transition) -> TransitionWrite:
        """The write of a decision made now, for this table's TTL (also what the workflow sends)."""
        return transition_write(
            job,
            move,
            now=utc_now_iso(),
            expires_at=finished_expiry(self.finished_ttl_days),
            schedule=self.schedule,
        )

    def transition(self, job: Job, move: Transition) -> Job:
        """Make the decision `move` on `job` (as last read), if nobody moved it since. Returns the job as written.

        Its `linked` writes (TransactWriteItems entries, plain values, such as the units a task was
        charged: adapters.ledger) go in the same transaction: all or none. A linked write refused by its
        own condition raises LinkedWriteRefusedError, and the job is left as it was.

        Kling's slots are kept here, for every decision alike (docs/architecture.md, "Kling's slots"): a
        claim of a QUEUED job takes a slot of its pool (first linked write; refused when the pool is
        full), and any move of a job holding a slot to a state that occupies none gives it back, in the
        same transaction, and hands it on to the pool's next waiting job at once (`slots.refill`)."""
        move, released = self._with_slots(job, move)
        write = self.transition_write(job, move)
        to_state = move.to_state
        if move.linked:
            moved = self._transact(job, write, [dict(entry) for entry in move.linked])
            record(Metric.JOB_TRANSITIONS, to=to_state.value)
            if released:
                self._hand_on(released)
            return moved
        try:
            result = self._table.update_item(
                Key={"job_id": job.job_id},
                UpdateExpression=write.update_expression,
                ConditionExpression=write.condition_expression,
                ExpressionAttributeNames=write.names,
                ExpressionAttributeValues=_dynamo(write.values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
                current = JobState(old["state"]["S"]) if "state" in old else None
                raise TransitionRejectedError(job.job_id, job.state, current) from exc
            raise
        record(Metric.JOB_TRANSITIONS, to=to_state.value)
        return Job.model_validate(_plain(result["Attributes"]))

    def _with_slots(self, job: Job, move: Transition) -> tuple[Transition, str | None]:
        """`move` with the slot it takes or gives back, and the pool of a slot it gives back."""
        if job.slot_pool and move.to_state not in HOLDING_STATES:
            release = release_update(self._table.name, job.slot_pool)
            return replace(move, linked=(*move.linked, release)), job.slot_pool
        if (
            self.slots is not None
            and move.from_state is JobState.QUEUED
            and move.to_state is JobState.SUBMITTING
            and job.request.get("provider", "kling") == "kling"  # fal queues, never refuses: no Kling slot
        ):
            pool = self.slots.pool_for(job)
            take = self.slots.take_update(pool)
            return replace(
                move, changes={**move.changes, **holding_changes(job, pool)}, linked=(take, *move.linked)
            ), None
        return move, None

    def _hand_on(self, pool: str) -> None:
        """A slot was given back: the pool's next waiting job is sent at once. Best effort after the
        move is written: if it fails, the poller's refill (each run) sends the job."""
        if self.slots is None:
            return
        try:
            self.slots.refill(pool)
        except Exception:
            logger.exception("could not hand a freed slot on; the poller will", extra={"pool": pool})

    def _transact(self, job: Job, write: TransitionWrite, linked: list[dict[str, Any]]) -> Job:
        """The transition and its linked writes in one transaction. DynamoDB cancels a transaction that
        meets another on one of its items (TransactionConflict: the shared cost and budget counters);
        cancelled is all or none, so the same transaction is sent again after a jittered backoff. Its
        condition on (state, version) still holds it to once: if another writer moved the job
        meanwhile, the retry fails that condition and the move is TransitionRejectedError as ever."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return self._transact_once(job, write, linked)
            except ClientError as exc:
                if not _is_conflict(exc) or attempt == CONFLICT_ATTEMPTS:
                    if _is_conflict(exc):
                        record(Metric.TRANSACTION_CONFLICTS, outcome="gave_up")
                    raise
                record(Metric.TRANSACTION_CONFLICTS, outcome="retried")
                time.sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _transact_once(self, job: Job, write: TransitionWrite, linked: list[dict[str, Any]]) -> Job:
        update = {
            "TableName": self._table.name,
            "Key": {"job_id": job.job_id},
            "UpdateExpression": write.update_expression,
            "ConditionExpression": write.condition_expression,
            "ExpressionAttributeNames": write.names,
            "ExpressionAttributeValues": _dynamo(write.values),
        }
        try:
            # The resource's client serializes plain values, like the table's own calls.
            self._table.meta.client.transact_write_items(TransactItems=[{"Update": update}, *linked])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                current = self.find(job.job_id)
                raise TransitionRejectedError(job.job_id, job.state, current.state if current else None) from exc
            refused = [i for i, code in enumerate(reasons[1:]) if code == "ConditionalCheckFailed"]
            if refused:
                raise LinkedWriteRefusedError(job.job_id, refused[0]) from exc
            raise
        # A transaction returns no item: read the job as written (a later move may already show).
        return self.get(job.job_id)

    def mark_announced(self, job: Job) -> bool:
        """Clear the announcement mark of an ended job (as `job` shows it): False when it was already
        cleared (another announcer got there first) or the job has moved since. A TIMED_OUT job stays
        watched (in LiveJobs, next due at its rare look: poll.settle_timed_out); its watch ends by
        stop_watching."""
        watched = job.state is JobState.TIMED_OUT
        next_look = int(time.time()) + timed_out_look_s(self.schedule) if watched and self.schedule else None
        write = announced_write(job.version, watched=watched, next_look_at=next_look)
        try:
            self._table.update_item(
                Key={"job_id": job.job_id},
                UpdateExpression=write.update_expression,
                ConditionExpression=write.condition_expression,
                ExpressionAttributeNames=write.names,
                ExpressionAttributeValues=_dynamo(write.values),
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    # -- the jobs API ---------------------------------------------------------------------------

    def jobs_in_state(
        self,
        state: JobState,
        *,
        since: str | None = None,
        limit: int = 50,
        start_key: ShardPositions | None = None,
    ) -> tuple[list[dict[str, Any]], ShardPositions | None]:
        """Jobs in `state` updated at or after `since`, newest first, from the JobsByState index (never a
        scan): every shard of the state read from its position (in parallel), merged newest first. The
        projected attributes of up to `limit` jobs, and each shard's position to go on from (None at
        the end of every shard)."""
        positions: ShardPositions = dict(start_key) if start_key else {}
        shards = [n for n in range(SHARDS) if n not in positions or positions[n] is not None]
        with ThreadPoolExecutor(max_workers=8) as pool:
            pages = dict(
                zip(
                    shards,
                    pool.map(lambda n: self._shard_page(state, n, since, limit, positions.get(n)), shards),
                    strict=True,
                )
            )
        merged = sorted(
            ((item, n) for n, (items, _) in pages.items() for item in items),
            # By time alone: a stable sort keeps each shard's own order among equal times, so what is
            # taken of a shard is always the start of its page.
            key=lambda pair: str(pair[0]["updated_at"]),
            reverse=True,
        )[:limit]
        taken: dict[int, int] = {}
        for _, n in merged:
            taken[n] = taken.get(n, 0) + 1
        for n, (items, more) in pages.items():
            count = taken.get(n, 0)
            if count:
                last = items[count - 1]
                positions[n] = (str(last["updated_at"]), str(last["job_id"]))
            if count == len(items) and not more:
                positions[n] = None  # read to its end
        at_end = all(positions.get(n, "") is None for n in range(SHARDS))
        return [item for item, _ in merged], (None if at_end else positions)

    def _shard_page(
        self, state: JobState, shard: int, since: str | None, limit: int, after: tuple[str, str] | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` jobs of one shard of `state`, newest first, after `after`; and whether there may be more."""
        partition = f"{state.value}#{shard}"  # poll_schedule.state_shard of any job of this shard
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "IndexName": STATE_INDEX,
            "KeyConditionExpression": "#shard = :shard" + (" AND updated_at >= :since" if since else ""),
            "ExpressionAttributeNames": {"#shard": STATE_SHARD_ATTR},
            "ExpressionAttributeValues": {":shard": partition} | ({":since": since} if since else {}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                STATE_SHARD_ATTR: partition,
                "updated_at": after[0],
                "job_id": after[1],
            }
        # The resource's client is thread-safe (the Table is not) and takes plain values.
        response = self._table.meta.client.query(**kwargs)
        return [_plain(item) for item in response.get("Items", [])], bool(response.get("LastEvaluatedKey"))

    def discard_unsent(self, job: Job) -> bool:
        """Forget a job the jobs API has just created but could not queue, so that the caller's retry
        starts afresh. Only the record as created (QUEUED, version 1) is deleted: a job the submit path
        has touched was queued after all. True when it was deleted."""
        try:
            self._table.delete_item(
                Key={"job_id": job.job_id},
                ConditionExpression="#state = :queued AND #version = :first",
                ExpressionAttributeNames={"#state": "state", "#version": "version"},
                ExpressionAttributeValues={":queued": JobState.QUEUED.value, ":first": 1},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True


@per_container
def job_store(
    table_name: str, finished_ttl_days: int, schedule: PollSchedule | None = None, slots: SlotKeeper | None = None
) -> JobStore:
    return JobStore(table_name, finished_ttl_days=finished_ttl_days, schedule=schedule, slots=slots)


def _is_conflict(exc: ClientError) -> bool:
    """A transaction cancelled only because another was in flight on one of its items."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
    return TRANSACTION_CONFLICT in reasons and all(code in ("None", TRANSACTION_CONFLICT) for code in reasons)


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _dynamo(value: Any) -> Any:
    """Floats are not allowed by boto3's DynamoDB serializer: store them as Decimal."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _plain(value: Any) -> Any:
    """Decimals back to int/float so pydantic and JSON see ordinary numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
