"""AceData Cloud's door to Kling's models (the reseller API of seed 002), as rules (no HTTP:
adapters/acedata_client.py sends what this builds).

- **Which of our models AceData serves, under which name**: `MODELS`, dated and sourced. A create is
  `POST /kling/videos` with `action` (text2video | image2video), `model`, `mode` and the inputs; our
  request is first held to Kling's own table (requests.py), and `acedata_problems` refuses what AceData
  has no place for, naming the field and the fix.
- **Callbacks are not signed** (none documented): a callback is a hint that names a task; the caller reads
  the task back (`retrieve`) before acting, as for an unsigned Kling callback. A callback may lie (say
  `succeed` while the task still runs, or carry a wrong URL): nothing here trusts it.
- **What AceData's words mean** in ours: `state` `succeed` with a video URL -> succeeded; `failed` /
  `fail`, or `success: false` -> failed; other states, or no answer yet -> running. UNCONFIRMED beyond
  `succeed` (docs/acedata-contract.md), so an unknown state is "running", never a failure.
- **Errors** `{success: false, error: {code, message}}`: `ACCOUNT_CODES` park the job with the fix;
  `BACKPRESSURE_CODES` mean "ask again later".

Sources: docs/acedata-contract.md (gathered from github.com/AceDataCloud/APIs and docs.acedata.cloud, and
seed 002, 2026-12).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kling_pipeline.capabilities import Source
from kling_pipeline.errors import ProviderCapabilityError
from kling_pipeline.providers import ProviderTask
from kling_pipeline.requests import JobRequest

PROVIDER: Final = "acedata"
API_BASE_URL = "https://api.acedata.cloud"
DASHBOARD_URL = "https://platform.acedata.cloud"
MAX_NEGATIVE_PROMPT_CHARS = 200
DEFAULT_BATCH_SIZE = 20  # ids per retrieve_batch: AceData documents no maximum (UNCONFIRMED): a setting

NAMES = Source("2026-12-07", "docs/acedata-contract.md (Create: model kling-v1 ... kling-v3, kling-v3-omni, kling-o1)")
BETWEEN = Source(
    "2026-12-07",
    "docs/acedata-contract.md (Create: the names between kling-v1 and kling-v3 follow Kling's own; UNCONFIRMED)",
)

# Our model -> AceData's `model`.
MODELS: dict[str, tuple[str, Source]] = {
    "kling-v1": ("kling-v1", NAMES),
    "kling-v1-5": ("kling-v1-5", BETWEEN),
    "kling-v1-6": ("kling-v1-6", BETWEEN),
    "kling-v2-master": ("kling-v2-master", BETWEEN),
    "kling-v2-1": ("kling-v2-1", BETWEEN),
    "kling-v2-1-master": ("kling-v2-1-master", BETWEEN),
    "kling-v2-5-turbo": ("kling-v2-5-turbo", BETWEEN),
    "kling-v2-6": ("kling-v2-6", BETWEEN),
    "kling-v3": ("kling-v3", NAMES),
    "kling-v3-omni": ("kling-v3-omni", NAMES),
    "kling-video-o1": ("kling-o1", NAMES),
}
ACTIONS = {"text2video": "text2video", "image2video": "image2video"}

# error.code -> what fixes it (the job is parked: no job is at fault, an operator is).
ACCOUNT_CODES: dict[str, str] = {
    "invalid_token": "AceData refused our token: store a valid token in the AceData credentials secret",
    "token_mismatched": (
        "the token is not for AceData's Kling API: subscribe it to Kling at AceData's console, or store the "
        "Kling token in the AceData credentials secret"
    ),
    "api_not_implemented": (
        "AceData does not offer this action or model: check the deployment's AceData base URL and the model "
        "against docs/acedata-contract.md"
    ),
}
BACKPRESSURE_CODES = frozenset({"too_many_requests", "api_error"})


def model_for(model: str, kind: str) -> str:
    """AceData's `model` for ours; ProviderCapabilityError naming the field and the fix."""
    if kind not in ACTIONS:
        raise ProviderCapabilityError(
            PROVIDER, [f"kind: AceData serves text2video and image2video here, not {kind}; use provider kling"]
        )
    found = MODELS.get(model)
    if found is None:
        raise ProviderCapabilityError(
            PROVIDER, [f"model: AceData does not serve {model}; use one of {', '.join(sorted(MODELS))}"]
        )
    return found[0]


def acedata_problems(request: JobRequest) -> list[str]:
    """'field: why and the fix' for each field of `request` AceData has no place for."""
    found: list[str] = []
    unplaced = {
        "static_mask": request.static_mask is not None,
        "dynamic_masks": request.dynamic_masks is not None,
        "image_list": request.image_list is not None,
        "resolution": request.resolution is not None,
        "video_id": request.video_id is not None,
        "extend": request.extend is not None,
        "kling_options": bool(request.kling_options),
        "watermark": request.watermark is not None,
    }
    for name, present in unplaced.items():
        if present:
            found.append(f"{name}: AceData's Kling API takes no {name}; remove it or use provider kling")
    if request.negative_prompt and len(request.negative_prompt) > MAX_NEGATIVE_PROMPT_CHARS:
        found.append(
            f"negative_prompt: AceData takes at most {MAX_NEGATIVE_PROMPT_CHARS} characters, not "
            f"{len(request.negative_prompt)}; shorten it"
        )
    if request.kind == "image2video" and not request.image:
        found.append("image: image2video needs a first frame (start_image_url); set image")
    if not request.prompt and request.kind == "text2video":
        found.append("prompt: text2video needs a prompt; set prompt")
    return found


def build_arguments(
    request: JobRequest, *, default_model: str, image_urls: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """AceData's model name for `request` and the body of its create (without `callback_url`, which the
    client always adds); ProviderCapabilityError (nothing sent) for what AceData cannot do."""
    model = model_for(request.model or default_model, request.kind)
    problems = acedata_problems(request)
    if problems:
        raise ProviderCapabilityError(PROVIDER, problems)
    arguments: dict[str, Any] = {
        "action": ACTIONS[request.kind],
        "model": model,
        "mode": request.mode,
        "prompt": request.prompt,
        "duration": int(request.duration),
    }
    if request.negative_prompt:
        arguments["negative_prompt"] = request.negative_prompt
    if request.kind == "text2video" and request.aspect_ratio is not None:
        arguments["aspect_ratio"] = request.aspect_ratio
    if request.cfg_scale is not None:
        arguments["cfg_scale"] = request.cfg_scale
    if request.camera_control is not None:
        arguments["camera_control"] = request.camera_control.model_dump(exclude_none=True)
    if request.image:
        arguments["start_image_url"] = _image(request.image, "image", image_urls)
    if request.image_tail:
        arguments["end_image_url"] = _image(request.image_tail, "image_tail", image_urls)
    if request.sound is not None:
        arguments["generate_audio"] = bool(request.sound)
    return model, arguments


def _image(value: str, field: str, resolved: Mapping[str, str] | None) -> str:
    if resolved and field in resolved:
        return resolved[field]
    if value.startswith(("https://", "http://")):
        return value
    if value.startswith("s3://"):
        raise ValueError(f"{field}: an s3:// image must be presigned by the caller (image_urls) before AceData sees it")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderCapabilityError(PROVIDER, [f"{field}: neither a URL nor base64"]) from None
    mime = "image/png" if raw.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{mime};base64,{value}"


# -- AceData's answers, in our words ------------------------------------------------------------------

SUCCEEDED = frozenset({"succeed", "succeeded", "success"})
FAILED = frozenset({"failed", "fail", "failure", "error"})


def task_of(task_id: str, response: Any) -> ProviderTask:
    """A task's `response` (a retrieve's item, or a callback's body) in our words. No response yet, or a
    state we do not know, is `running`: AceData documents only `succeed`."""
    if not isinstance(response, Mapping):
        return ProviderTask(PROVIDER, task_id, "running")
    state = str(response.get("state", "")).lower()
    url = response.get("video_url")
    error = response.get("error")
    if response.get("success") is False or state in FAILED:
        detail = error.get("message") if isinstance(error, Mapping) else error
        return ProviderTask(
            PROVIDER, task_id, "failed", error=f"AceData: the task failed: {detail or 'no detail'}"[:500]
        )
    if state in SUCCEEDED:
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            duration = response.get("duration")
            seconds = float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None
            return ProviderTask(PROVIDER, task_id, "succeeded", video_url=url, duration_s=seconds)
        return ProviderTask(PROVIDER, task_id, "failed", error="AceData says succeed but gives no video URL")
    return ProviderTask(PROVIDER, task_id, "running")


def item_task(item: Mapping[str, Any]) -> ProviderTask | None:
    """A retrieve's item (`{id, created_at, finished_at, request, response}`) in our words; None without an id."""
    task_id = item.get("id")
    if not isinstance(task_id, str) or not task_id:
        response = item.get("response")
        task_id = response.get("task_id") if isinstance(response, Mapping) else None
    if not isinstance(task_id, str) or not task_id:
        return None
    return task_of(task_id, item.get("response"))


def items_of(answer: Any) -> list[Mapping[str, Any]]:
    """The items of a retrieve or retrieve_batch answer: `{items: [...]}`, or one item as it is."""
    if not isinstance(answer, Mapping):
        return []
    items = answer.get("items")
    if isinstance(items, list):
        return [item for item in items if isinstance(item, Mapping)]
    return [answer] if "id" in answer or "response" in answer else []


def error_of(answer: Any) -> tuple[str, str] | None:
    """`(code, message)` of an error envelope `{success: false, error: {code, message}}`; None otherwise."""
    if not isinstance(answer, Mapping) or answer.get("success") is not False:
        return None
    error = answer.get("error")
    if not isinstance(error, Mapping):
        return ("unknown", "an error without a code")
    return (str(error.get("code", "unknown"))[:60], str(error.get("message", ""))[:300])


@dataclass(frozen=True)
class AceDataCallback:
    """A callback's body: `{success, task_id, video_id, video_url, duration, state}` (a hint, never trusted)."""

    task_id: str
    task: ProviderTask


def read_callback_body(body: bytes) -> AceDataCallback:
    """The callback's task id and what it claims; ValueError for a body that names no task."""
    data = json.loads(body)
    if not isinstance(data, Mapping) or not isinstance(data.get("task_id"), str) or not data["task_id"]:
        raise ValueError("not an AceData callback (no task_id)")
    return AceDataCallback(data["task_id"], task_of(data["task_id"], data))
