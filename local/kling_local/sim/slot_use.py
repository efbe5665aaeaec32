"""How well a client kept Kling's slots busy, from the simulator's own task times (issue 24): the share of
slot-time busy and the idle gap after each task's end. Exact (every create and end, on the wall clock),
not sampled, so the demo and both systems of `make bench` are measured the same way.

A pool here is what Kling counts together: an account's model version (state.model_version).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# (created, ended) wall-clock seconds of one task; ended None while it runs.
Span = tuple[float, float | None]


@dataclass(frozen=True)
class SlotUse:
    busy_share: float | None  # busy slot-time / (C x the pool's window), over every pool used
    # The same while the backlog lasts (first create to last create: a slot idle after the last create had
    # no job to run, whoever the client), the scheduler's own share.
    busy_share_backlog: float | None
    idle_gaps_s: list[float]  # real seconds from a task's end to the create that took its slot

    def gap_percentiles(self) -> dict[str, float | int | None]:
        return percentiles(self.idle_gaps_s)


def slot_use(pools: Mapping[str, Sequence[Span]], limit: int | None, *, now: float) -> SlotUse:
    """`pools`: each pool's tasks. The window of a pool runs from its first create to its last end (a
    task still running counts as busy until `now`); busy share is None without a limit C."""
    busy = window = backlog_busy = backlog_window = 0.0
    gaps: list[float] = []
    for spans in pools.values():
        if not spans:
            continue
        starts = [start for start, _ in spans]
        ends = [now if end is None else end for _, end in spans]
        first, last_create = min(starts), max(starts)
        busy += sum(end - start for start, end in zip(starts, ends, strict=True))
        window += max(ends) - first
        backlog_busy += sum(min(end, last_create) - start for start, end in zip(starts, ends, strict=True))
        backlog_window += last_create - first
        gaps += idle_gaps(starts, [end for _, end in spans if end is not None])
    return SlotUse(
        busy_share=_share(busy, window, limit),
        busy_share_backlog=_share(backlog_busy, backlog_window, limit),
        idle_gaps_s=gaps,
    )


def _share(busy: float, window: float, limit: int | None) -> float | None:
    return round(busy / (limit * window), 3) if limit and window > 0 else None


def idle_gaps(creates: Iterable[float], ends: Iterable[float]) -> list[float]:
    """Each end paired, oldest first, with the first later create not yet paired: the time the slot that
    end freed stood idle. A create with no end before it (the first fill) pairs with none; an end with no
    later create (the backlog ran out) has no gap."""
    events = sorted([(t, 1) for t in ends] + [(t, 2) for t in creates])  # at a tie the end comes first
    freed: list[float] = []
    gaps: list[float] = []
    head = 0
    for at, kind in events:
        if kind == 1:
            freed.append(at)
        elif head < len(freed):
            gaps.append(at - freed[head])
            head += 1
    return gaps


def percentiles(values: Iterable[float]) -> dict[str, float | int | None]:
    data = sorted(values)
    if not data:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    q = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "max": round(data[-1], 3), "n": len(data)}
