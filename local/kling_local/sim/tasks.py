"""A simulated task and account as the state keeps them, and the task object Kling answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kling_local.sim.media import ClipSpec
from kling_local.sim.validation import TaskSpec


def _ms(wall: float) -> int:
    return int(wall * 1000)


def _units_str(units: float) -> str:
    return f"{units:g}"


@dataclass
class Video:
    id: str
    url: str
    duration: str
    watermark_url: str | None = None

    def to_dict(self) -> dict[str, str]:
        data = {"id": self.id, "url": self.url, "duration": self.duration}
        if self.watermark_url:
            data["watermark_url"] = self.watermark_url
        return data


@dataclass
class Task:
    task_id: str
    account: str
    spec: TaskSpec
    created_wall: float
    created_mono: float
    processing_at: float
    done_at: float
    will_fail: bool
    fail_message: str
    units: float
    bucket: int
    result_duration_s: float
    status: str = "submitted"
    status_msg: str = ""
    updated_wall: float = 0.0
    ended_wall: float | None = None
    expires_wall: float | None = None
    video_size: int = 0
    videos: list[Video] = field(default_factory=list)
    parent_video: dict[str, str] | None = None
    clip: ClipSpec | None = None  # the playable result (None: a synthetic body of video_size bytes)
    source_model: str | None = None  # video-extend: the model that made the source video
    pool: str = ""  # the model version whose concurrency the task counts in (Account.active_by_model)
    source_aspect: str | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def new_design(self) -> bool:
        return self.spec.design == "new"

    @property
    def terminal(self) -> bool:
        return self.status in ("succeed", "failed")

    def wall_at(self, mono: float) -> float:
        """Wall-clock time of a monotonic instant in this task's life."""
        return self.created_wall + (mono - self.created_mono)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.spec.external_task_id is not None:
            info["external_task_id"] = self.spec.external_task_id
        if self.parent_video is not None:
            info["parent_video"] = dict(self.parent_video)
        return info

    def create_dict(self) -> dict[str, Any]:
        """The `data` of a create answer."""
        return {
            "task_id": self.task_id,
            "task_status": "submitted",
            "task_info": self.info(),
            "created_at": _ms(self.created_wall),
            "updated_at": _ms(self.created_wall),
        }

    def to_dict(self) -> dict[str, Any]:
        """The task object of queries, lists and callbacks."""
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": self.status,
            "task_status_msg": self.status_msg,
            "task_info": self.info(),
            "created_at": _ms(self.created_wall),
            "updated_at": _ms(self.updated_wall),
            "final_unit_deduction": "0" if self.status == "failed" else _units_str(self.units),
        }
        if self.status == "succeed":
            data["task_result"] = {"videos": [v.to_dict() for v in self.videos]}
        return data


NEW_STATUS = {"submitted": "submitted", "processing": "processing", "succeed": "succeeded", "failed": "failed"}


@dataclass(frozen=True)
class Billing:
    """How the newer design's billing[] shows a charge: units (currency None) or cash."""

    currency: str | None = None
    cash_per_unit: float = 0.0

    def lines(self, units: float) -> list[dict[str, Any]]:
        if self.currency is None:
            return [
                {"charge_type": "unit", "amount": units, "currency": "", "package_type": "video", "list_price": units}
            ]
        cash = round(units * self.cash_per_unit, 4)
        return [
            {"charge_type": "cash", "amount": cash, "currency": self.currency, "package_type": "", "list_price": cash}
        ]


def new_design_dict(task: Task, billing: Billing) -> dict[str, Any]:
    """The task as the newer design answers it (GET /tasks, POST /tasks, its callbacks): `succeeded`, not
    `succeed`; `outputs[]` and `billing[]` (a failed task is charged nothing)."""
    data: dict[str, Any] = {
        "id": task.task_id,
        "status": NEW_STATUS[task.status],
        "message": task.status_msg,
        "create_time": _ms(task.created_wall),
        "update_time": _ms(task.updated_wall),
        "external_id": task.spec.external_task_id or "",
        "outputs": [],
        "billing": billing.lines(0.0 if task.status == "failed" else task.units),
    }
    if task.status == "succeed":
        for video in task.videos:
            output: dict[str, Any] = {
                "type": "video",
                "id": video.id,
                "url": video.url,
                "duration": float(video.duration),
            }
            if video.watermark_url:
                output["watermark_url"] = video.watermark_url
            data["outputs"].append(output)
    return data


def new_design_create_dict(task: Task) -> dict[str, Any]:
    """The `data` of a newer-design create answer."""
    return {
        "id": task.task_id,
        "status": "submitted",
        "create_time": _ms(task.created_wall),
        "update_time": _ms(task.created_wall),
        "external_id": task.spec.external_task_id or "",
    }


@dataclass
class Account:
    active: int = 0
    # Kling counts concurrency per account, per model version (and resource-pack type): tasks running
    # per model, the most at once in any one of them (what `concurrency_limit` bounds).
    active_by_model: dict[str, int] = field(default_factory=dict)
    high_water: int = 0
    units_committed: float = 0.0
    tokens: float = 0.0
    tokens_at: float = 0.0
    tasks: list[str] = field(default_factory=list)  # creation order
    by_external_id: dict[str, list[str]] = field(default_factory=dict)  # creation order
