"""A job request: its fields, their rules, and how a raw message becomes one (or a clear refusal).

Producers send these on JobsQueue (or from Step Functions with a task token); the CLI validates a
file of them before sending. Validation mirrors Kling's own rules, so a bad request fails here with
a message that names the field, instead of costing a round trip (or a paid task) at Kling. Kept
apart from the submit use case so the CLI and the jobs API can import it alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kling_pipeline.errors import InvalidJobMessageError

# Used in S3 keys, URL paths and Step Functions execution names (80 chars, with a suffix).
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_PROMPT_CHARS = 2500
MAX_METADATA_BYTES = 2048
MAX_TASK_TOKEN_CHARS = 2048
MAX_WEBHOOK_URL_CHARS = 2048
# A job item must fit DynamoDB's 400 KB; larger images travel as URLs.
MAX_INLINE_IMAGE_CHARS = 200_000
# A message must fit the job item with room for its history: well under DynamoDB's 400 KB.
MAX_MESSAGE_BYTES = 256 * 1024
# Levels of JSON nesting a message may have (DynamoDB allows 32 in an item, which nests it twice).
MAX_NESTING = 16
# DynamoDB numbers: up to 38 significant digits, magnitude from 1E-130 to 9.99...E+125.
DYNAMO_MAX_DIGITS = 38
DYNAMO_LARGEST = Decimal("9.9999999999999999999999999999999999999E+125")
DYNAMO_SMALLEST = Decimal("1E-130")

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
    webhook_url: Annotated[str | None, Field(default=None, min_length=1, max_length=MAX_WEBHOOK_URL_CHARS)] = None

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

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_is_absolute(cls, value: str | None) -> str | None:
        # Only the URL's shape here; where it may point (https, public addresses, the allow-list) is
        # checked by the jobs API and again, with DNS, by the webhook sender (adapters.webhook_sender).
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook_url must be an absolute https URL, such as https://example.com/hooks/kling")
        if parts.username is not None or parts.password is not None or parts.fragment:
            raise ValueError("webhook_url must not carry credentials or a fragment")
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
    """Validate a queue message; its job id defaults to the SQS message id (stable across redeliveries).

    Whatever the body, this returns a request that DynamoDB and Kling can take, or raises
    InvalidJobMessageError naming what is wrong: never an error from deeper down."""
    fallback = _valid_or_none(message_id)
    size = len(raw_body.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise InvalidJobMessageError(
            f"message body is {size} bytes; the limit is {MAX_MESSAGE_BYTES} (send images as URLs)", fallback
        )
    try:
        payload = json.loads(raw_body, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidJobMessageError(
            f"message body is not JSON ({exc.msg} at position {exc.pos}); send a JSON object such as "
            '{"prompt": "..."}',
            fallback,
        ) from exc
    except RecursionError:
        raise InvalidJobMessageError(f"message body nests deeper than {MAX_NESTING} levels", fallback) from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long for Python to read
        detail = str(exc) if "DynamoDB" in str(exc) else "an integer with thousands of digits"
        raise InvalidJobMessageError(f"message body has a number that cannot be stored: {detail}", fallback) from None
    if not isinstance(payload, dict):
        raise InvalidJobMessageError(f"message body must be a JSON object, not {type(payload).__name__}", fallback)
    claimed_id = payload.get("job_id")
    job_id = claimed_id if isinstance(claimed_id, str) and is_valid_job_id(claimed_id) else message_id
    problems = list(unstorable(payload))
    if problems:
        raise InvalidJobMessageError("invalid job request: " + "; ".join(problems[:5]), _valid_or_none(job_id))
    if claimed_id is None:
        payload["job_id"] = message_id  # absent or null: the message id is the job's idempotency key
    try:
        return JobRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJobMessageError(describe_validation_error(exc), _valid_or_none(job_id)) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number DynamoDB (or Kling) can store")


def unstorable(value: Any, path: str = "", depth: int = 0) -> Iterator[str]:
    """'field: why' for every value of a message that DynamoDB cannot store: numbers out of its range
    or precision, strings that are not valid Unicode, nesting deeper than MAX_NESTING."""
    where = path or "message"
    if depth > MAX_NESTING:
        yield f"{where}: nests deeper than {MAX_NESTING} levels"
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield from _unstorable_number(value, where)
    elif isinstance(value, str):
        if not _is_unicode(value):
            yield f"{where}: is not valid Unicode text (it holds a lone surrogate)"
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _is_unicode(str(key)):
                yield f"{where}: has a key that is not valid Unicode text"
                continue
            yield from unstorable(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable(item, f"{where}[{index}]", depth + 1)


def _unstorable_number(value: float, where: str) -> Iterator[str]:
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{where}: {value} is not a number DynamoDB can store"
        return
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if number != 0 and not DYNAMO_SMALLEST <= abs(number) <= DYNAMO_LARGEST:
        yield f"{where}: {_short(number)} is outside the range DynamoDB can store (1E-130 to 9.9E+125)"
    elif len("".join(map(str, number.as_tuple().digits)).strip("0")) > DYNAMO_MAX_DIGITS:
        yield f"{where}: {_short(number)} has more than {DYNAMO_MAX_DIGITS} significant digits (send it as a string)"


def _short(number: Decimal) -> str:
    text = str(number)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
