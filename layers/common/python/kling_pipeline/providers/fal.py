"""fal.ai's door to Kling's models, as rules (no HTTP: adapters/fal_client.py sends what this builds).

- **Which of our models fal serves, under which id**: `ENDPOINTS`, one row per (model, kind, mode), each
  with the date it was checked and its source, in the style of capabilities.py. Our request is first
  held to Kling's own table (requests.py); `fal_problems` then refuses what fal's endpoint has no place
  for, before any money is spent, each refusal naming the field and the fix.
- **The arguments** fal's endpoint takes (`build_arguments`): `prompt`, `duration` as a string,
  `aspect_ratio` (text to video), `negative_prompt`, `cfg_scale`, `image_url` (v2.x) or
  `start_image_url`/`end_image_url` (v3), `tail_image_url` (v2.1 pro), `generate_audio` (v2.6, v3).
- **What fal's words mean** in ours: IN_QUEUE -> queued, IN_PROGRESS -> running, COMPLETED -> "read
  the result" (fal has no FAILED: a result fetch answering 422 is the refusal, a 5xx/504 is transient,
  adapters/fal_client.py), anything else -> unknown. The webhook body and the result are read here.

Sources: docs/fal-contract.md ("Kling's models on fal", gathered from docs.fal.ai and each model's
llms.txt page, 2026-12). Rows marked "id pattern" follow fal's documented `<version>/<tier>/<kind>`
scheme for a tier the notes do not list by name: check the model page before relying on them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from kling_pipeline.capabilities import Source
from kling_pipeline.errors import ProviderCapabilityError
from kling_pipeline.providers import ProviderTask, TaskStatus
from kling_pipeline.requests import JobRequest

PROVIDER: Final = "fal"
QUEUE_BASE_URL = "https://queue.fal.run"
DASHBOARD_URL = "https://fal.ai/dashboard/requests"
# fal keeps a result's media at least 7 days by default; we ask for 30 (Kling's own lifetime), so the
# download's repair path has as long on either door (X-Fal-Object-Lifecycle-Preference, per request).
DEFAULT_RESULT_RETENTION_S = 30 * 24 * 3600
FAL_DEFAULT_RETENTION_S = 7 * 24 * 3600
# fal's webhook window is short (tries until the stored result expires, about an hour: UNCONFIRMED,
# providers.md): an unsettled create waits this long for a webhook before it is called unsettled.
WEBHOOK_WINDOW_S = 3600


def _notes(fact: str) -> Source:
    return Source("2026-12-07", f"docs/fal-contract.md (Kling's models on fal: {fact})")


MODEL_IDS = _notes("Kling model ids on fal: fal-ai/kling-video/<version>/<tier>/<kind>, the listed examples")
ID_PATTERN = _notes("id pattern <version>/<tier>/<kind>; this tier is not listed by name (UNCONFIRMED)")
ISSUE_25 = Source("2026-12-07", "issue 25: kling-v2-6 on Kling is fal-ai/kling-video/v2.6/pro/text-to-video on fal")
ARGUMENTS = _notes("Arguments: duration as a string, 5/10, 3-15 on v3; image_url v1-v2.x, start/end_image_url v3")
TAIL = _notes("tail_image_url (some v2 pro): UNCONFIRMED which, so only v2.1 pro here")
AUDIO = _notes("generate_audio (v3, default true); v2.6 makes native audio")
NO_SEED = _notes("No seed; the schema has no camera control, masks, resolution or image lists")

FalKind = Literal["text-to-video", "image-to-video"]
FAL_KINDS: dict[str, FalKind] = {"text2video": "text-to-video", "image2video": "image-to-video"}
FIVE_OR_TEN = ("5", "10")
THREE_TO_FIFTEEN = tuple(str(s) for s in range(3, 16))


@dataclass(frozen=True)
class FalEndpoint:
    """One fal endpoint serving one of our (model, kind, mode), and what its schema takes."""

    model: str
    kind: str
    mode: str
    model_id: str
    durations: tuple[str, ...]
    image_field: str | None  # where the first frame goes (image to video)
    end_field: str | None  # where an end frame goes, when the endpoint takes one
    audio: bool  # takes generate_audio
    source: Source


def _row(model: str, version: str, mode: str, kind: str, source: Source, **rules: Any) -> FalEndpoint:
    tier = {"std": "standard", "pro": "pro"}[mode]
    v3 = version == "v3"
    fal_kind = FAL_KINDS[kind]
    image_field = None if kind == "text2video" else ("start_image_url" if v3 else "image_url")
    end_field = rules.get("end_field", "end_image_url" if v3 and kind == "image2video" else None)
    return FalEndpoint(
        model=model,
        kind=kind,
        mode=mode,
        model_id=f"fal-ai/kling-video/{version}/{tier}/{fal_kind}",
        durations=THREE_TO_FIFTEEN if v3 else FIVE_OR_TEN,
        image_field=image_field,
        end_field=end_field,
        audio=rules.get("audio", v3),
        source=source,
    )


ENDPOINTS: dict[tuple[str, str, str], FalEndpoint] = {
    (row.model, row.kind, row.mode): row
    for row in (
        _row("kling-v2-1", "v2.1", "std", "image2video", MODEL_IDS),
        _row("kling-v2-1", "v2.1", "pro", "image2video", ID_PATTERN, end_field="tail_image_url"),
        _row("kling-v2-5-turbo", "v2.5-turbo", "pro", "text2video", MODEL_IDS),
        _row("kling-v2-5-turbo", "v2.5-turbo", "pro", "image2video", ID_PATTERN),
        _row("kling-v2-5-turbo", "v2.5-turbo", "std", "image2video", ID_PATTERN),
        _row("kling-v2-6", "v2.6", "pro", "text2video", ISSUE_25, audio=True),
        _row("kling-v2-6", "v2.6", "pro", "image2video", ID_PATTERN, audio=True),
        _row("kling-v3", "v3", "std", "text2video", MODEL_IDS),
        _row("kling-v3", "v3", "pro", "text2video", MODEL_IDS),
        _row("kling-v3", "v3", "std", "image2video", MODEL_IDS),
        _row("kling-v3", "v3", "pro", "image2video", MODEL_IDS),
    )
}


def served() -> list[str]:
    """'model kind mode' for every row, for error messages and docs."""
    return [f"{m} {k} {mode}" for (m, k, mode) in ENDPOINTS]


def endpoint_for(model: str, kind: str, mode: str) -> FalEndpoint:
    """The fal endpoint for a request's model, kind and mode; ProviderCapabilityError naming the field and
    what fal serves instead."""
    found = ENDPOINTS.get((model, kind, mode))
    if found is not None:
        return found
    if kind not in FAL_KINDS:
        raise ProviderCapabilityError(
            PROVIDER,
            [f"kind: fal serves Kling's text2video and image2video only, not {kind}; use provider kling for {kind}"],
        )
    same_model = sorted({m for (name, k, m) in ENDPOINTS if name == model and k == kind})
    if same_model:
        problem = f"mode: fal serves {model} {kind} in mode {' or '.join(same_model)} only, not {mode}; set mode"
    else:
        models = sorted({name for (name, k, _) in ENDPOINTS if k == kind})
        problem = f"model: fal does not serve {model} for {kind}; use one of {', '.join(models)} (or provider kling)"
    raise ProviderCapabilityError(PROVIDER, [problem])


def fal_problems(request: JobRequest, endpoint: FalEndpoint) -> list[str]:
    """'field: why and the fix' for each field of `request` fal's endpoint has no place for. What Kling's own
    table refuses (sound on a silent model, aspect_ratio on image to video, an end frame in std) the request
    never gets past (requests.py); this adds only what fal's endpoints lack."""
    found: list[str] = []
    if request.duration not in endpoint.durations:
        takes = "3 to 15" if endpoint.durations == THREE_TO_FIFTEEN else "5 or 10"
        found.append(f"duration: {endpoint.model_id} takes {takes} seconds, not {request.duration}")
    unplaced = {
        "camera_control": request.camera_control is not None,
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
            found.append(f"{name}: fal's Kling endpoints take no {name}; remove it or use provider kling")
    if request.kind == "image2video" and not request.image:
        found.append(f"image: {endpoint.model_id} needs a first frame; set image")
    if request.image_tail and endpoint.end_field is None:
        found.append(
            f"image_tail: {endpoint.model_id} takes no end frame; remove image_tail, or use kling-v3 "
            "(or kling-v2-1 pro) on fal"
        )
    if not request.prompt:
        found.append(f"prompt: {endpoint.model_id} needs a prompt")
    return found


def build_arguments(
    request: JobRequest, *, default_model: str, image_urls: Mapping[str, str] | None = None
) -> tuple[FalEndpoint, dict[str, Any]]:
    """fal's endpoint for `request` and the JSON body its queue takes; ProviderCapabilityError (nothing sent)
    for what fal cannot do. `image_urls` gives the URL to hand fal for an `s3://` image ({field: url},
    presigned by the caller); an https URL goes as it is, raw base64 as a data URI."""
    model = request.model or default_model
    endpoint = endpoint_for(model, request.kind, request.mode)
    problems = fal_problems(request, endpoint)
    if problems:
        raise ProviderCapabilityError(PROVIDER, problems)
    arguments: dict[str, Any] = {"prompt": request.prompt, "duration": request.duration}
    if request.kind == "text2video" and request.aspect_ratio is not None:
        arguments["aspect_ratio"] = request.aspect_ratio
    if request.negative_prompt:
        arguments["negative_prompt"] = request.negative_prompt
    if request.cfg_scale is not None:
        arguments["cfg_scale"] = request.cfg_scale
    if endpoint.image_field is not None and request.image:
        arguments[endpoint.image_field] = _image_url("image", request.image, image_urls)
    if endpoint.end_field is not None and request.image_tail:
        arguments[endpoint.end_field] = _image_url("image_tail", request.image_tail, image_urls)
    if endpoint.audio:
        # fal's v3 makes sound unless told not to (its default is true); ours is off unless asked.
        arguments["generate_audio"] = bool(request.sound)
    return endpoint, arguments


def _image_url(field: str, value: str, resolved: Mapping[str, str] | None) -> str:
    if resolved and field in resolved:
        return resolved[field]
    if value.startswith("https://") or value.startswith("http://"):
        return value
    if value.startswith("s3://"):
        raise ValueError(f"{field}: an s3:// image must be presigned by the caller (image_urls) before fal sees it")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderCapabilityError(PROVIDER, [f"{field}: neither a URL nor base64"]) from None
    mime = "image/png" if raw.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{mime};base64,{value}"


# -- fal's answers, in our words ---------------------------------------------------------------------

STATUSES: dict[str, TaskStatus] = {"IN_QUEUE": "queued", "IN_PROGRESS": "running"}
COMPLETED = "COMPLETED"


def status_of(answer: Mapping[str, Any], request_id: str) -> ProviderTask | None:
    """A status answer in our words; None for COMPLETED, which says only "read the result now"."""
    status = answer.get("status")
    if status == COMPLETED:
        return None
    position = answer.get("queue_position")
    return ProviderTask(
        provider=PROVIDER,
        id=request_id,
        status=STATUSES.get(str(status), "unknown"),
        queue_position=position if isinstance(position, int) and not isinstance(position, bool) else None,
        error=None if status in STATUSES else f"fal status {str(status)[:40]!r} is not one this version knows",
    )


def result_of(answer: Any, request_id: str, *, expires_at: float | None) -> ProviderTask:
    """A result fetch's 200 body: succeeded with the video's URL, or failed when it has none (Kling's
    `succeed` without a video is a failure too: there is nothing to collect)."""
    video = answer.get("video") if isinstance(answer, Mapping) else None
    url = video.get("url") if isinstance(video, Mapping) else None
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return ProviderTask(PROVIDER, request_id, "succeeded", video_url=url, video_expires_at=expires_at)
    return ProviderTask(PROVIDER, request_id, "failed", error="fal's result has no video URL")


def refusal_of(answer: Any, request_id: str) -> ProviderTask:
    """A result fetch's 422: Kling's refusal through fal (content policy, invalid input), with fal's detail."""
    return ProviderTask(PROVIDER, request_id, "failed", error=f"fal refused the request (422): {detail_text(answer)}")


def detail_text(answer: Any, limit: int = 500) -> str:
    """fal's error detail for a person: `detail` is a string or a list of {loc, msg, type}."""
    detail = answer.get("detail", answer) if isinstance(answer, Mapping) else answer
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{where + ': ' if where else ''}{item.get('msg', item.get('type', ''))}")
            else:
                parts.append(str(item))
        text = "; ".join(parts)
    else:
        text = str(detail)
    return text[:limit] or "no detail"


@dataclass(frozen=True)
class FalWebhook:
    """fal's webhook body: {request_id, gateway_request_id, status: OK | ERROR, payload, error, payload_error}."""

    request_id: str
    status: str
    payload: Any
    error: str | None


def read_webhook_body(body: bytes) -> FalWebhook:
    """The webhook's fields; ValueError for a body that is not fal's."""
    import json

    data = json.loads(body)
    if not isinstance(data, Mapping) or not isinstance(data.get("request_id"), str) or not data["request_id"]:
        raise ValueError("not a fal webhook body (no request_id)")
    error = data.get("error")
    return FalWebhook(
        request_id=data["request_id"],
        status=str(data.get("status", "")),
        payload=data.get("payload"),
        error=None if error is None else str(error)[:500],
    )


def webhook_task(hook: FalWebhook, *, expires_at: float | None) -> ProviderTask:
    """What a verified webhook says: succeeded with the video when OK carries one; otherwise "unknown",
    the result fetch deciding (ERROR may be Kling's 422 or a transient 5xx: the same rule as COMPLETED)."""
    if hook.status == "OK":
        task = result_of(hook.payload, hook.request_id, expires_at=expires_at)
        if task.status == "succeeded":
            return task
    error = hook.error or (detail_text(hook.payload) if hook.payload else None)
    return ProviderTask(
        PROVIDER, hook.request_id, "unknown", error=f"fal webhook {hook.status}: {error or 'no detail'}"
    )
