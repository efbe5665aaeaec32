"""Schedule expressions the clock understands, checked against hand-computed fire times (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kling_local.stack.clock import ScheduleExpressionError, parse_schedule


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_rate_counts_from_creation() -> None:
    schedule = parse_schedule("rate(5 minutes)", origin=ts("2030-01-01T00:00:30"))
    assert schedule.next_after(ts("2030-01-01T00:00:30")) == ts("2030-01-01T00:05:30")
    assert schedule.next_after(ts("2030-01-01T00:05:30")) == ts("2030-01-01T00:10:30")
    assert parse_schedule("rate(1 hour)", origin=0).next_after(0) == 3600
    assert parse_schedule("rate(2 days)", origin=0).next_after(10) == 2 * 86400


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0/15 * * * ? *)", "2030-01-01T10:07:00", "2030-01-01T10:15:00"),
        ("cron(0 12 * * ? *)", "2030-01-01T12:00:00", "2030-01-02T12:00:00"),
        ("cron(30 9 ? * MON-FRI *)", "2030-01-04T10:00:00", "2030-01-07T09:30:00"),  # Fri -> Mon
        ("cron(0 0 1 JAN,JUL ? *)", "2030-02-01T00:00:00", "2030-07-01T00:00:00"),
        ("cron(5 4 ? * 1 *)", "2030-01-01T00:00:00", "2030-01-06T04:05:00"),  # 1 = Sunday
    ],
)
def test_cron_next_fire(expression: str, after: str, expected: str) -> None:
    assert parse_schedule(expression, origin=0).next_after(ts(after)) == ts(expected)


def test_at_fires_once() -> None:
    schedule = parse_schedule("at(2030-05-01T08:00:00)", origin=0)
    assert schedule.next_after(ts("2030-04-30T00:00:00")) == ts("2030-05-01T08:00:00")
    assert schedule.next_after(ts("2030-05-01T08:00:00")) is None


@pytest.mark.parametrize("expression", ["rate(0 minutes)", "rate(1 fortnight)", "cron(0 12 * *)", "cron(0 12 L * ? *)"])
def test_bad_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse_schedule(expression, origin=0)
