"""`kling-pipeline cost`: what Kling charged, per day, model or mode, from the pipeline's own ledger.

The figures are the units Kling reported for each task (`final_unit_deduction`, or the newer design's
`billing[]` in units), and the cash it reported in its currency (`billing[]` of charge_type cash: a
figure per currency, never added across currencies), counted when the
pipeline confirmed the task (adapters.ledger): a query per day of StatsTable, never a scan, the same
locally and against a deployed stack.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from kling_local.connection import PipelineConnection, add_connection_arguments
from kling_local.terminal import UsageError, guarded
from kling_pipeline.adapters.ledger import BUDGET_SK_USD, CostRow

DEFAULT_DAYS = 7
MAX_DAYS = 400  # a query per day: a longer report is a job for an export
BY = ("day", "model", "mode")
console = Console()


def register(subparsers: Any) -> None:
    cost = subparsers.add_parser("cost", help="units Kling charged, per day, model or mode (and today's budget)")
    cost.add_argument("--since", help=f"first day, YYYY-MM-DD UTC (default: {DEFAULT_DAYS - 1} days before --until)")
    cost.add_argument("--until", help="last day, YYYY-MM-DD UTC (default: today)")
    cost.add_argument("--by", choices=BY, default="day", help="group the units by (default: day)")
    cost.add_argument("--json", action="store_true", help="print the report as JSON")
    add_connection_arguments(cost)
    cost.set_defaults(handler=guarded(cmd_cost))


@dataclass(frozen=True)
class CostReport:
    since: date
    until: date
    by: str
    rows: list[dict[str, Any]]
    units: float
    tasks: int
    budget_reserved_today: float
    cash: dict[str, float] = field(default_factory=dict)  # currency -> amount charged in cash
    budget_reserved_today_usd: float = 0.0  # held of today's USD budget (DailyBudgetUsd): never added to units

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "by": self.by,
            "rows": self.rows,
            "total": {"units": self.units, "tasks": self.tasks} | ({"cash": self.cash} if self.cash else {}),
            "budget_reserved_today": self.budget_reserved_today,
        } | ({"budget_reserved_today_usd": self.budget_reserved_today_usd} if self.budget_reserved_today_usd else {})


def parse_day(value: str | None, flag: str, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date: give YYYY-MM-DD (UTC), e.g. {default.isoformat()}") from None


def days_asked(args: argparse.Namespace, today: date) -> tuple[date, date]:
    until = parse_day(args.until, "--until", today)
    since = parse_day(args.since, "--since", until - timedelta(days=DEFAULT_DAYS - 1))
    if since > until:
        raise UsageError(f"--since {since} is after --until {until}: swap them")
    if (until - since).days + 1 > MAX_DAYS:
        raise UsageError(f"at most {MAX_DAYS} days at once: narrow --since/--until")
    return since, until


def grouped(rows: list[CostRow], by: str) -> list[dict[str, Any]]:
    """Units, cash per currency and tasks per day, model or mode, in that key's order."""
    units: defaultdict[str, float] = defaultdict(float)
    tasks: defaultdict[str, int] = defaultdict(int)
    cash: defaultdict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        key = {"day": row.day, "model": row.model, "mode": row.mode}[by]
        units[key] += row.units
        tasks[key] += row.tasks
        cash[key] = summed([cash[key], row.cash])
    # "cash" only where some was charged: a deployment billed in units reads as it always has.
    return [
        {by: key, "units": round(units[key], 6), "tasks": tasks[key]} | ({"cash": cash[key]} if cash[key] else {})
        for key in sorted(units)
    ]


def summed(amounts: list[dict[str, float]]) -> dict[str, float]:
    """Amounts per currency, added within each currency only."""
    total: defaultdict[str, float] = defaultdict(float)
    for amount in amounts:
        for currency, value in amount.items():
            total[currency] += value
    return {currency: round(value, 6) for currency, value in sorted(total.items())}


def cash_text(cash: dict[str, float]) -> str:
    return ", ".join(f"{value:g} {currency}" for currency, value in cash.items()) or "-"


def cost_report(connection: PipelineConnection, since: date, until: date, by: str) -> CostReport:
    ledger = connection.ledger()
    rows = ledger.costs(since, until)
    today = datetime.now(UTC).date().isoformat()
    return CostReport(
        since=since,
        until=until,
        by=by,
        rows=grouped(rows, by),
        units=round(sum(row.units for row in rows), 6),
        tasks=sum(row.tasks for row in rows),
        budget_reserved_today=ledger.reserved(today),
        cash=summed([row.cash for row in rows]),
        budget_reserved_today_usd=ledger.reserved(today, BUDGET_SK_USD),
    )


def cmd_cost(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    assert connection is not None
    since, until = days_asked(args, datetime.now(UTC).date())
    report = cost_report(connection, since, until, args.by)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    table = Table(title=f"Kling units charged, {since} to {until} (UTC), by {args.by}")
    table.add_column(args.by)
    table.add_column("units", justify="right")
    table.add_column("tasks", justify="right")
    with_cash = bool(report.cash)  # a column only when some task was charged in cash
    if with_cash:
        table.add_column("cash", justify="right")
    for row in report.rows:
        cells = [str(row[args.by]), f"{row['units']:g}", str(row["tasks"])]
        table.add_row(*cells, *([cash_text(row.get("cash", {}))] if with_cash else []))
    table.add_section()
    totals = ["total", f"{report.units:g}", str(report.tasks)]
    table.add_row(*totals, *([cash_text(report.cash)] if with_cash else []), style="bold")
    console.print(table)
    if report.budget_reserved_today:
        console.print(f"today's budget: {report.budget_reserved_today:g} units held (DailyBudgetUnits)")
    if report.budget_reserved_today_usd:
        console.print(f"today's USD budget: {report.budget_reserved_today_usd:g} USD held (DailyBudgetUsd)")
    return 0
