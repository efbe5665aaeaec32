"""Every knob of the Replicate simulator, in one validated, immutable model.

Defaults are Replicate's worst case where the contract (docs/replicate-contract.md) promises nothing,
except the fault rates, which are 0 so a test turns on the fault it is about. Simulated durations (the
start, the generation, the output's hour, `Cancel-After`) are divided by `speed`; `webhook_delay_s` is
wall-clock.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Kling's models on Replicate (owner kwaivgi); other names are 404.
DEFAULT_MODELS: tuple[str, ...] = tuple(
    f"kwaivgi/{name}"
    for name in (
        "kling-v1.6-standard",
        "kling-v1.6-pro",
        "kling-v2.0",
        "kling-v2.1",
        "kling-v2.1-master",
        "kling-v2.5-turbo-pro",
    )
)
# A fixed secret, so a stack restarted keeps verifying (base64 of "replicate-sim-webhook-secret" after whsec_).
DEFAULT_WEBHOOK_SECRET = "whsec_cmVwbGljYXRlLXNpbS13ZWJob29rLXNlY3JldA=="  # noqa: S105 - the simulator's own


class ReplicateSimConfigError(ValueError):
    """A knob update was refused; the message names the knob (never a secret value)."""


class ReplicateSimConfig(BaseModel):
    """The Replicate simulator's knobs. Frozen: change them with `ReplicateSimulator.configure(**knobs)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    api_token: str = Field(default="r8_sim_token", min_length=1)  # `Authorization: Bearer <api_token>`
    webhook_secret: str = Field(default=DEFAULT_WEBHOOK_SECRET, pattern=r"^whsec_[A-Za-z0-9+/=]+$")
    seed: int | None = None
    speed: float = Field(default=1.0, gt=0)
    start_min_s: float = Field(default=1.0, ge=0)  # `starting`: a cold boot before `processing`
    start_max_s: float = Field(default=10.0, ge=0)
    generation_min_s: float = Field(default=60.0, ge=0)
    generation_max_s: float = Field(default=180.0, ge=0)
    concurrency_limit: int = Field(default=0, ge=0)  # 0: no limit; more wait in `starting`
    models: tuple[str, ...] = DEFAULT_MODELS
    page_size: int = Field(default=100, ge=1, le=100)  # GET /v1/predictions
    output_lifetime_s: float = Field(default=3600.0, gt=0)  # API predictions' outputs are deleted after an hour
    # `Cancel-After` read as wall-clock seconds, not divided by `speed`: what a pipeline whose timeouts are
    # already divided by the same speed sends (the local stack's time_scale), else its deadline is cut twice.
    cancel_after_wall_clock: bool = False
    # Faults.
    create_answer_loss_rate: float = Field(default=0.0, ge=0, le=1)  # the prediction is made; its answer is cut
    create_5xx_rate: float = Field(default=0.0, ge=0, le=1)  # the prediction is made; the answer is a 500
    throttle_rate: float = Field(default=0.0, ge=0, le=1)  # any API call answers 429 (nothing done)
    failure_rate: float = Field(default=0.0, ge=0, le=1)  # a prediction ends `failed`
    webhook_loss_rate: float = Field(default=0.0, ge=0, le=1)  # a webhook never sent
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)  # sent twice, the same webhook-id
    webhook_delay_s: float = Field(default=0.0, ge=0)
    webhook_attempts: int = Field(default=3, ge=1, le=20)  # tries while the receiver answers non-2xx
    video_size_bytes: int = Field(default=64 * 1024, ge=1)

    def with_changes(self, knobs: dict[str, Any]) -> ReplicateSimConfig:
        unknown = sorted(set(knobs) - set(type(self).model_fields))
        if unknown:
            raise ReplicateSimConfigError(f"unknown knob(s): {', '.join(unknown)}")
        try:
            return type(self).model_validate({**self.model_dump(), **knobs})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ReplicateSimConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
