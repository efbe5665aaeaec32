"""Kling's task object, as queries return it and as callbacks POST it (bare, not in an envelope);
and the account's resource packs, as `GET /account/costs` lists them.

Kling answers in two designs (docs/kling-contract.md, "The newer API design"): the legacy task
(`task_id`, `task_status`, `task_result.videos`, `final_unit_deduction`) and the newer one (`id`,
`status`, `outputs[]`, `billing[]`). Both are read into the one KlingTask, so every observer (the
callback, the poller, reconciliation) decides on one shape; `succeeded` is read as `succeed`.

Fields follow Kling's API reference as summarised in docs/architecture.md ("Kling's contract");
unknown fields are kept (extra="allow") because Kling adds fields without notice.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Both designs' words for a finished task: the legacy `succeed` and the newer `succeeded`.
DONE = "succeed"
DONE_ALIASES = frozenset({"succeed", "succeeded"})
CURRENCY = re.compile(r"^[A-Z]{3}$")


class KlingVideo(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    url: str
    duration: str | None = None


class KlingTaskResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    videos: list[KlingVideo] = Field(default_factory=list)


class KlingTaskInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    external_task_id: str | None = None
    parent_video: dict[str, Any] | None = None


class KlingCharge(BaseModel):
    """One line of a newer-design task's `billing[]`: units of a resource pack, or cash in a currency."""

    model_config = ConfigDict(extra="allow")

    charge_type: str  # "unit" or "cash"; another value is kept and counted as neither
    amount: str
    currency: str | None = None
    package_type: str | None = None
    list_price: str | None = None

    @field_validator("amount", "list_price", mode="before")
    @classmethod
    def _number_as_string(cls, value: Any) -> Any:
        # A string, as final_unit_deduction is: the ledger reads it as a Decimal, never a float.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @property
    def number(self) -> Decimal | None:
        try:
            value = Decimal(self.amount)
        except InvalidOperation:
            return None
        return value if value.is_finite() and value >= 0 else None


class KlingTask(BaseModel):
    model_config = ConfigDict(extra="allow")

    design: Literal["legacy", "new"] = "legacy"  # which design answered (the shape it came in)

    task_id: str
    # Kling's statuses are submitted, processing, succeed and failed; another value is kept (not refused)
    # and means "not finished, as far as we know": it moves no job.
    task_status: str
    task_status_msg: str | None = None
    created_at: int | None = None
    updated_at: int | None = None
    final_unit_deduction: str | None = None
    task_info: KlingTaskInfo = Field(default_factory=KlingTaskInfo)
    task_result: KlingTaskResult | None = None
    billing: list[KlingCharge] = Field(default_factory=list)  # newer design only

    @model_validator(mode="before")
    @classmethod
    def _newer_design(cls, value: Any) -> Any:
        """A newer-design task (`{id, status, message, create_time, update_time, external_id, outputs[],
        billing[]}`) in the legacy field names; a legacy task as it is."""
        if not isinstance(value, dict) or "task_id" in value or "id" not in value:
            return value
        outputs = value.get("outputs")
        videos = [
            {k: v for k, v in item.items() if k != "type"}
            | ({"duration": str(item["duration"])} if item.get("duration") is not None else {})
            for item in (outputs if isinstance(outputs, list) else [])
            if isinstance(item, dict) and item.get("type", "video") == "video"
        ]
        known = {"id", "status", "message", "create_time", "update_time", "external_id", "outputs"}
        legacy: dict[str, Any] = {k: v for k, v in value.items() if k not in known}
        return legacy | {
            "design": "new",
            "task_id": value.get("id"),
            "task_status": value.get("status"),
            "task_status_msg": value.get("message") or None,
            "created_at": value.get("create_time"),
            "updated_at": value.get("update_time"),
            "task_info": {"external_task_id": value.get("external_id")},
            "task_result": {"videos": videos} if videos else None,
        }

    @field_validator("task_id", mode="before")
    @classmethod
    def _task_id_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("task_status")
    @classmethod
    def _one_word_for_done(cls, value: str) -> str:
        return DONE if value in DONE_ALIASES else value

    @model_validator(mode="after")
    def _units_from_billing(self) -> KlingTask:
        # The newer design's unit charges, in the legacy field every observer reads the units from.
        if self.final_unit_deduction is None:
            units = [c.number for c in self.billing if c.charge_type == "unit"]
            if units and all(u is not None for u in units):
                self.final_unit_deduction = str(sum(u for u in units if u is not None))
        return self

    @property
    def cash_charged(self) -> dict[str, str] | None:
        """What the task cost in cash, per currency ({"USD": "0.84"}); None when none was charged in cash
        (or a cash line has no currency or no number: an amount without its currency is not recorded)."""
        totals: dict[str, Decimal] = {}
        for charge in self.billing:
            number = charge.number
            if charge.charge_type != "cash" or number is None or not CURRENCY.match(charge.currency or ""):
                continue
            assert charge.currency is not None
            totals[charge.currency] = totals.get(charge.currency, Decimal(0)) + number
        return {currency: str(amount) for currency, amount in totals.items()} or None

    @property
    def first_video(self) -> KlingVideo | None:
        return self.task_result.videos[0] if self.task_result and self.task_result.videos else None


class ResourcePack(BaseModel):
    """One of the account's resource packs: what it holds and what is left (which may lag up to 12 h)."""

    model_config = ConfigDict(extra="allow")

    resource_pack_id: str | None = None
    resource_pack_name: str = "unnamed"
    resource_pack_type: str | None = None
    total_quantity: float = 0.0
    remaining_quantity: float = 0.0
    status: str | None = None  # toBeOnline, online, expired, runOut

    @property
    def usable(self) -> bool:
        return self.status in (None, "online")
