"""A job request: its fields, their rules, and how a raw message becomes one (or a clear refusal).

Producers send these on JobsQueue (or from Step Functions with a task token); the CLI validates a
file of them before sending. Validation mirrors Kling's own rules, so a bad request fails here with
a message that names the field, instead of costing a round trip (or a paid task) at Kling. Kept
apart from the submit use case so the CLI and the jobs API can import it alone.
What DynamoDB can store is kling_pipeline.storable; the create bodies sent to Kling,
kling_pipeline.kling_body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from kling_pipeline import capabilities
from kling_pipeline.errors import ImageRefusedError, InvalidJobMessageError
from kling_pipeline.images import check_base64_image, image_source
from kling_pipeline.job_ids import JOB_ID_PATTERN, is_valid_job_id, job_reference
from kling_pipeline.storable import MAX_NESTING, refuse_constant, unstorable

if TYPE_CHECKING:
    from kling_pipeline.lifecycle import Job

# Kling's limit on prompt and negative_prompt (docs/kling-contract.md, create bodies).
MAX_PROMPT_CHARS = 2500
# The newer design's models take longer prompts; the capability table holds each model to its own limit.
MAX_ANY_MODEL_PROMPT_CHARS = 3072
MAX_METADATA_BYTES = 2048
MAX_TASK_TOKEN_CHARS = 2048
MAX_WEBHOOK_URL_CHARS = 2048
# A job item must fit DynamoDB's 400 KB; larger images travel as URLs.
MAX_INLINE_IMAGE_CHARS = 200_000
# A message must fit the job item with room for its history: well under DynamoDB's 400 KB.
MAX_MESSAGE_BYTES = 256 * 1024
# kling_options travel in the job item and in every create: a few fields newer than the table.
MAX_KLING_OPTIONS_BYTES = 16 * 1024
# Rules that hold for every model (an unknown model is checked by these alone): a duration is a
# whole number of seconds, as a string, and no video Kling makes is longer than 3 minutes.
DURATION_PATTERN = r"^[1-9][0-9]{0,2}$"
MAX_DURATION_S = 180
# The deployment's DefaultModel where validation takes no context: the jobs API's request bodies,
# which Powertools validates (api_routes.handle sets it for each request, from ApiSettings).
DEPLOYMENT_DEFAULT_MODEL: ContextVar[str | None] = ContextVar("deployment_default_model", default=None)
# Each video-extend step adds 4-5 s (docs/kling-contract.md, video-extend); the chain must stay within the
# 3-minute total, counting the longer figure.
EXTEND_ADDS_AT_MOST_S = 5
MULTI_IMAGE_MAX = 4  # multi-image2video: 1 to 4 images
OMNI_IMAGE_MAX = 7  # omni-video: up to 7 reference images (without a reference video)

JobKind = Literal["text2video", "image2video", "multi-image2video", "video-extend", "omni-video"]
JOB_KINDS: tuple[str, ...] = tuple(capabilities.KINDS)
# Validation context for a request read back from a job record: it was checked when it was accepted,
# and a later version's table (or image rules) must not strand a job that is already under way.
STORED_REQUEST: dict[str, Any] = {"stored": True}
# Create-body fields the pipeline owns (exactly once, callbacks) or sets from first-class fields:
# kling_options may not set them.
PIPELINE_OWNED = frozenset({"callback_url", "external_task_id"})
FIRST_CLASS_KLING_FIELDS = {
    "model_name": "model",
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "mode": "mode",
    "duration": "duration",
    "aspect_ratio": "aspect_ratio",
    "cfg_scale": "cfg_scale",
    "camera_control": "camera_control",
    "image": "image",
    "image_tail": "image_tail",
    "image_list": "image_list",
    "static_mask": "static_mask",
    "dynamic_masks": "dynamic_masks",
    "video_id": "video_id",
    "sound": "sound",
    "watermark_info": "watermark",
    "resolution": "resolution",
    "audio": "sound",
    "contents": "prompt, image, image_tail or image_list",
}


def _check_image_value(field: str, value: str, info: ValidationInfo) -> str:
    """The form of an image reference; a base64 image is also held to Kling's rules here (URL and S3
    images are fetched and checked by the submit function)."""
    if len(value) > MAX_INLINE_IMAGE_CHARS and not value.startswith(("https://", "http://", "s3://")):
        raise ValueError(f"inline base64 images are limited to {MAX_INLINE_IMAGE_CHARS} characters; send an https URL")
    try:
        source = image_source(field, value)
        if source == "base64" and not _is_stored(info):
            check_base64_image(field, value)
    except ImageRefusedError as exc:
        raise ValueError(f"{exc.detail} ({exc.cite})") from None
    return value


def _located(problem: str) -> tuple[tuple[str, ...], str]:
    """A rule's message as (the field it names, the message without that field's "name: " prefix)."""
    match = re.match(r"([a-z_]+)", problem)
    field = match.group(1) if match else ""
    if field not in JobRequest.model_fields:
        return (), problem
    return (field,), problem.removeprefix(f"{field}: ")


def _is_stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizontal: float = Field(default=0, ge=-10, le=10)
    vertical: float = Field(default=0, ge=-10, le=10)
    pan: float = Field(default=0, ge=-10, le=10)
    tilt: float = Field(default=0, ge=-10, le=10)
    roll: float = Field(default=0, ge=-10, le=10)
    zoom: float = Field(default=0, ge=-10, le=10)


class ExtendStep(BaseModel):
    """One step of an extend chain: 4-5 s more of the previous step's video (Kling's video-extend)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: Annotated[str, Field(default="", max_length=MAX_PROMPT_CHARS)] = ""
    negative_prompt: Annotated[str | None, Field(default=None, max_length=MAX_PROMPT_CHARS)] = None
    cfg_scale: Annotated[float | None, Field(default=None, ge=0, le=1)] = None


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


class ImageListItem(BaseModel):
    """One image of `image_list`: a bare reference, or {image, type} (type: omni-video only)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    image: Annotated[str, Field(min_length=1)]
    type: Literal["first_frame", "end_frame"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_reference(cls, value: Any) -> Any:
        return {"image": value} if isinstance(value, str) else value

    @field_validator("image")
    @classmethod
    def _image_form(cls, value: str, info: ValidationInfo) -> str:
        return _check_image_value("image", value, info)


class TrajectoryPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: int
    y: int


class DynamicMask(BaseModel):
    """Motion brush: an area (a mask image) and the path it moves along."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    mask: Annotated[str, Field(min_length=1)]
    trajectories: Annotated[list[TrajectoryPoint], Field(min_length=2, max_length=77)]

    @field_validator("mask")
    @classmethod
    def _mask_form(cls, value: str, info: ValidationInfo) -> str:
        return _check_image_value("mask", value, info)


class JobRequest(BaseModel):
    """One video request as producers put it on the queue (or POST it, or pass it from Step Functions).

    Shape rules hold for every model; what a particular model takes follows the capability table
    (capabilities.py), checked against the request's model, or the deployment's default model given
    as validation context {"default_model": ...} (capabilities.DEFAULT_MODEL without one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    job_id: Annotated[str | None, Field(default=None, pattern=JOB_ID_PATTERN)] = None
    kind: JobKind = "text2video"
    prompt: Annotated[str, Field(default="", max_length=MAX_ANY_MODEL_PROMPT_CHARS)] = ""
    negative_prompt: Annotated[str | None, Field(default=None, max_length=MAX_PROMPT_CHARS)] = None
    model: Annotated[str | None, Field(default=None, min_length=1, max_length=64)] = None
    mode: Literal["std", "pro"] = "std"
    duration: Annotated[str, Field(default="5", pattern=DURATION_PATTERN)] = "5"
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    # The newer design's quality setting (its models take no mode); refused for a legacy model.
    resolution: Literal["720p", "1080p", "4k"] | None = None
    cfg_scale: Annotated[float | None, Field(default=None, ge=0, le=1)] = None
    camera_control: CameraControl | None = None
    image: str | None = None
    image_tail: str | None = None
    image_list: Annotated[list[ImageListItem] | None, Field(default=None, max_length=OMNI_IMAGE_MAX)] = None
    static_mask: str | None = None
    dynamic_masks: Annotated[list[DynamicMask] | None, Field(default=None, max_length=6)] = None
    video_id: Annotated[str | None, Field(default=None, min_length=1, max_length=128)] = None
    sound: bool | None = None
    watermark: bool | None = None
    kling_options: dict[str, Any] | None = None
    extend: Annotated[list[ExtendStep] | None, Field(default=None, min_length=1)] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    task_token: Annotated[str | None, Field(default=None, min_length=1, max_length=MAX_TASK_TOKEN_CHARS)] = None
    webhook_url: Annotated[str | None, Field(default=None, min_length=1, max_length=MAX_WEBHOOK_URL_CHARS)] = None
    # Which waiting job takes the next free Kling slot of its pool first (slots.py): 0 to 9, higher
    # first; absent is 5 (slots.DEFAULT_PRIORITY), kept absent so earlier requests read as they were.
    priority: int | None = Field(
        default=None,
        description="0 (lowest) to 9 (highest), 5 if absent: a waiting job of higher priority takes its pool's "
        "next free Kling slot first; equal priorities keep their order of arrival",
    )

    provider: Literal["kling", "fal", "replicate", "acedata"] | None = Field(
        default=None,
        description="the door to Kling's models: kling (Kling's own API), fal (fal.ai's queue), replicate "
        "(Replicate's kwaivgi models) or acedata (AceData Cloud's Kling API), each but kling enabled by its "
        "secret; absent is the deployment's DefaultProvider",
    )

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_as_string(cls, value: Any) -> Any:
        # Kling wants a string ("5"); producers often send the number.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("duration")
    @classmethod
    def _duration_in_range(cls, value: str) -> str:
        if int(value) > MAX_DURATION_S:
            raise ValueError(f"at most {MAX_DURATION_S} seconds (no Kling video is longer than 3 minutes)")
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_in_range(cls, value: Any) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9):
            return value
        raise ValueError(
            f"{repr(value)[:40]} is not a priority; use a whole number from 0 (lowest) to 9 (highest), "
            "or leave it out for 5"
        )

    @field_validator("sound", mode="before")
    @classmethod
    def _sound_on_off(cls, value: Any) -> Any:
        # Kling's own words are "on"/"off"; both forms are taken.
        return {"on": True, "off": False}.get(value, value) if isinstance(value, str) else value

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; keep it under {MAX_METADATA_BYTES} bytes")
        return value

    @field_validator("kling_options")
    @classmethod
    def _kling_options_fit(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        owned = sorted(PIPELINE_OWNED & set(value))
        if owned:
            raise ValueError(f"{', '.join(owned)} cannot be set: the pipeline sets them (exactly once, callbacks)")
        first_class = sorted(k for k in value if k in FIRST_CLASS_KLING_FIELDS)
        if first_class:
            use = ", ".join(f"{k} -> '{FIRST_CLASS_KLING_FIELDS[k]}'" for k in first_class)
            raise ValueError(f"use the job's own fields for these ({use}); kling_options is for fields the job lacks")
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
        if size > MAX_KLING_OPTIONS_BYTES:
            raise ValueError(f"kling_options is {size} bytes as JSON; keep it under {MAX_KLING_OPTIONS_BYTES} bytes")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_is_absolute(cls, value: str | None) -> str | None:
        # Only the URL's shape here; where it may point (https, public addresses, the allow-list) is
        # checked by the jobs API and again, with DNS, by the webhook sender (adapters.webhook_targets).
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook_url must be an absolute https URL, such as https://example.com/hooks/kling")
        if parts.username is not None or parts.password is not None or parts.fragment:
            raise ValueError("webhook_url must not carry credentials or a fragment")
        return value

    @field_validator("image", "image_tail", "static_mask")
    @classmethod
    def _image_is_url_s3_or_raw_base64(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return _check_image_value(str(info.field_name), value, info)

    @model_validator(mode="after")
    def _fields_fit_the_kind(self, info: ValidationInfo) -> JobRequest:
        problems = [problem] if (problem := self._kind_problem()) else []
        if not _is_stored(info):
            default_model = (
                (info.context or {}).get("default_model")
                or DEPLOYMENT_DEFAULT_MODEL.get()
                or capabilities.DEFAULT_MODEL
            )
            problems += self._check_capabilities(str(default_model))
            problems += self._check_provider(info.context or {})
        if problems:
            # Each rule is reported at the field it names, so callers (the jobs API, the CLI) can say which.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("job_rule", "{rule}", {"rule": text}), loc=location, input=None
                    )
                    for location, text in map(_located, problems)
                ],
            )
        return self

    def _kind_problem(self) -> str | None:
        """The rules of each kind, which hold for every model."""
        inputs = ("image", "image_tail", "image_list", "static_mask", "dynamic_masks", "video_id")
        given = {name for name in inputs if getattr(self, name) is not None}
        allowed = {
            "text2video": set(),
            "image2video": {"image", "image_tail", "static_mask", "dynamic_masks"},
            "multi-image2video": {"image_list"},
            "video-extend": {"video_id"},
            "omni-video": {"image_list"},
        }[self.kind]
        extra = sorted(given - allowed)
        if extra:
            hint = {"image_list": "multi-image2video or omni-video", "video_id": "video-extend"}.get(
                extra[0], "image2video"
            )
            return f"{extra[0]} does not apply to {self.kind}; use kind '{hint}'"
        if self.kind == "text2video" and not self.prompt:
            return "prompt is required for text2video (1 to 2500 characters)"
        if self.kind == "image2video":
            if not self.image:
                return "image is required for image2video (an https URL, s3://bucket/key or raw base64)"
            if self.aspect_ratio is not None:
                return "aspect_ratio does not apply to image2video: the image decides it"
            if self.image_tail and self.camera_control:
                return "image_tail and camera_control cannot be combined"
            if (self.static_mask or self.dynamic_masks) and (self.image_tail or self.camera_control):
                return "static_mask/dynamic_masks cannot be combined with image_tail or camera_control"
        if self.kind == "video-extend" and not self.video_id:
            return "video_id is required for video-extend (a video id from an earlier result)"
        if self.kind == "multi-image2video":
            if not self.image_list or len(self.image_list) > MULTI_IMAGE_MAX:
                return f"image_list: multi-image2video takes 1 to {MULTI_IMAGE_MAX} images"
            if not self.prompt:
                return "prompt is required for multi-image2video (1 to 2500 characters)"
            if any(item.type for item in self.image_list):
                return "image_list[].type (first_frame/end_frame) applies to omni-video only"
        if self.kind in ("multi-image2video", "omni-video") and self.camera_control is not None:
            return f"camera_control does not apply to {self.kind}"
        if self.extend:
            total = int(self.duration) + EXTEND_ADDS_AT_MOST_S * len(self.extend)
            if total > MAX_DURATION_S:
                most = (MAX_DURATION_S - int(self.duration)) // EXTEND_ADDS_AT_MOST_S
                return (
                    f"extend: {len(self.extend)} steps of up to {EXTEND_ADDS_AT_MOST_S} s on a {self.duration} s "
                    f"video may pass Kling's 3-minute limit ({total} s); at most {most} steps"
                )
        if self.kind == "omni-video":
            multi_shot = bool((self.kling_options or {}).get("multi_shot"))
            if not self.prompt and not multi_shot:
                return "prompt is required for omni-video (or kling_options.multi_shot with multi_prompt)"
            types = [item.type for item in self.image_list or [] if item.type]
            if len(types) != len(set(types)):
                return "image_list: at most one first_frame and one end_frame"
        return None

    def _check_capabilities(self, default_model: str) -> list[str]:
        """What the capability table refuses for this request's model; an unknown model is a warning."""
        model = capabilities.effective_model(self.kind, self.model, default_model)
        if model is None:
            if self.model:
                self._warnings.append(
                    f"model does not apply to {self.kind}: Kling uses the model that made the source video"
                )
            return []
        if not capabilities.is_known(model):
            self._warnings.append(capabilities.unknown_model_warning(model))
            return []
        return capabilities.violations(model, self.asks())

    def _check_provider(self, context: Mapping[str, Any]) -> list[str]:
        """A provider the deployment has not enabled, or what its door cannot do (doors.py): refused at
        accept, before any money is spent. `context["providers"]`: the enabled doors, when the caller knows
        them (the jobs API); `context["default_provider"]`: the door of a request naming none."""
        provider = self.provider or context.get("default_provider") or "kling"
        enabled = context.get("providers")
        from kling_pipeline.doors import DOORS

        door = DOORS.get(provider)
        if enabled is not None and provider not in enabled:
            where = f"store its key in the {door.secret} secret ({door.secret_hint})" if door else "enable it"
            return [f"provider: {provider} is not enabled in this deployment; {where} or send provider kling"]
        if door is None:
            return []
        default_model = context.get("default_model") or DEPLOYMENT_DEFAULT_MODEL.get() or capabilities.DEFAULT_MODEL
        return [f"{problem} (provider {provider})" for problem in door.problems(self, str(default_model))]

    def asks(self) -> capabilities.Asks:
        return capabilities.Asks(
            kind=self.kind,
            duration=self.duration,
            mode=self.mode,
            aspect_ratio=self.aspect_ratio,
            sound=self.sound,
            cfg_scale=self.cfg_scale is not None,
            camera_control=self.camera_control is not None,
            image_tail=self.image_tail is not None,
            extend_steps=len(self.extend or []),
            prompt_chars=len(self.prompt),
            negative_prompt=bool(self.negative_prompt),
            masks=self.static_mask is not None or self.dynamic_masks is not None,
            resolution=self.resolution,
        )

    @property
    def warnings(self) -> list[str]:
        """What validation let through but a person should know (an unknown model, say)."""
        return list(self._warnings)

    def image_slots(self) -> list[tuple[str, str]]:
        """(field, reference) for every image the request carries, fields named as in messages."""
        slots = [(name, getattr(self, name)) for name in ("image", "image_tail", "static_mask")]
        slots += [(f"image_list[{i}]", item.image) for i, item in enumerate(self.image_list or [])]
        slots += [(f"dynamic_masks[{i}].mask", item.mask) for i, item in enumerate(self.dynamic_masks or [])]
        return [(name, value) for name, value in slots if value is not None]

    def as_message(self) -> dict[str, Any]:
        """The request as a queue message, job id included: what a retry re-sends and what the job
        record keeps, which is how a redelivered message is recognised as the same request."""
        return self.model_dump(mode="json", exclude_none=True)


def stored_request(job: Job) -> JobRequest:
    """A job's request read back from its record, as it was accepted (not against today's capability
    table). Here, not on `Job`: the lifecycle does not import the request model."""
    return JobRequest.model_validate(job.request, context=STORED_REQUEST)


def parked_message(request: JobRequest) -> str:
    """What a parked job leaves in the DLQ: its request with its job id (readable, and the same job when
    redriven by any means), or a reference to the job when the request would not fit a message."""
    body = json.dumps(request.as_message(), separators=(",", ":"))
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        assert request.job_id is not None
        body = json.dumps(job_reference(request.job_id), separators=(",", ":"))
    return body


def parse_job_message(
    raw_body: str,
    message_id: str,
    *,
    default_model: str | None = None,
    stored: bool = False,
    default_provider: str | None = None,
    providers: frozenset[str] | None = None,
) -> JobRequest:
    """Validate a queue message; its job id defaults to the SQS message id (stable across redeliveries).
    `default_model` is the deployment's, used for a request that names no model. `stored`: the message
    of a job already accepted, read as its record is (not against today's capability table).
    `default_provider`, `providers`: the deployment's door for a request naming none, and the doors enabled
    (None: not checked here; the submit path parks a job whose door is closed).

    Whatever the body, this returns a request that DynamoDB and Kling can take, or raises
    InvalidJobMessageError naming what is wrong: never an error from deeper down."""
    fallback = _valid_or_none(message_id)
    size = len(raw_body.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise InvalidJobMessageError(
            f"message body is {size} bytes; the limit is {MAX_MESSAGE_BYTES} (send images as URLs)", fallback
        )
    try:
        payload = json.loads(raw_body, parse_constant=refuse_constant)
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
        return JobRequest.model_validate(
            payload,
            context=STORED_REQUEST
            if stored
            else {"default_model": default_model, "default_provider": default_provider, "providers": providers},
        )
    except ValidationError as exc:
        raise InvalidJobMessageError(describe_validation_error(exc), _valid_or_none(job_id)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """'field: what is wrong' for each problem, in words a producer can act on."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = error_message(error)
        if error["type"] == "extra_forbidden":
            message = "unknown field; remove it (see the README for the job message fields)"
        # A rule across fields (the kind's, the capability table's) names its fields itself.
        parts.append(f"{field}: {message}" if field else message)
    return "invalid job request: " + "; ".join(parts)


# What a value of a field with a pattern must be, in words: pydantic's own message is the raw regex.
PATTERN_WORDS = {
    "duration": ("a duration", "seconds: 5 or 10; 3 to 15 for kling-v3 and the omni models"),
    "job_id": ("a job id", "use 1 to 64 letters, digits, '-' or '_' (no spaces)"),
}


def error_message(error: Mapping[str, Any]) -> str:
    """One validation error's message, with what is valid instead of a pattern (the jobs API's too)."""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "string_pattern_mismatch":
        name = next((part for part in reversed(tuple(error.get("loc", ()))) if isinstance(part, str)), "")
        if name in PATTERN_WORDS:
            noun, valid = PATTERN_WORDS[name]
            return f"{str(error.get('input'))[:80]!r} is not {noun}; {valid}"
    return message


def _valid_or_none(candidate: str) -> str | None:
    return candidate if is_valid_job_id(candidate) else None
