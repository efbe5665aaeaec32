"""A job request: its fields, their rules, and how a raw message becomes one (or a clear refusal).

Producers send these on JobsQueue (or from Step Functions with a task token); the CLI validates a
file of them before sending. Validation mirrors Kling's own rules, so a bad request fails here with
a message that names the field, instead of costing a round trip (or a paid task) at Kling. Kept
apart from the submit use case so the CLI and the jobs API can import it alone.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kling_pipeline.errors import InvalidJobMessageError

# Used in S3 keys, URL paths and Step Functions execution names (80 chars, with a suffix).
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_PROMPT_CHARS = 2500
MAX_METADATA_BYTES = 2048
MAX_TASK_TOKEN_CHARS = 2048
# A job item must fit DynamoDB's 400 KB; larger images travel as URLs.
MAX_INLINE_IMAGE_CHARS = 200_000

JobKind = Literal["text2video", "image2video", "video-extend"]
JOB_KINDS: tuple[str, ...] = ("text2video", "image2video", "video-extend")


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizontal: float = Field(default=0, ge=-10, le=10)
    vertical: float = Field(default=0, ge=-10, le=10)
    pan: float = Field(default=0, ge=-10, le=10)
    tilt: float = Field(default=0, ge=-10, le=10)
    roll: float = Field(default=0, ge=-10, le=10)
    zoom: float = Field(default=0, ge=-10, le=10)


class CameraControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
    config: CameraConfig | None = None

    @model_validator(mode="after")
    def _simple_moves_one_axis(self) -> CameraControl:
        if self.type == "simple":
            values = self.config.model_dump().values() if self.config else []
            if sum(1 for v in values if v != 0) != 1:
                raise ValueError(
                    "camera_control.config: with type 'simple' exactly one of horizontal, vertical, "
                    "pan, tilt, roll, zoom must be non-zero"
                )
        elif self.config is not None:
            raise ValueError(f"camera_control.config: only type 'simple' takes a config, not {self.type!r}")
        return self


class JobRequest(BaseModel):
    """One video request as producers put it on the queue (or POST it, or pass it from Step Functions)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    job_id: Annotated[str | None, Field(default=None, pattern=JOB_ID_PATTERN)] = None
    kind: JobKind = "text2video"
    prompt: Annotated[str, Field(default="", max_length=MAX_PROMPT_CHARS)] = ""
    negative_prompt: Annotated[str | None, Field(default=None, max_length=MAX_PROMPT_CHARS)] = None
    model: Annotated[str | None, Field(default=None, min_length=1, max_length=64)] = None
    mode: Literal["std", "pro"] = "std"
    duration: Literal["5", "10"] = "5"
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    cfg_scale: Annotated[float | None, Field(default=None, ge=0, le=1)] = None
    camera_control: CameraControl | None = None
    image: str | None = None
    image_tail: str | None = None
    video_id: Annotated[str | None, Field(default=None, min_length=1, max_length=128)] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    task_token: Annotated[str | None, Field(default=None, min_length=1, max_length=MAX_TASK_TOKEN_CHARS)] = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_as_string(cls, value: Any) -> Any:
        # Kling wants the string "5" or "10"; producers often send the number.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; keep it under {MAX_METADATA_BYTES} bytes")
        return value

    @field_validator("image", "image_tail")
    @classmethod
    def _image_is_url_or_raw_base64(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("data:"):
            raise ValueError("send the image as a URL or raw base64 without the 'data:...;base64,' prefix")
        if value is not None and len(value) > MAX_INLINE_IMAGE_CHARS:
            raise ValueError(
                f"inline base64 images are limited to {MAX_INLINE_IMAGE_CHARS} characters; send an https URL"
            )
        return value

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> JobRequest:
        if self.kind == "text2video":
            if not self.prompt:
                raise ValueError("prompt is required for text2video (1 to 2500 characters)")
            for name in ("image", "image_tail", "video_id"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} does not apply to text2video; use kind 'image2video'")
        elif self.kind == "image2video":
            if not self.image:
                raise ValueError("image is required for image2video (an https URL or raw base64)")
            if self.aspect_ratio is not None:
                raise ValueError("aspect_ratio does not apply to image2video: the image decides it")
            if self.image_tail and self.camera_control:
                raise ValueError("image_tail and camera_control cannot be combined")
        elif self.kind == "video-extend" and not self.video_id:
            raise ValueError("video_id is required for video-extend (a video id from an earlier result)")
        return self

    def kling_body(self, *, default_model: str, callback_url: str, external_task_id: str) -> dict[str, Any]:
        """The create body for Kling: only the fields this kind takes, unset ones left to Kling's defaults."""
        body: dict[str, Any] = {"callback_url": callback_url, "external_task_id": external_task_id}
        if self.kind == "video-extend":
            body["video_id"] = self.video_id
            if self.prompt:
                body["prompt"] = self.prompt
            if self.negative_prompt:
                body["negative_prompt"] = self.negative_prompt
            if self.cfg_scale is not None:
                body["cfg_scale"] = self.cfg_scale
            return body
        body |= {"model_name": self.model or default_model, "mode": self.mode, "duration": self.duration}
        optional = {
            "prompt": self.prompt or None,
            "negative_prompt": self.negative_prompt,
            "cfg_scale": self.cfg_scale,
            "aspect_ratio": self.aspect_ratio,
            "image": self.image,
            "image_tail": self.image_tail,
        }
        body |= {k: v for k, v in optional.items() if v is not None}
        if self.camera_control is not None:
            body["camera_control"] = self.camera_control.model_dump(exclude_none=True)
        return body

    def as_message(self) -> dict[str, Any]:
        """The request as a queue message, job id included: what a retry re-sends and what the job
        record keeps, which is how a redelivered message is recognised as the same request."""
        return self.model_dump(mode="json", exclude_none=True)


def parse_job_message(raw_body: str, message_id: str) -> JobRequest:
    """Validate a queue message; its job id defaults to the SQS message id (stable across redeliveries)."""
    try:
        payload = json.loads(raw_body)
    except json.JSONDecodeError as exc:
        raise InvalidJobMessageError(
            f"message body is not JSON ({exc.msg} at position {exc.pos}); send a JSON object such as "
            '{"prompt": "..."}',
            _valid_or_none(message_id),
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidJobMessageError(
            f"message body must be a JSON object, not {type(payload).__name__}", _valid_or_none(message_id)
        )
    claimed_id = payload.get("job_id")
    if claimed_id is None:
        payload["job_id"] = message_id  # absent or null: the message id is the job's idempotency key
    job_id = claimed_id if isinstance(claimed_id, str) and is_valid_job_id(claimed_id) else message_id
    try:
        return JobRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJobMessageError(describe_validation_error(exc), _valid_or_none(job_id)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """'field: what is wrong' for each problem, in words a producer can act on."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "message"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field; remove it (see the README for the job message fields)"
        parts.append(f"{field}: {message}")
    return "invalid job request: " + "; ".join(parts)


def is_valid_job_id(value: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, value) is not None


def _valid_or_none(candidate: str) -> str | None:
    return candidate if is_valid_job_id(candidate) else None
