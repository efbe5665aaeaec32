"""Kling's task object, as queries return it and as callbacks POST it (bare, not in an envelope);
and the account's resource packs, as `GET /account/costs` lists them.

Fields follow Kling's API reference as summarised in docs/architecture.md ("Kling's contract");
unknown fields are kept (extra="allow") because Kling adds fields without notice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


class KlingTask(BaseModel):
    model_config = ConfigDict(extra="allow")

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

    @field_validator("task_id", mode="before")
    @classmethod
    def _task_id_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

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
