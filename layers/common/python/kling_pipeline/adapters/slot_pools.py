"""Kling's slots per pool, counted in JobsTable, and the line of jobs waiting for one (slots.py).

- A pool's counter is an item of JobsTable under `pool#<pool>` (a `#` no job id may hold): `held`
  against `limit`. A slot is taken by a conditional increment in the claim's own transaction and given
  back by a decrement in the transaction of the move that ends the task's time at Kling
  (adapters.job_store), so the job's (state, version) condition makes each exactly once.
- The sparse SlotQueues index (`slot_queue`, `slot_order`) holds, per pool, the jobs holding a slot
  (`held#<pool>`, by job id: the poller's recount), the jobs waiting for one (`wait#<pool>`, by
  priority then arrival: slots.waiting_order), and the pools themselves (`pools`, by name).
- Whoever frees a slot hands it on at once (`refill`): the head of the line is taken off it by a
  conditional write (so two releasers never send the same job) and its message goes to the submit
  path. The poller does the same each run as the backstop, restores lowered limits and recounts.

docs/architecture.md, "Kling's slots".
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.adapters.job_queue import JobQueue
from kling_pipeline.adapters.job_store import SLOT_INDEX, pool_key
from kling_pipeline.job_ids import job_reference
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.observability import logger
from kling_pipeline.slots import (
    ORDER_ATTR,
    QUEUE_ATTR,
    WAITING_POOL,
    Pool,
    PoolLimits,
    held_queue,
    pool_of,
    wait_queue,
    waiting_changes,
)

POOLS = "pools"
# A job sent to the submit path by a refill carries `awaiting_message` and is due for the poller this
# much later: if its message is lost, the poller sends it again (poller.settle_one).
SENT_DUE_S = 60


class SlotPools:
    """`queue`: where a refill sends the jobs it takes off the line (None: no refill here, the poller's
    does it); `default_model`: the pool of a request that names no model (the submit path's)."""

    def __init__(
        self,
        table_name: str,
        limits: PoolLimits,
        *,
        queue: JobQueue | None = None,
        default_model: str = "",
        dynamodb: Any = None,
    ) -> None:
        self._table = (dynamodb or aws_clients.resource("dynamodb")).Table(table_name)
        self.table_name = table_name
        self.limits = limits
        self.queue = queue
        self.default_model = default_model

    def pool_for(self, job: Job) -> str:
        return pool_of(job, self.default_model)

    # -- taking, noticing the account is shared -------------------------------------------------------

    def take_update(self, pool: str) -> dict[str, Any]:
        """The TransactWriteItems entry that takes a slot of `pool` only if it has one free: one conditional
        increment, so any number of submitters at once never hold more than the limit (nor C)."""
        c = self.limits.of(pool)
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": pool_key(pool),
                "UpdateExpression": "SET #limit = if_not_exists(#limit, :c), #q = :pools, #o = :pool ADD held :one",
                "ConditionExpression": "attribute_not_exists(held) OR (held < #limit AND held < :c)",
                "ExpressionAttributeNames": {"#limit": "limit", "#q": QUEUE_ATTR, "#o": ORDER_ATTR},
                "ExpressionAttributeValues": {":c": c, ":one": 1, ":pools": POOLS, ":pool": pool},
            }
        }

    def shared_account(self, pool: str, *, now: int | None = None) -> None:
        """Kling answered 1303 to a create of a job that holds a slot of `pool`: the account runs tasks
        the pipeline does not hold, so the limit drops to what the pipeline holds besides that job (the
        job gives its slot back next). Its quiet period starts again either way."""
        stamp = int(time.time() if now is None else now)
        names = {"#limit": "limit"}
        try:
            self._table.update_item(
                Key=pool_key(pool),
                UpdateExpression="SET #limit = held - :one, quiet_since = :now",
                ConditionExpression="attribute_exists(held) AND #limit >= held",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":one": 1, ":now": stamp},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            # Already lower than that (another 1303 got there first): only the quiet period restarts.
            self._table.update_item(
                Key=pool_key(pool),
                UpdateExpression="SET quiet_since = :now",
                ConditionExpression="attribute_exists(held)",
                ExpressionAttributeValues={":now": stamp},
            )
        logger.warning("Kling said 1303 below the pool's limit: the account is shared", extra={"pool": pool})

    # -- reading ---------------------------------------------------------------------------------

    def pool(self, pool: str) -> Pool | None:
        item = self._table.get_item(Key=pool_key(pool), ConsistentRead=True).get("Item")
        return None if item is None else self._pool(pool, item)

    def pools(self) -> list[Pool]:
        """Every pool a slot was ever taken in (from the index: never a scan), as stored now."""
        names = [str(item[ORDER_ATTR]) for item in self._query(POOLS)]
        return [p for p in (self.pool(name) for name in names) if p is not None]

    def _pool(self, name: str, item: dict[str, Any]) -> Pool:
        drift = item.get("drift")
        return Pool(
            name=name,
            held=int(item.get("held", 0)),
            limit=int(item.get("limit", self.limits.of(name))),
            configured=self.limits.of(name),
            quiet_since=int(item.get("quiet_since", 0)),
            drift=None if drift is None else int(drift),
        )

    def line(self, pool: str, *, limit: int = 100) -> list[str]:
        """The ids of the jobs waiting for a slot of `pool`, next first (up to `limit`)."""
        return [str(item["job_id"]) for item in self._query(wait_queue(pool), limit=limit)]

    def holders(self, pool: str) -> int:
        return self._count(held_queue(pool))

    def waiting(self, pool: str) -> int:
        """How many jobs wait in `pool`'s line (a count of the index, never a scan)."""
        return self._count(wait_queue(pool))

    def _query(self, queue: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": SLOT_INDEX,
            "KeyConditionExpression": "#q = :q",
            "ExpressionAttributeNames": {"#q": QUEUE_ATTR},
            "ExpressionAttributeValues": {":q": queue},
        }
        if limit is not None:
            kwargs["Limit"] = limit
        response = self._table.meta.client.query(**kwargs)
        return list(response.get("Items", []))

    def _count(self, queue: str) -> int:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": SLOT_INDEX,
            "KeyConditionExpression": "#q = :q",
            "ExpressionAttributeNames": {"#q": QUEUE_ATTR},
            "ExpressionAttributeValues": {":q": queue},
            "Select": "COUNT",
        }
        total = 0
        while True:
            response = self._table.meta.client.query(**kwargs)
            total += int(response.get("Count", 0))
            if not response.get("LastEvaluatedKey"):
                return total
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- waiting and handing on ------------------------------------------------------------------

    def mark_waiting(self, job: Job, pool: str) -> Job | None:
        """Put a QUEUED job (as read: its version) in `pool`'s line. Not a transition: it stays QUEUED,
        and its message is done with (a refill sends it another). Returns the job as now marked; None
        if it moved meanwhile."""
        changes = waiting_changes(job, pool)
        try:
            self._table.update_item(
                Key={"job_id": job.job_id},
                UpdateExpression="SET #w = :w, #q = :q, #o = :o REMOVE awaiting_message",
                ConditionExpression="#state = :queued AND #version = :version",
                ExpressionAttributeNames={
                    "#w": WAITING_POOL,
                    "#q": QUEUE_ATTR,
                    "#o": ORDER_ATTR,
                    "#state": "state",
                    "#version": "version",
                },
                ExpressionAttributeValues={
                    ":w": pool,
                    ":q": changes[QUEUE_ATTR],
                    ":o": changes[ORDER_ATTR],
                    ":queued": JobState.QUEUED.value,
                    ":version": job.version,
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return job.model_copy(
            update={key: changes[key] for key in (WAITING_POOL, ORDER_ATTR)} | {"awaiting_message": False}
        )

    def take_from_line(self, job_id: str, pool: str, *, now: int | None = None) -> bool:
        """Take a job off `pool`'s line, if it is still on it: of two releasers after the same job, one
        wins. The job is marked as having a message on its way (the poller sends another if it is lost)."""
        stamp = int(time.time() if now is None else now)
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET awaiting_message = :true, next_poll_at = :due REMOVE #w, #q, #o",
                ConditionExpression="#q = :q AND #state = :queued",
                ExpressionAttributeNames={"#w": WAITING_POOL, "#q": QUEUE_ATTR, "#o": ORDER_ATTR, "#state": "state"},
                ExpressionAttributeValues={
                    ":true": True,
                    ":due": stamp + SENT_DUE_S,
                    ":q": wait_queue(pool),
                    ":queued": JobState.QUEUED.value,
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def refill(self, pool: str, *, room: int | None = None) -> list[str]:
        """Send the next waiting jobs of `pool` to the submit path, as many as it has free slots (or
        `room`). Returns the job ids sent. A job sent whose create then finds no slot waits again."""
        if self.queue is None:
            return []
        if room is None:
            state = self.pool(pool)
            room = state.room if state is not None else self.limits.of(pool)
        sent: list[str] = []
        if room <= 0:
            return sent
        # A few more than the room: the index is eventually consistent, and a job just taken off the
        # line by another releaser may still show there.
        for job_id in self.line(pool, limit=room + 4):
            if len(sent) >= room:
                break
            if self.take_from_line(job_id, pool):
                self.queue.send(job_reference(job_id))
                sent.append(job_id)
        if sent:
            logger.info("freed slots handed on", extra={"pool": pool, "jobs": sent})
        return sent

    # -- the poller's upkeep ---------------------------------------------------------------------

    def set_limit(self, pool: Pool, limit: int, *, now: int) -> bool:
        """Move a pool's limit from what `pool` shows to `limit` (a climb after a quiet period, or a changed
        C), once however many poller runs try: conditional on the limit they read."""
        try:
            self._table.update_item(
                Key=pool_key(pool.name),
                UpdateExpression="SET #limit = :new, quiet_since = :now",
                ConditionExpression="#limit = :old",
                ExpressionAttributeNames={"#limit": "limit"},
                ExpressionAttributeValues={":new": limit, ":old": pool.limit, ":now": now},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def recount(self, pool: Pool) -> int:
        """Compare what the pool says it holds with the jobs that hold its slots (the index), and correct
        the counter by the difference once two runs in a row find the same one (the index lags the
        table by a moment: one sighting may be a slot taken an instant ago). Returns the correction made."""
        drift = self.holders(pool.name) - pool.held
        if drift == 0:
            if pool.drift is not None:
                self._table.update_item(Key=pool_key(pool.name), UpdateExpression="REMOVE drift")
            return 0
        try:
            if pool.drift == drift:
                # Relative, so a take or release made meanwhile still counts.
                self._table.update_item(
                    Key=pool_key(pool.name),
                    UpdateExpression="ADD held :drift REMOVE drift",
                    ConditionExpression="drift = :drift",
                    ExpressionAttributeValues={":drift": drift},
                )
                logger.warning("a pool's count of held slots drifted: corrected", extra={"pool": pool.name})
                return drift
            self._table.update_item(
                Key=pool_key(pool.name),
                UpdateExpression="SET drift = :drift",
                ExpressionAttributeValues={":drift": drift},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
        return 0


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@per_container
def slot_pools(table_name: str, limits: PoolLimits, queue: JobQueue | None, default_model: str = "") -> SlotPools:
    return SlotPools(table_name, limits, queue=queue, default_model=default_model)
