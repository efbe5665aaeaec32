"""Every knob of the fal simulator, in one validated, immutable model.

The defaults are fal's worst case wherever the contract (docs/fal-contract.md) promises nothing, except
the fault rates, which are 0 so a test turns on the fault it is about. Simulated durations (the
generation) are divided by `speed`; `webhook_delay_s` is wall-clock.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# fal's Kling endpoints the simulator serves (fal-ai/kling-video/<version>/<tier>/<kind>); other ids are 404.
DEFAULT_MODEL_IDS: tuple[str, ...] = tuple(
    f"fal-ai/kling-video/{version}/{tier}/{kind}"
    for version, tiers in (
        ("v2.1", ("standard", "pro", "master")),
        ("v2.5-turbo", ("standard", "pro")),
        ("v2.6", ("standard", "pro")),
        ("v3", ("standard", "pro", "4k")),
    )
    for tier in tiers
    for kind in ("text-to-video", "image-to-video")
)


class FalSimConfigError(ValueError):
    """A knob update was refused; the message names the knob (never a secret value)."""


class FalSimConfig(BaseModel):
    """The fal simulator's knobs. Frozen: change them with `FalSimulator.configure(**knobs)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    api_key: str = Field(default="fal-sim-key", min_length=1)  # clients send `Authorization: Key <api_key>`
    user_id: str = "fal-sim-user"  # X-Fal-Webhook-User-Id
    seed: int | None = None
    speed: float = Field(default=1.0, gt=0)
    generation_min_s: float = Field(default=30.0, ge=0)
    generation_max_s: float = Field(default=90.0, ge=0)
    # fal: new accounts run 2 requests at once; more are queued (queue_position), not refused.
    concurrency_limit: int = Field(default=2, ge=0)  # 0: no limit
    model_ids: tuple[str, ...] = DEFAULT_MODEL_IDS
    # Faults.
    create_answer_loss_rate: float = Field(default=0.0, ge=0, le=1)  # the request is made; its answer is cut
    create_5xx_rate: float = Field(default=0.0, ge=0, le=1)  # the request is made; the answer is a 500
    webhook_loss_rate: float = Field(default=0.0, ge=0, le=1)  # a webhook never sent
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)  # a webhook sent twice
    webhook_delay_s: float = Field(default=0.0, ge=0)  # wall-clock, before each delivery
    webhook_attempts: int = Field(default=3, ge=1, le=31)  # tries while the receiver answers non-2xx
    result_422_rate: float = Field(default=0.0, ge=0, le=1)  # COMPLETED, and the result fetch is a 422
    result_504_first: int = Field(default=0, ge=0)  # each request's first N result fetches answer 504
    cancel_race_rate: float = Field(default=0.0, ge=0, le=1)  # a cancel of a queued request meets its completion
    # Results.
    result_retention_s: int = Field(default=7 * 24 * 3600, ge=1)  # fal's default; the request header overrides
    video_size_bytes: int = Field(default=64 * 1024, ge=0)  # 0: a real MP4 clip (PyAV), as the Kling sim's

    def with_changes(self, knobs: dict[str, Any]) -> FalSimConfig:
        unknown = sorted(set(knobs) - set(type(self).model_fields))
        if unknown:
            raise FalSimConfigError(f"unknown knob(s): {', '.join(unknown)}")
        try:
            return type(self).model_validate({**self.model_dump(), **knobs})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise FalSimConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
