"""Create-body validation as Kling does it: 1201 (HTTP 400) with a message that names the field.

Checks that need the simulator's state (a video-extend source video, external_task_id reuse) live
in `state.py`; everything decidable from the body alone is here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kling_local.sim.config import SimConfig
from kling_local.sim.errors import SimApiError, bad_request, invalid
from kling_local.sim.media import image_info, nearest_aspect_ratio

KINDS: tuple[str, ...] = ("text2video", "image2video", "video-extend", "multi-image2video", "omni-video", "lip-sync")
# Kling's duration rules as the simulator knows them: v1.x-v2.x take "5" or "10"; v3, omni and models
# configured beyond these (known_models) 3 to 15 seconds.
FIVE_OR_TEN_MODELS = frozenset(
    {
        "kling-v1",
        "kling-v1-5",
        "kling-v1-6",
        "kling-v2-master",
        "kling-v2-1",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
    }
)
# Only videos made by V1.0/1.5/1.6 can be extended (newer models make longer videos in one task).
EXTENDABLE_MODELS = frozenset({"kling-v1", "kling-v1-5", "kling-v1-6"})
OMNI_IMAGE_MAX = 7
MAX_PROMPT = 2500
MAX_EXTERNAL_ID = 256
MAX_IMAGE_BYTES = 10 * 1024 * 1024
CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True)
class TaskSpec:
    """What a valid create body asks for, normalised (defaults filled in)."""

    kind: str
    model_name: str | None
    mode: str
    duration: str
    prompt: str
    negative_prompt: str
    callback_url: str | None
    external_task_id: str | None
    watermark: bool
    source_video_id: str | None = None
    aspect_ratio: str = "16:9"  # what the result clip is shaped like
    sound: bool = False  # `sound: "on"`: the result clip has an audio track
    design: str = "legacy"  # "legacy" (/v1/videos/<kind>) or "new" (/<product>/<model>)
    resolution: str | None = None  # the newer design's settings.resolution


@dataclass(frozen=True)
class _Common:
    """Fields every kind takes."""

    callback_url: str | None
    external_task_id: str | None
    watermark: bool
    sound: bool = False

    def spec(
        self,
        kind: str,
        model_name: str | None,
        mode: str,
        duration: str,
        prompt: str,
        negative_prompt: str,
        source_video_id: str | None = None,
        aspect_ratio: str = "16:9",
    ) -> TaskSpec:
        return TaskSpec(
            kind=kind,
            model_name=model_name,
            mode=mode,
            duration=duration,
            prompt=prompt,
            negative_prompt=negative_prompt,
            callback_url=self.callback_url,
            external_task_id=self.external_task_id,
            watermark=self.watermark,
            source_video_id=source_video_id,
            aspect_ratio=aspect_ratio,
            sound=self.sound,
        )


def validate_create(
    kind: str, body: Any, config: SimConfig, fetched: dict[str, tuple[int, int]] | None = None
) -> TaskSpec:
    """Validate a create body for `kind`; raise SimApiError (1200/1201) naming the field. `fetched`:
    the sizes of the image URLs fetched before (sim.fetch), which shape the result clip."""
    sizes = dict(fetched or {})
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    callback_url = _callback_url(body)
    external_task_id = _external_task_id(body)
    watermark = _watermark(body)
    common = _Common(
        callback_url, external_task_id, watermark, sound=isinstance(body, dict) and body.get("sound") == "on"
    )
    if kind == "video-extend":
        video_id = _required_str(body, "video_id")
        prompt = _opt_text(body, "prompt")
        negative = _opt_text(body, "negative_prompt")
        _cfg_scale(body)
        return common.spec(kind, None, "std", "5", prompt, negative, source_video_id=video_id)
    if kind == "lip-sync":
        return _lip_sync(body, common)
    defaults = {"multi-image2video": "kling-v1-6", "omni-video": "kling-video-o1"}
    model = _model_name(body, config, default=defaults.get(kind, "kling-v1"))
    mode = _enum(body, "mode", ("std", "pro"), "std")
    duration = _duration(body, model)
    aspect = "16:9"
    negative = _opt_text(body, "negative_prompt")
    _cfg_scale(body)
    _enum(body, "sound", ("on", "off"), "off")
    if kind == "text2video":
        prompt = _opt_text(body, "prompt")
        if not prompt:
            raise invalid("prompt is required for text2video (1 to 2500 characters)")
        aspect = _enum(body, "aspect_ratio", ("16:9", "9:16", "1:1"), "16:9")
        _camera_control(body)
    elif kind == "image2video":
        prompt = _opt_text(body, "prompt")
        if body.get("image") in (None, ""):
            raise invalid("image is required for image2video (a URL or raw base64)")
        aspect = _image_aspect(_image(body, "image", config), body.get("image"), sizes)
        has_tail = body.get("image_tail") not in (None, "")
        if has_tail:
            _image(body, "image_tail", config)
        has_camera = _camera_control(body)
        has_masks = any(body.get(k) not in (None, "", []) for k in ("static_mask", "dynamic_masks"))
        if has_masks:
            _masks(body, config)
        if sum((has_tail, has_camera, has_masks)) > 1:
            raise invalid("image_tail, static_mask/dynamic_masks and camera_control cannot be combined: pick one")
    elif kind == "multi-image2video":
        prompt = _opt_text(body, "prompt")
        if not prompt:
            raise invalid("prompt is required for multi-image2video (1 to 2500 characters)")
        aspect = _enum(body, "aspect_ratio", ("16:9", "9:16", "1:1"), "16:9")
        images = body.get("image_list")
        if not isinstance(images, list) or not 1 <= len(images) <= 4:
            raise invalid('image_list is required: a list of 1 to 4 objects {"image": ...}')
        for i, item in enumerate(images):
            if not isinstance(item, dict):
                raise invalid(f'image_list[{i}] must be an object {{"image": ...}}')
            _image(item, "image", config, label=f"image_list[{i}].image")
    elif kind == "omni-video":
        prompt = _opt_text(body, "prompt")
        if not prompt and body.get("multi_shot") is not True:
            raise invalid("prompt is required for omni-video unless multi_shot is true")
        aspect = _enum(body, "aspect_ratio", ("16:9", "9:16", "1:1"), "16:9")
        images = body.get("image_list")
        if images is not None and (not isinstance(images, list) or len(images) > OMNI_IMAGE_MAX):
            raise invalid(f'image_list must be a list of at most {OMNI_IMAGE_MAX} objects {{"image_url": ...}}')
        for i, item in enumerate(images or []):
            if not isinstance(item, dict):
                raise invalid(f'image_list[{i}] must be an object {{"image_url": ..., "type": ...}}')
            info = _image(item, "image_url", config, label=f"image_list[{i}].image_url")
            frame = item.get("type")
            if frame not in (None, "first_frame", "end_frame"):
                raise invalid(f"image_list[{i}].type must be first_frame or end_frame")
            if frame == "first_frame" and "aspect_ratio" not in body:
                aspect = _image_aspect(info, item.get("image_url"), sizes)
    else:  # pragma: no cover - the router only passes known kinds
        raise SimApiError(1203, f"unknown task kind {kind!r}")
    return common.spec(kind, model, mode, duration, prompt, negative, aspect_ratio=aspect)


# -- field checks -------------------------------------------------------------------------------


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise invalid(f"{name} is required")
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    return value


def _opt_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if len(value) > MAX_PROMPT:
        raise invalid(f"{name} is {len(value)} characters; at most {MAX_PROMPT} are allowed")
    return value


def _enum(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise invalid(f"{name} must be one of {', '.join(allowed)}")
    return str(value)


def _duration(body: dict[str, Any], model: str) -> str:
    value = body.get("duration")
    if value is None:
        return "5"
    if model in FIVE_OR_TEN_MODELS:
        if not isinstance(value, str) or value not in ("5", "10"):
            raise invalid(f'duration must be the string "5" or "10" for {model}')
    elif not isinstance(value, str) or value not in {str(n) for n in range(3, 16)}:
        raise invalid(f'duration must be a string from "3" to "15" for {model}')
    return value


def _image_aspect(info: tuple[int, int] | None, reference: Any, fetched: dict[str, tuple[int, int]]) -> str:
    """The result's aspect ratio where an image decides it: from the decoded or fetched image."""
    size = info or (fetched.get(reference) if isinstance(reference, str) else None)
    return nearest_aspect_ratio(*size) if size else "16:9"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cfg_scale(body: dict[str, Any]) -> None:
    value = body.get("cfg_scale")
    if value is None:
        return
    if not _number(value) or not 0 <= value <= 1:
        raise invalid("cfg_scale must be a number between 0 and 1")


def _model_name(body: dict[str, Any], config: SimConfig, default: str) -> str:
    value = body.get("model_name")
    if value is None:
        return default
    if not isinstance(value, str) or value not in config.known_models:
        raise invalid(f"model_name {str(value)[:64]!r} is not supported; known: {', '.join(config.known_models)}")
    return value


def _callback_url(body: dict[str, Any]) -> str | None:
    value = body.get("callback_url")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid("callback_url must be a string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid("callback_url must be an http(s) URL")
    return value


def _external_task_id(body: dict[str, Any]) -> str | None:
    value = body.get("external_task_id")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid("external_task_id must be a string")
    if len(value) > MAX_EXTERNAL_ID:
        raise invalid(f"external_task_id is longer than {MAX_EXTERNAL_ID} characters")
    return value


def _watermark(body: dict[str, Any]) -> bool:
    value = body.get("watermark_info")
    if value is None:
        return False
    if not isinstance(value, dict) or not isinstance(value.get("enabled", False), bool):
        raise invalid('watermark_info must be an object {"enabled": true|false}')
    return bool(value.get("enabled", False))


def _camera_control(body: dict[str, Any]) -> bool:
    """Validate camera_control's shape; True when one is given."""
    value = body.get("camera_control")
    if value is None:
        return False
    if not isinstance(value, dict):
        raise invalid("camera_control must be an object {type, config}")
    kind = value.get("type")
    if kind not in CAMERA_TYPES:
        raise invalid(f"camera_control.type must be one of {', '.join(CAMERA_TYPES)}")
    unknown = set(value) - {"type", "config"}
    if unknown:
        raise invalid(f"camera_control has unknown field(s): {', '.join(sorted(unknown))}")
    config = value.get("config")
    if kind != "simple":
        if config is not None:
            raise invalid(f"camera_control.config is only allowed with type 'simple', not {kind!r}")
        return True
    if not isinstance(config, dict):
        raise invalid("camera_control.config is required with type 'simple'")
    bad = set(config) - set(CAMERA_AXES)
    if bad:
        raise invalid(f"camera_control.config has unknown field(s): {', '.join(sorted(bad))}")
    for axis, amount in config.items():
        if not _number(amount) or not -10 <= amount <= 10:
            raise invalid(f"camera_control.config.{axis} must be a number between -10 and 10")
    if sum(1 for amount in config.values() if amount != 0) != 1:
        raise invalid(
            "camera_control.config: with type 'simple' exactly one of " + ", ".join(CAMERA_AXES) + " must be non-zero"
        )
    return True


def _image(body: dict[str, Any], name: str, config: SimConfig, label: str | None = None) -> tuple[int, int] | None:
    """A URL or raw base64 (no `data:` prefix); base64 content is checked like Kling does. The size
    of a decoded base64 image, when it was decoded."""
    label = label or name
    value = body.get(name)
    if value is None or value == "":
        raise invalid(f"{label} is required")
    if not isinstance(value, str):
        raise invalid(f"{label} must be a string: a URL or raw base64")
    if value.startswith("data:"):
        raise invalid(f"{label}: send raw base64 without the 'data:...;base64,' prefix, or a URL")
    if "://" in value[:16]:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid(f"{label} must be an http(s) URL or raw base64")
        return None
    if not _BASE64.match(value) or len(value) % 4:
        raise invalid(f"{label} is neither an http(s) URL nor valid base64")
    if len(value) * 3 // 4 > MAX_IMAGE_BYTES:
        raise invalid(f"{label} is larger than 10 MB")
    if not config.check_image_content:
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{label} is not valid base64") from None
    return check_image_bytes(label, data)


def check_image_bytes(label: str, data: bytes) -> tuple[int, int]:
    """Kling's image rules on an image's bytes (base64-decoded, or fetched from its URL)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise invalid(f"{label} is larger than 10 MB")
    info = image_info(data)
    if info is None:
        raise invalid(f"{label} must be a jpg, jpeg or png image")
    _, width, height = info
    if min(width, height) < 300:
        raise invalid(f"{label} is {width}x{height}; width and height must be at least 300 px")
    if not 1 / 2.5 <= width / height <= 2.5:
        raise invalid(f"{label} aspect ratio {width}:{height} is outside 1:2.5 to 2.5:1")
    return width, height


def _masks(body: dict[str, Any], config: SimConfig) -> None:
    if body.get("static_mask") not in (None, ""):
        _image(body, "static_mask", config)
    masks = body.get("dynamic_masks")
    if masks in (None, []):
        return
    if not isinstance(masks, list) or len(masks) > 6:
        raise invalid("dynamic_masks must be a list of at most 6 objects {mask, trajectories}")
    for i, item in enumerate(masks):
        if not isinstance(item, dict) or not isinstance(item.get("trajectories"), list):
            raise invalid(f"dynamic_masks[{i}] must be an object {{mask, trajectories: [...]}}")
        _image(item, "mask", config, label=f"dynamic_masks[{i}].mask")


def _lip_sync(body: dict[str, Any], common: _Common) -> TaskSpec:
    """Minimal lip-sync: an `input` with a source video and a mode."""
    source = body.get("input")
    if not isinstance(source, dict):
        raise invalid("input is required: an object {video_id | video_url, mode, ...}")
    video_id = source.get("video_id")
    video_url = source.get("video_url")
    if not video_id and not video_url:
        raise invalid("input.video_id or input.video_url is required")
    if video_id is not None and not isinstance(video_id, str):
        raise invalid("input.video_id must be a string")
    if video_url is not None:
        parts = urlsplit(str(video_url))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid("input.video_url must be an http(s) URL")
    mode = source.get("mode")
    if mode not in ("text2video", "audio2video"):
        raise invalid("input.mode must be text2video or audio2video")
    if mode == "text2video" and not isinstance(source.get("text"), str):
        raise invalid("input.text is required with mode text2video")
    if mode == "audio2video" and not (source.get("audio_file") or source.get("audio_url")):
        raise invalid("input.audio_file or input.audio_url is required with mode audio2video")
    text = source.get("text") if isinstance(source.get("text"), str) else ""
    return common.spec("lip-sync", None, "std", "5", str(text), "", source_video_id=video_id or None)


# -- the newer design ---------------------------------------------------------------------------

NEW_MAX_PROMPT = 3072
NEW_TOP_LEVEL = frozenset({"prompt", "contents", "settings", "options"})
NEW_SETTINGS = frozenset({"resolution", "duration", "audio", "multi_shot", "aspect_ratio"})
NEW_OPTIONS = frozenset({"callback_url", "external_task_id", "watermark_info"})
NEW_CONTENT_TYPES = ("prompt", "first_frame", "last_frame", "element")
RESOLUTIONS = ("720p", "1080p", "4k")
# Kling 2.6: 5 or 10 seconds, native audio only at 1080p; the 3.0 family: 3 to 15 seconds.
FIVE_OR_TEN_NEW_MODELS = frozenset({"kling-2.6"})


def validate_new_create(
    route: str, body: Any, config: SimConfig, fetched: dict[str, tuple[int, int]] | None = None
) -> TaskSpec:
    """Validate a newer-design create for `route` (`<product>/<model>`, one of `new_design_routes`).

    Body: `prompt` or `contents[]` ({type: prompt, text} / {type: first_frame|last_frame|element, image}),
    `settings`, `options`. Stricter than the legacy validation where the contract is silent: an unknown
    field is refused (1201 naming it), so a misplaced `callback_url` is an error, not silently ignored."""
    product, model = route.split("/", 1)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    _no_unknown(body, NEW_TOP_LEVEL, "")
    settings = _object(body, "settings")
    options = _object(body, "options")
    _no_unknown(settings, NEW_SETTINGS, "settings.")
    _no_unknown(options, NEW_OPTIONS, "options.")
    prompt = _new_prompt(body.get("prompt"), "prompt")
    frames = _new_contents(body, config, fetched or {})
    if "prompt" in frames:
        if prompt:
            raise invalid("give the prompt once: either prompt or a contents[] item of type prompt")
        prompt = frames.pop("prompt")[0]
    resolution = _enum(settings, "resolution", RESOLUTIONS, "720p")
    duration = _new_duration(settings, model)
    audio = _enum(settings, "audio", ("native", "off"), "off")
    if model in FIVE_OR_TEN_NEW_MODELS and audio == "native" and resolution != "1080p":
        raise invalid(f"settings.audio native needs settings.resolution 1080p for {model}")
    multi_shot = settings.get("multi_shot", False)
    if not isinstance(multi_shot, bool):
        raise invalid("settings.multi_shot must be true or false")
    aspect = _enum(settings, "aspect_ratio", ("16:9", "9:16", "1:1"), "16:9")
    if product == "text-to-video":
        if frames:
            raise invalid(f"contents[] of type {', '.join(sorted(frames))} are not taken by text-to-video")
        if not prompt:
            raise invalid("a prompt is required for text-to-video (prompt or a contents[] item of type prompt)")
    elif product == "image-to-video":
        if "first_frame" not in frames:
            raise invalid("a contents[] item of type first_frame is required for image-to-video")
        if model.endswith("-turbo") and set(frames) != {"first_frame"}:
            raise invalid(f"{model} takes a first frame only: no {', '.join(sorted(set(frames) - {'first_frame'}))}")
        if len(frames["first_frame"]) > 1 or len(frames.get("last_frame", [])) > 1:
            raise invalid("contents[] takes at most one first_frame and one last_frame")
        aspect = frames["first_frame"][0]
    elif not prompt and not multi_shot:  # omni-video
        raise invalid("a prompt is required for omni-video unless settings.multi_shot is true")
    if len(frames.get("element", [])) > OMNI_IMAGE_MAX:
        raise invalid(f"contents[] takes at most {OMNI_IMAGE_MAX} elements")
    return TaskSpec(
        kind=product,
        model_name=model,
        mode="std" if resolution == "720p" else "pro",
        duration=str(duration),
        prompt=prompt,
        negative_prompt="",
        callback_url=_callback_url(options),
        external_task_id=_external_task_id(options),
        watermark=_watermark(options),
        aspect_ratio=aspect,
        sound=audio == "native",
        design="new",
        resolution=resolution,
    )


def _no_unknown(body: dict[str, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(prefix + str(name)[:64] for name in unknown[:5])}")


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{name} must be an object")
    return value


def _new_prompt(value: Any, label: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"{label} must be a string")
    if len(value) > NEW_MAX_PROMPT:
        raise invalid(f"{label} is {len(value)} characters; at most {NEW_MAX_PROMPT} are allowed")
    return value


def _new_duration(settings: dict[str, Any], model: str) -> int:
    value = settings.get("duration")
    if value is None:
        return 5
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("settings.duration must be an integer number of seconds")
    if model in FIVE_OR_TEN_NEW_MODELS:
        if value not in (5, 10):
            raise invalid(f"settings.duration must be 5 or 10 for {model}")
    elif not 3 <= value <= 15:
        raise invalid(f"settings.duration must be from 3 to 15 for {model}")
    return value


def _new_contents(body: dict[str, Any], config: SimConfig, fetched: dict[str, tuple[int, int]]) -> dict[str, list[str]]:
    """contents[] by type: the prompt's text, or each image's aspect ratio (what a result from it is shaped like)."""
    value = body.get("contents")
    if value is None:
        return {}
    if not isinstance(value, list):
        raise invalid("contents must be a list of {type, ...} objects")
    found: dict[str, list[str]] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or item.get("type") not in NEW_CONTENT_TYPES:
            raise invalid(f"contents[{i}].type must be one of {', '.join(NEW_CONTENT_TYPES)}")
        kind = str(item["type"])
        if kind == "prompt":
            _no_unknown(item, frozenset({"type", "text"}), f"contents[{i}].")
            text = _new_prompt(item.get("text"), f"contents[{i}].text")
            if not text:
                raise invalid(f"contents[{i}].text is required")
            found.setdefault(kind, []).append(text)
        else:
            _no_unknown(item, frozenset({"type", "image"}), f"contents[{i}].")
            info = _image(item, "image", config, label=f"contents[{i}].image")
            found.setdefault(kind, []).append(_image_aspect(info, item.get("image"), fetched))
    if len(found.get("prompt", [])) > 1:
        raise invalid("contents[] takes one item of type prompt")
    return found
