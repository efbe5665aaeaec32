"""What Kling charges, counted as it becomes known, and the daily budget's counter, in StatsTable.

- `cost#DAY` / `MODEL#MODE`: units charged, cash charged (`cash_<CURRENCY>`, an attribute per currency:
  Kling's newer design bills a task in units or in cash, kling_task.KlingCharge) and tasks, added in
  the same DynamoDB transaction as the transition that records a task's charge (lifecycle.advance_job),
  so a task is counted exactly once and never without its job saying so. A report queries a day's
  partition; nothing scans.
- `budget#DAY` / `units`: what today's jobs have reserved (an estimate per task, taken with one
  conditional update before the create) and, once Kling's charge is known, what they were charged
  instead. It ends each day equal to the units charged for that day's reservations; a task charged in
  cash keeps its reservation (its units are not known, and unknown is not zero: lifecycle.charged_units).
- `budget#DAY` / `usd`: the same for the doors that bill USD (fal), against its own budget
  (DailyBudgetUsd): an amount is counted in its own unit only, never added to units.

Days are UTC dates. docs/architecture.md, "What Kling costs".
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.lifecycle import Job, model_and_mode

COST = "cost#"
BUDGET = "budget#"
BUDGET_SK = "units"
BUDGET_SK_USD = "usd"
ACCOUNT = "account"
ACCOUNT_CHECK_SK = "check"
# The job's fields that say what it holds of a day's budget (removed when its charge is counted).
RESERVED_UNITS = "reserved_units"
CASH = "cash_"  # + the currency: a cost row's cash charged in it
CURRENCY = re.compile(r"^[A-Z]{3}$")
RESERVED_DAY = "reserved_day"
RESERVED_USD = "reserved_usd"  # what a job of a door billing USD holds of its day's USD budget


@dataclass(frozen=True)
class DailyBudget:
    """One unit's daily budget: Kling's units (DailyBudgetUnits) or USD (DailyBudgetUsd), each with its own
    counter and its own field on the job, so a job is held only by the budget of the unit it is billed in."""

    limit: float  # 0: no budget
    unit: str  # the amount's unit as a person reads it ("units", "USD")
    parameter: str  # the template parameter that sets it
    field: str  # the job's field holding its reservation
    counter: str  # the sort key of the day's counter


def units_budget(limit: float) -> DailyBudget:
    return DailyBudget(limit, "units", "DailyBudgetUnits", RESERVED_UNITS, BUDGET_SK)


def usd_budget(limit: float) -> DailyBudget:
    return DailyBudget(limit, "USD", "DailyBudgetUsd", RESERVED_USD, BUDGET_SK_USD)


def day_of(epoch_s: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if epoch_s is None else epoch_s, UTC).date().isoformat()


def reservation(job: Job, field: str = RESERVED_UNITS) -> tuple[Decimal | None, str | None]:
    """What `job` holds of a day's budget (its units, or with `field` RESERVED_USD its USD), and that day
    (None, None when it holds none)."""
    held = getattr(job, field)
    if held is None or not job.reserved_day:
        return None, None
    return Decimal(str(held)), job.reserved_day


@dataclass(frozen=True)
class CostRow:
    day: str
    model: str
    mode: str
    units: float
    tasks: int
    cash: dict[str, float] = field(default_factory=dict)  # currency -> amount charged in cash


class Ledger:
    def __init__(self, table_name: str, *, dynamodb: Any = None) -> None:
        self._table = (dynamodb or aws_clients.resource("dynamodb")).Table(table_name)
        self.table_name = table_name

    # -- charges, written with the transition that learns them --------------------------------------

    def charge_updates(
        self, job: Job, units: float | None, cash: Mapping[str, str] | None = None, *, now: float | None = None
    ) -> list[dict[str, Any]]:
        """TransactWriteItems entries (plain values: the store's client serializes them) that count
        `units` (and `cash`, per currency) charged for `job`'s task today, and turn its reservation, if
        any, into the units charged (a charge in cash alone leaves the reservation as it is)."""
        model, mode = model_and_mode(job)
        adds, values = (["units :units"], {":units": Decimal(str(units))}) if units is not None else ([], {})
        adds.append("tasks :one")
        values[":one"] = Decimal(1)
        names: dict[str, str] = {}
        for i, (currency, amount) in enumerate(sorted((cash or {}).items())):
            if not CURRENCY.match(currency):
                continue  # KlingTask.cash_charged lets only ISO-like codes through; never an attribute name
            adds.append(f"#cash{i} :cash{i}")
            names[f"#cash{i}"] = CASH + currency
            values[f":cash{i}"] = Decimal(amount)
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": COST + day_of(now), "sk": f"{model}#{mode}"},
            "UpdateExpression": "ADD " + ", ".join(adds),
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        updates: list[dict[str, Any]] = [{"Update": update}]
        reserved, day = reservation(job)
        if units is not None and reserved is not None and day is not None:
            updates.append(self.budget_update(day, Decimal(str(units)) - reserved))
        usd = (cash or {}).get("USD")
        reserved, day = reservation(job, RESERVED_USD)
        if usd is not None and reserved is not None and day is not None:
            updates.append(self.budget_update(day, Decimal(usd) - reserved, counter=BUDGET_SK_USD))
        return updates

    def budget_update(self, day: str, delta: Decimal, *, counter: str = BUDGET_SK) -> dict[str, Any]:
        """A TransactWriteItems entry that moves a day's budget counter (units, or `counter`) by `delta`."""
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": {"pk": BUDGET + day, "sk": counter},
                "UpdateExpression": "ADD reserved :delta",
                "ExpressionAttributeValues": {":delta": delta},
            }
        }

    # -- the budget, reserved and released with the job's own transitions -------------------------

    def reserve_update(self, day: str, units: float, *, budget: float, counter: str = BUDGET_SK) -> dict[str, Any]:
        """A TransactWriteItems entry that takes `units` (no more than `budget`) from `day`'s budget (of
        units, or `counter`'s unit) only if it has room for them: one conditional update, so any number of
        submitters at once never reserve past it."""
        if units > budget:
            raise ValueError(f"{units} units can never fit a budget of {budget}")
        amount = Decimal(str(units))
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": {"pk": BUDGET + day, "sk": counter},
                "UpdateExpression": "ADD reserved :units",
                "ConditionExpression": "attribute_not_exists(reserved) OR reserved <= :room",
                "ExpressionAttributeValues": {":units": amount, ":room": Decimal(str(budget)) - amount},
            }
        }

    def release_update(self, job: Job) -> list[dict[str, Any]]:
        """The entries that give back `job`'s reservation, in its unit (its create made no task); none if it
        has none."""
        updates = []
        for held, counter in ((RESERVED_UNITS, BUDGET_SK), (RESERVED_USD, BUDGET_SK_USD)):
            reserved, day = reservation(job, held)
            if reserved is not None and day is not None:
                updates.append(self.budget_update(day, -reserved, counter=counter))
        return updates

    def reserved(self, day: str, counter: str = BUDGET_SK) -> float:
        """What `day`'s jobs hold of its budget (of units, or `counter`'s unit): estimates until their
        charge is known, then the charge."""
        item = self._table.get_item(Key={"pk": BUDGET + day, "sk": counter}, ConsistentRead=True).get("Item")
        return float(item["reserved"]) if item else 0.0

    # -- the account check ---------------------------------------------------------------------------

    def claim_account_check(self, *, now: float, every_s: int) -> bool:
        """True for the one poller run that reads the account's packs this period (a conditional update),
        so overlapping runs and a fast local clock never call Kling's account endpoint more often."""
        try:
            self._table.update_item(
                Key={"pk": ACCOUNT, "sk": ACCOUNT_CHECK_SK},
                UpdateExpression="SET checked_at = :now",
                ConditionExpression="attribute_not_exists(checked_at) OR checked_at <= :due",
                ExpressionAttributeValues={":now": int(now), ":due": int(now) - every_s},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- reports -----------------------------------------------------------------------------------

    def costs(self, since: date, until: date) -> list[CostRow]:
        """Units charged per day, model and mode, from `since` to `until` (inclusive): a query per day."""
        rows: list[CostRow] = []
        day = since
        while day <= until:
            response = self._table.query(
                KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": COST + day.isoformat()}
            )
            for item in response.get("Items", []):
                model, _, mode = str(item["sk"]).rpartition("#")
                cash = {str(k).removeprefix(CASH): float(v) for k, v in item.items() if str(k).startswith(CASH)}
                units = float(item.get("units", 0))  # a row of tasks charged in cash alone has none
                rows.append(CostRow(day.isoformat(), model, mode, units, int(item["tasks"]), cash))
            day += timedelta(days=1)
        return rows


@per_container
def ledger(table_name: str) -> Ledger:
    return Ledger(table_name)
