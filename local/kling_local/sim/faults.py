"""The simulator's fault dice: a seeded stream of their own for the faults the server decides (so a fault
decision never shifts the task ids and outcomes a seed gives), the outage and 5xxx-burst clocks, and the
count of every fault that happened. Not locked itself: SimState holds its lock around every call."""

from __future__ import annotations

import random
import time
from collections import Counter

from kling_local.sim.config import SimConfig


class FaultDice:
    def __init__(self, seed: int | None, started_wall: float) -> None:
        self._started_wall = started_wall
        self._outage_until = 0.0  # monotonic; set by the outage_s knob
        self.counts: Counter[str] = Counter()
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        self._rng = random.Random(None if seed is None else f"{seed}/faults")

    def start_outage(self, config: SimConfig) -> None:
        """An outage of `outage_s` simulated seconds from now (none when 0)."""
        outage = config.outage_s / config.speed
        self._outage_until = time.monotonic() + outage if outage > 0 else 0.0

    def chance(self, probability: float) -> bool:
        """A seeded coin flip."""
        if probability <= 0:
            return False
        return self._rng.random() < probability

    def pick(self, options: tuple[int, ...]) -> int:
        return self._rng.choice(options)

    def down(self) -> bool:
        """Whether Kling is in an outage (`outage_s`) right now."""
        return time.monotonic() < self._outage_until

    def in_error_burst(self, config: SimConfig) -> bool:
        """Whether a periodic 5xxx burst (`error_burst_every_s`, `error_burst_s`) is on right now."""
        if config.error_burst_every_s <= 0 or config.error_burst_s <= 0:
            return False
        simulated = (time.time() - self._started_wall) * config.speed
        return simulated % config.error_burst_every_s < config.error_burst_s

    def record(self, name: str) -> None:
        self.counts[name] += 1
