"""What a task will cost before Kling says, as data: the units the daily budget reserves for a job
before its create, each figure with the date it was checked and where it comes from.

Kling's price list is not part of the contract notes, and it changes with every model, so the table
is deliberately small and cautious: a rate per model for a 5-second `std` video, `pro` at twice that
(the one price fact docs/kling-contract.md gives), and a longer video at its length's share. Once Kling has
charged a task of the same kind, model, mode and duration, that charge (learned in StatsTable by
adapters.generation_estimates) is reserved instead: the table only has to be right for the first
job of each shape, and the reservation is corrected to the real charge when it is known.
"""

from __future__ import annotations

from dataclasses import dataclass

from kling_pipeline.lifecycle import Job, model_and_mode
from kling_pipeline.poll_schedule import Estimate


@dataclass(frozen=True)
class UnitRate:
    """Units of a 5-second std video of a model, with where the figure comes from."""

    units: float
    checked: str  # YYYY-MM-DD
    source: str


PRO_FACTOR = UnitRate(2.0, "2026-11-23", "docs/kling-contract.md, create bodies: mode (pro costs about twice as much)")
# The figure for any model without its own row: the simulator charges this, and a real account's
# first task of each shape corrects it (then its learned charge is used).
DEFAULT_RATE = UnitRate(1.0, "2026-11-23", "assumed (the simulator's rate); replaced by the first charge learned")
RATES: dict[str, UnitRate] = {
    # No per-model prices are confirmed in the contract notes; add a row per model when its price is
    # checked, with the page it comes from.
}
BASE_DURATION_S = 5


def rate_for(model: str) -> UnitRate:
    return RATES.get(model, DEFAULT_RATE)


def table_estimate(job: Job) -> float:
    """What the table says `job`'s task will cost."""
    model, mode = model_and_mode(job)
    units = rate_for(model).units * (PRO_FACTOR.units if mode == "pro" else 1.0)
    if job.step > 1:
        return units  # an extend step adds 4-5 s: a base video's price
    try:
        duration = float(job.request.get("duration") or BASE_DURATION_S)
    except (TypeError, ValueError):
        duration = BASE_DURATION_S
    return units * max(1.0, duration / BASE_DURATION_S)


def units_to_reserve(job: Job, learned: Estimate | None) -> float:
    """The units to hold of the day's budget for `job`: the latest charge of a task like it when one is
    known, else the table's estimate."""
    if learned is not None and learned.units is not None:
        return learned.units
    return table_estimate(job)
