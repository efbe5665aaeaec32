"""Every knob of the AceData simulator, in one validated, immutable model.

Defaults are AceData's worst case where the contract (docs/acedata-contract.md) promises nothing, except
the fault rates, which are 0 so a test turns on the fault it is about. Simulated durations (the
generation, and so a synchronous create's hold) are divided by `speed`; `callback_delay_s` is wall-clock.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_MODELS: tuple[str, ...] = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
    "kling-v3-omni",
    "kling-o1",
)


class AceDataSimConfigError(ValueError):
    """A knob update was refused; the message names the knob (never a secret value)."""


class AceDataSimConfig(BaseModel):
    """The AceData simulator's knobs. Frozen: change them with `AceDataSimulator.configure(**knobs)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    api_token: str = Field(default="acedata-sim-token", min_length=1)  # `authorization: Bearer <api_token>`
    seed: int | None = None
    speed: float = Field(default=1.0, gt=0)
    generation_min_s: float = Field(default=60.0, ge=0)
    generation_max_s: float = Field(default=120.0, ge=0)
    models: tuple[str, ...] = DEFAULT_MODELS
    # Faults.
    account_error: Literal["", "invalid_token", "token_mismatched", "api_not_implemented"] = ""  # every call
    too_many_requests_rate: float = Field(default=0.0, ge=0, le=1)  # 429 too_many_requests (nothing done)
    api_error_rate: float = Field(default=0.0, ge=0, le=1)  # 500 api_error; on a create, after the task is made
    create_answer_loss_rate: float = Field(default=0.0, ge=0, le=1)  # the task is made; its answer is cut
    failure_rate: float = Field(default=0.0, ge=0, le=1)  # a task ends failed
    callback_loss_rate: float = Field(default=0.0, ge=0, le=1)
    callback_duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    callback_delay_s: float = Field(default=0.0, ge=0)
    callback_attempts: int = Field(default=3, ge=1, le=20)
    # Lies (callbacks are unsigned): an early "succeed" while the task still runs, or a wrong video URL.
    early_callback_rate: float = Field(default=0.0, ge=0, le=1)
    wrong_url_rate: float = Field(default=0.0, ge=0, le=1)
    batch_missing_rate: float = Field(default=0.0, ge=0, le=1)  # each id left out of a retrieve_batch answer
    video_size_bytes: int = Field(default=64 * 1024, ge=1)

    def with_changes(self, knobs: dict[str, Any]) -> AceDataSimConfig:
        unknown = sorted(set(knobs) - set(type(self).model_fields))
        if unknown:
            raise AceDataSimConfigError(f"unknown knob(s): {', '.join(unknown)}")
        try:
            return type(self).model_validate({**self.model_dump(), **knobs})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise AceDataSimConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
