"""The seam every provider uses: the same job through another door (Kling's own API, fal.ai, ...).

A provider adapter says how to create a task, look one up, read a callback and verify it, find the
result's URL and how long it lives, cancel, and read the charge, in the shape of new-api's task
adaptors (relay/channel/task: build the request, submit, fetch, parse the task into one vocabulary,
bill). Everything here is provider-neutral: statuses in our own words (`queued`, `running`,
`succeeded`, `failed`, `unknown`) and money with its unit (`kling_unit`, `USD`), so the lifecycle, the
ledger and the API never read a provider's own vocabulary.

This module holds only the value types and the protocol (no HTTP): the rules of each provider live
next to it (`providers/fal.py`, `providers/replicate.py`, `providers/acedata.py` and their price tables), and
the code that talks to a provider is an adapter (`adapters/fal_client.py`, `adapters/replicate_client.py`,
`adapters/acedata_client.py`, and the signature checks), as every HTTP call in the pipeline is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

ProviderName = Literal["kling", "fal", "replicate", "acedata"]
TaskStatus = Literal["queued", "running", "succeeded", "failed", "unknown"]
ChargeUnit = Literal["kling_unit", "USD"]
CancelResult = Literal["cancel_requested", "already_completed", "not_found", "not_supported"]
# A `failed` task whose video the provider made but no longer holds (Replicate deletes an API prediction's
# output after an hour): the job ends FAILED with this code, and says so plainly.
OUTPUT_EXPIRED = "PROVIDER_OUTPUT_EXPIRED"


@dataclass(frozen=True)
class Charge:
    """What a provider charged (or will charge) for one task, in its own unit: never added across units."""

    amount: float
    unit: ChargeUnit
    basis: str = ""  # how it was computed, for a person: "10 s x $0.112/s (fal price table, 2026-12-07)"


@dataclass(frozen=True)
class TaskRef:
    """What a create answered, stored on the job before anything else and reused as given: the provider's
    id and the URLs it named for the task (fal: status_url, response_url, cancel_url)."""

    provider: ProviderName
    id: str
    endpoint: str  # the model id / path the task was made on
    urls: Mapping[str, str] = field(default_factory=dict)
    queue_position: int | None = None
    created_at: float | None = None  # epoch seconds, when our create was answered

    def as_record(self) -> dict[str, Any]:
        """The reference as the job record keeps it (plain strings and numbers)."""
        record: dict[str, Any] = {"provider": self.provider, "id": self.id, "endpoint": self.endpoint}
        record["urls"] = dict(self.urls)
        if self.created_at is not None:
            record["created_at"] = self.created_at
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TaskRef:
        created = record.get("created_at")
        return cls(
            provider=record["provider"],
            id=str(record["id"]),
            endpoint=str(record.get("endpoint", "")),
            urls={str(k): str(v) for k, v in (record.get("urls") or {}).items()},
            created_at=None if created is None else float(created),
        )


@dataclass(frozen=True)
class ProviderTask:
    """A task as a provider reported it, in our vocabulary. `succeeded` carries the video's URL and, when
    known, when that URL stops working; `failed` carries the provider's own detail (for a person);
    `unknown` means "ask again" (a status this version does not know, or an answer that proves nothing)."""

    provider: ProviderName
    id: str
    status: TaskStatus
    video_url: str | None = None
    video_expires_at: float | None = None  # epoch seconds
    error: str | None = None
    charge: Charge | None = None
    queue_position: int | None = None
    duration_s: float | None = None
    error_code: str | None = None  # for `failed`: a code the job can end with (OUTPUT_EXPIRED), else None

    @property
    def ended(self) -> bool:
        return self.status in ("succeeded", "failed")


@dataclass(frozen=True)
class CallbackEvent:
    """A provider's callback, verified. `dedup_key` is what the caller de-duplicates on (fal: request_id,
    the same over fal's repeated deliveries); `task` is what the callback says, a hint unless `signed`."""

    provider: ProviderName
    dedup_key: str
    task: ProviderTask
    signed: bool


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel achieved, and what the provider will bill for it, in words for a person."""

    result: CancelResult
    billed: str


@runtime_checkable
class Provider(Protocol):
    """One door to Kling's models. Implementations raise the pipeline's ProviderError family
    (errors.py): ProviderCapabilityError before anything is sent, ProviderCreateUnsettledError when a
    create's answer does not prove what happened (never retried automatically where the provider has no
    idempotency key), ProviderUnavailableError for "ask again later"."""

    name: ProviderName

    def create(self, endpoint: str, arguments: Mapping[str, Any], *, webhook_url: str) -> TaskRef:
        """Send one create to the provider's `endpoint` (its name for the model and kind, from its capability
        table) with the arguments its table built: the task's reference, to be stored before anything else."""
        ...

    def look_up(self, ref: TaskRef) -> ProviderTask:
        """The task now, in our vocabulary (for fal: the status, and the result once COMPLETED)."""
        ...

    def read_callback(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> CallbackEvent:
        """A callback verified (ProviderSignatureError if it does not verify) and read."""
        ...

    def cancel(self, ref: TaskRef) -> CancelOutcome:
        """Ask the provider to cancel the task; what it answered and what it will bill."""
        ...

    def charge(self, ref: TaskRef, arguments: Mapping[str, Any], task: ProviderTask) -> Charge | None:
        """What the task cost, in the provider's unit, from what was asked (`arguments`) and how it ended;
        None when not known."""
        ...
