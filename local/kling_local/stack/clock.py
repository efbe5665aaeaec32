"""The stack's clock: fires the template's `Schedule` / `ScheduleV2` events (moto never does).

Time runs `speed` times faster than the wall clock for schedules only: with speed=60 a
`rate(1 minute)` schedule fires every real second. Supported expressions: `rate(N unit)`,
`cron(min hour day-of-month month day-of-week year)` (numbers, names, `*`, `?`, ranges, lists and
steps; not L, W or #) and `at(yyyy-mm-ddThh:mm:ss)`, all in UTC. A schedule that falls behind
(a slow machine, a high speed) fires once and catches up, instead of firing a burst.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kling_local.stack.deploy import ScheduleConfig
from kling_local.stack.moto_server import ACCOUNT_ID

log = logging.getLogger(__name__)


class ScheduleExpressionError(ValueError):
    """The expression is not one the clock understands; the message quotes it."""


# ------------------------------------------------------------------------------ expressions

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.IGNORECASE)
_CRON = re.compile(r"^cron\((.*)\)$", re.IGNORECASE)
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$", re.IGNORECASE)
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i
    for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}  # AWS: 1 = Sunday


class Schedule:
    """When an expression fires, as virtual epoch seconds."""

    def next_after(self, t: float) -> float | None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class RateSchedule(Schedule):
    period_s: float
    origin: float  # rate schedules count from when they were created

    def next_after(self, t: float) -> float:
        periods = math.floor((t - self.origin) / self.period_s) + 1
        return self.origin + max(1, periods) * self.period_s


@dataclass(frozen=True)
class AtSchedule(Schedule):
    when: float

    def next_after(self, t: float) -> float | None:
        return self.when if self.when > t else None


def _cron_field(text: str, low: int, high: int, names: dict[str, int] | None, expression: str) -> frozenset[int] | None:
    """Allowed values of one cron field; None means "any" (`*` or `?`)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.upper()
        if names and token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleExpressionError(f"{expression}: unsupported cron token {token!r} (no L, W or #)")
        return int(token)

    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = number(step_text)
            if step < 1:
                raise ScheduleExpressionError(f"{expression}: step must be at least 1")
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(part)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleExpressionError(f"{expression}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule(Schedule):
    expression: str
    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # 1 = Sunday
    years: frozenset[int] | None

    def _day_matches(self, day: datetime) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        if self.years is not None and day.year not in self.years:
            return False
        if self.days is not None and day.day not in self.days:
            return False
        weekday = (day.isoweekday() % 7) + 1  # Monday=1..Sunday=7 -> Sunday=1..Saturday=7
        return self.weekdays is None or weekday in self.weekdays

    def next_after(self, t: float) -> float | None:
        start = datetime.fromtimestamp(math.floor(t / 60) * 60 + 60, tz=UTC)
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(366 * 5):
            if self._day_matches(day):
                for hour in sorted(self.hours) if self.hours is not None else range(24):
                    for minute in sorted(self.minutes) if self.minutes is not None else range(60):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate.timestamp()
            day += timedelta(days=1)
        return None


def parse_schedule(expression: str, origin: float) -> Schedule:
    """A Schedule for an EventBridge expression; `origin` is when a rate schedule was created."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        value = int(rate.group(1))
        if value < 1:
            raise ScheduleExpressionError(f"{expression}: the rate must be at least 1")
        return RateSchedule(period_s=value * _UNIT_S[rate.group(2).lower().rstrip("s")], origin=origin)
    at = _AT.match(text)
    if at:
        return AtSchedule(datetime.fromisoformat(at.group(1)).replace(tzinfo=UTC).timestamp())
    cron = _CRON.match(text)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise ScheduleExpressionError(f"{expression}: cron needs 6 fields (min hour day month weekday year)")
        return CronSchedule(
            expression=text,
            minutes=_cron_field(fields[0], 0, 59, None, text),
            hours=_cron_field(fields[1], 0, 23, None, text),
            days=_cron_field(fields[2], 1, 31, None, text),
            months=_cron_field(fields[3], 1, 12, _MONTHS, text),
            weekdays=_cron_field(fields[4], 1, 7, _DAYS, text),
            years=_cron_field(fields[5], 1970, 2199, None, text),
        )
    raise ScheduleExpressionError(f"{expression!r} is not rate(...), cron(...) or at(...)")


# ------------------------------------------------------------------------------ the clock


def scheduled_event(config: ScheduleConfig, region: str, when: datetime) -> dict[str, Any]:
    """What the target receives: the template's Input, else EventBridge's "Scheduled Event"."""
    if config.input is not None:
        parsed: dict[str, Any] = json.loads(config.input)
        return parsed
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events" if config.kind == "rule" else "aws.scheduler",
        "account": ACCOUNT_ID,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [config.source_arn],
        "detail": {},
    }


@dataclass
class _Entry:
    config: ScheduleConfig
    schedule: Schedule
    due: float | None
    fired: int = 0


@dataclass
class ScheduleClock:
    """Fires schedules on a thread; `fire(logical_id)` fires one now (tests, the CLI)."""

    schedules: list[ScheduleConfig]
    dispatch: Callable[[ScheduleConfig, dict[str, Any]], None]
    region: str
    speed: float = 1.0
    _entries: list[_Entry] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("clock speed must be positive")
        self._real0 = time.monotonic()
        self._virtual0 = time.time()
        for config in self.schedules:
            if not config.enabled:
                continue
            schedule = parse_schedule(config.expression, origin=self._virtual0)
            self._entries.append(_Entry(config, schedule, schedule.next_after(self._virtual0)))

    def now(self) -> float:
        """Virtual epoch seconds."""
        return self._virtual0 + (time.monotonic() - self._real0) * self.speed

    def start(self) -> None:
        if self._entries:
            self._thread = threading.Thread(target=self._run, name="local-clock", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def fired(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for entry in self._entries:
                counts[entry.config.logical_id] = counts.get(entry.config.logical_id, 0) + entry.fired
            return counts

    def fire(self, logical_id: str) -> int:
        """Fire every target of one schedule now, whatever its expression; returns how many."""
        entries = [e for e in self._entries if e.config.logical_id == logical_id]
        if not entries:
            raise KeyError(f"no enabled schedule {logical_id!r}")
        for entry in entries:
            self._fire(entry)
        return len(entries)

    def _fire(self, entry: _Entry) -> None:
        with self._lock:
            entry.fired += 1
        try:
            self.dispatch(entry.config, scheduled_event(entry.config, self.region, datetime.now(UTC)))
        except Exception:
            log.exception("schedule %s: firing its target failed", entry.config.logical_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.now()
            pending = [e for e in self._entries if e.due is not None]
            if not pending:
                return
            due_now = [e for e in pending if e.due is not None and e.due <= now]
            for entry in due_now:
                self._fire(entry)
                entry.due = entry.schedule.next_after(max(now, entry.due or now))
            upcoming = min((e.due for e in self._entries if e.due is not None), default=None)
            if upcoming is None:
                return
            wait_s = (upcoming - self.now()) / self.speed
            self._stop.wait(min(1.0, max(0.01, wait_s)))
