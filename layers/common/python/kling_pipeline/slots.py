"""Kling's concurrency slots: which pool a job's task counts in, how many tasks a pool may run at once,
and the order in which waiting jobs take a freed slot (docs/architecture.md, "Kling's slots").

Kling runs at most C tasks at once per account, per model version and resource-pack type (1303 past
it); a task holds its slot from `submitted` until it ends. The pipeline counts what it holds per pool
(adapters.slot_pools), takes a slot with the claim that precedes a create, and gives it back with the
transition that ends the task's time at Kling, whoever makes it (adapters.job_store). These are the
rules; no AWS here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kling_pipeline.lifecycle import Job, JobState

DEFAULT_PRIORITY = 5
MIN_PRIORITY, MAX_PRIORITY = 0, 9
# The states in which a job's task may occupy a Kling slot: claimed for a create, and at Kling. A
# TIMED_OUT job gives its slot back: past the job timeout (10 minutes at least, against Kling's 30-300 s)
# its task is an anomaly, and holding a slot for it through 30 days of rare looks would starve the pool.
# If Kling still counts it, the next create's 1303 lowers the pool's limit to what the pipeline holds.
HOLDING_STATES = frozenset({JobState.SUBMITTING, JobState.SUBMITTED, JobState.PROCESSING})
# What a job carries about slots: the pool whose slot it holds (SLOT_POOL), or (QUEUED) the pool it waits
# for (WAITING_POOL), and its entry in the SlotQueues index (QUEUE_ATTR, ORDER_ATTR): adapters.slot_pools.
SLOT_POOL = "slot_pool"
WAITING_POOL = "waiting_pool"
QUEUE_ATTR = "slot_queue"
ORDER_ATTR = "slot_order"
# Kling documents one resource-pack type for video tasks, and the capability table knows no other.
VIDEO_PACK = "video"


def pool_of(job: Job, default_model: str) -> str:
    """The pool a job's task counts in: the model version Kling runs it with (`model_name` once a task
    was made, else the request's effective model; an extend, whose model is the source video's, counts
    in the deployment default's pool), and the pack type when it is not the video pack."""
    from kling_pipeline import capabilities  # here: the callback's cold start never needs the table

    model = job.model_name or capabilities.effective_model(job.kind, job.request.get("model"), default_model)
    return str(model or default_model)


def priority_of(job: Job) -> int:
    value = job.request.get("priority")
    return int(value) if isinstance(value, int) else DEFAULT_PRIORITY


def waiting_order(job: Job) -> str:
    """The waiting line's sort key: higher priority first, then arrival (the job's creation, to the
    millisecond), then the job id. A job that comes back to wait keeps its place."""
    arrived = datetime.fromisoformat(job.created_at.replace("Z", "+00:00"))
    return f"{MAX_PRIORITY - priority_of(job)}#{int(arrived.timestamp() * 1000):013d}#{job.job_id}"


@dataclass(frozen=True)
class PoolLimits:
    """C per pool: `named` (KlingPoolConcurrency, as pairs: hashable, so clients built from it are kept
    per container) or `default` (KlingConcurrency)."""

    default: int
    named: tuple[tuple[str, int], ...] = ()

    def of(self, pool: str) -> int:
        return dict(self.named).get(pool, self.default)

    @classmethod
    def of_table(cls, default: int, named: Mapping[str, int]) -> PoolLimits:
        return cls(default=default, named=tuple(sorted(named.items())))


@dataclass(frozen=True)
class Pool:
    """A pool's counter as stored: slots `held` by the pipeline's jobs against `limit` (C, or lower after
    a 1303 showed the account shared), `quiet_since` (epoch s of the last 1303 or climb)."""

    name: str
    held: int
    limit: int
    configured: int
    quiet_since: int = 0
    drift: int | None = None  # what the last recount found held differs by (confirmed by the next)

    @property
    def room(self) -> int:
        return max(0, min(self.limit, self.configured) - self.held)


def limit_after_quiet(pool: Pool, *, now: int, quiet_s: int) -> int | None:
    """A lowered limit climbs back one slot per quiet period (no 1303 for `quiet_s`), up to C; a changed
    C takes effect at once. None when the limit stays."""
    if pool.limit > pool.configured:
        return pool.configured
    if pool.limit < pool.configured and now - pool.quiet_since >= quiet_s:
        return pool.limit + 1
    return None


def held_queue(pool: str) -> str:
    return f"held#{pool}"


def wait_queue(pool: str) -> str:
    return f"wait#{pool}"


def holding_changes(job: Job, pool: str) -> dict[str, Any]:
    """What a job that takes a slot records: the pool, and its entry among the pool's holders."""
    return {SLOT_POOL: pool, QUEUE_ATTR: held_queue(pool), ORDER_ATTR: job.job_id}


def waiting_changes(job: Job, pool: str) -> dict[str, Any]:
    """What a QUEUED job waiting for a slot records: the pool, and its place in the pool's line."""
    return {WAITING_POOL: pool, QUEUE_ATTR: wait_queue(pool), ORDER_ATTR: waiting_order(job), SLOT_POOL: None}
