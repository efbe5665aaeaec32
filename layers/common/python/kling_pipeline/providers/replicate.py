"""Replicate's door to Kling's models, as rules (no HTTP: adapters/replicate_client.py sends what this builds).

- **Which of our models Replicate serves, under which name**: `MODELS`, one row per (model, kind, mode),
  each dated and sourced. Kling's models on Replicate belong to the owner `kwaivgi`; a create goes to
  `POST /v1/models/kwaivgi/<name>/predictions`. Our request is first held to Kling's own table
  (requests.py); `replicate_problems` then refuses what the model's input schema has no place for, before
  any money is spent, each refusal naming the field and the fix.
- **The input** (`build_input`): `prompt`, `negative_prompt`, `duration` (a number, 5 or 10),
  `aspect_ratio` (text to video), `start_image`, `end_image` (kling-v2.1 pro only), `mode` (kling-v2.1:
  standard or pro).
- **What Replicate's words mean** in ours: `starting` -> queued, `processing` -> running, `succeeded` ->
  succeeded with the one output URL (which lives an hour: `OUTPUT_LIFETIME_S`), `failed`, `canceled`
  and `aborted` -> failed (aborted: it never started before `Cancel-After`, and is not charged). A
  succeeded prediction whose output is gone (`data_removed`, or no output) is failed with
  `OUTPUT_EXPIRED`: the video was made and can no longer be copied.

Sources: docs/replicate-contract.md ("Kling's models on Replicate", "Predictions", gathered from
replicate.com/docs and each model's page, 2026-12).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kling_pipeline.capabilities import Source
from kling_pipeline.errors import ProviderCapabilityError
from kling_pipeline.providers import OUTPUT_EXPIRED, ProviderTask, TaskStatus
from kling_pipeline.requests import JobRequest

PROVIDER: Final = "replicate"
API_BASE_URL = "https://api.replicate.com"
DASHBOARD_URL = "https://replicate.com/predictions"
OWNER = "kwaivgi"
# Replicate deletes an API prediction's inputs and output an hour after it ends (docs/replicate-contract.md,
# "One hour"): the video must be copied within it, and a lost webhook noticed well inside it.
OUTPUT_LIFETIME_S = 3600
LIST_PAGE_SIZE = 100  # GET /v1/predictions: 100 a page, newest first, `next` cursor
WEBHOOK_EVENTS: Final = ("completed",)


def _notes(fact: str) -> Source:
    return Source("2026-12-07", f"docs/replicate-contract.md (Kling's models on Replicate: {fact})")


MODEL_LIST = _notes("owner kwaivgi: kling-v1.6-standard, -v1.6-pro, -v2.0, -v2.1, -v2.1-master, -v2.5-turbo-pro")
V21 = _notes("kling-v2.1: start_image required, mode standard/pro, end_image pro only")
INPUTS = _notes("inputs prompt, start_image, end_image, duration 5/10, aspect_ratio, negative_prompt, mode")


@dataclass(frozen=True)
class ReplicateModel:
    """One Replicate model serving one of our (model, kind, mode), and what its input takes."""

    model: str
    kind: str
    mode: str
    name: str  # kwaivgi/<name>
    mode_input: str | None  # the value of its `mode` input, for a model that takes one
    end_image: bool  # takes end_image
    source: Source

    @property
    def endpoint(self) -> str:
        return f"{OWNER}/{self.name}"


def _rows(model: str, name: str, modes: tuple[str, ...], kinds: tuple[str, ...], **rules: Any) -> list[ReplicateModel]:
    return [
        ReplicateModel(
            model=model,
            kind=kind,
            mode=mode,
            name=name,
            mode_input=rules.get("mode_input", {}).get(mode),
            end_image=kind == "image2video" and mode in rules.get("end_image_modes", ()),
            source=rules.get("source", MODEL_LIST),
        )
        for mode in modes
        for kind in kinds
    ]


BOTH = ("text2video", "image2video")
MODELS: dict[tuple[str, str, str], ReplicateModel] = {
    (row.model, row.kind, row.mode): row
    for row in (
        *_rows("kling-v1-6", "kling-v1.6-standard", ("std",), BOTH),
        *_rows("kling-v1-6", "kling-v1.6-pro", ("pro",), BOTH),
        *_rows("kling-v2-master", "kling-v2.0", ("std", "pro"), BOTH),
        # kling-v2.1 needs start_image: image to video only; its `mode` input picks the tier.
        *_rows(
            "kling-v2-1",
            "kling-v2.1",
            ("std", "pro"),
            ("image2video",),
            mode_input={"std": "standard", "pro": "pro"},
            end_image_modes=("pro",),
            source=V21,
        ),
        *_rows("kling-v2-1-master", "kling-v2.1-master", ("std", "pro"), BOTH),
        *_rows("kling-v2-5-turbo", "kling-v2.5-turbo-pro", ("pro",), BOTH),
    )
}
DURATIONS = ("5", "10")


def served() -> list[str]:
    """'model kind mode' for every row, for error messages and docs."""
    return [f"{m} {k} {mode}" for (m, k, mode) in MODELS]


def model_for(model: str, kind: str, mode: str) -> ReplicateModel:
    """Replicate's model for a request's model, kind and mode; ProviderCapabilityError naming the field and
    what Replicate serves instead."""
    found = MODELS.get((model, kind, mode))
    if found is not None:
        return found
    if kind not in BOTH:
        raise ProviderCapabilityError(
            PROVIDER,
            [f"kind: Replicate serves Kling's text2video and image2video only, not {kind}; use provider kling"],
        )
    same_model = sorted({m for (name, k, m) in MODELS if name == model and k == kind})
    if same_model:
        problem = f"mode: Replicate serves {model} {kind} in mode {' or '.join(same_model)} only, not {mode}; set mode"
    elif any(name == model for (name, _, _) in MODELS):
        other = sorted({k for (name, k, _) in MODELS if name == model})
        problem = (
            f"kind: Replicate's {model} does {' and '.join(other)} only (it needs start_image); set kind "
            "image2video with an image, or use kling-v2-1-master or kling-v2-5-turbo"
        )
    else:
        models = sorted({name for (name, k, _) in MODELS if k == kind})
        problem = (
            f"model: Replicate does not serve {model} for {kind}; use one of {', '.join(models)} (or provider kling)"
        )
    raise ProviderCapabilityError(PROVIDER, [problem])


def replicate_problems(request: JobRequest, row: ReplicateModel) -> list[str]:
    """'field: why and the fix' for each field of `request` the model's input has no place for."""
    found: list[str] = []
    if request.duration not in DURATIONS:
        found.append(f"duration: {row.endpoint} takes 5 or 10 seconds, not {request.duration}; set duration")
    unplaced = {
        "cfg_scale": request.cfg_scale is not None,
        "camera_control": request.camera_control is not None,
        "static_mask": request.static_mask is not None,
        "dynamic_masks": request.dynamic_masks is not None,
        "image_list": request.image_list is not None,
        "resolution": request.resolution is not None,
        "video_id": request.video_id is not None,
        "extend": request.extend is not None,
        "kling_options": bool(request.kling_options),
        "watermark": request.watermark is not None,
        "sound": bool(request.sound),
    }
    for name, present in unplaced.items():
        if present:
            found.append(f"{name}: Replicate's Kling models take no {name}; remove it or use provider kling")
    if request.kind == "image2video" and not request.image:
        found.append(f"image: {row.endpoint} needs a first frame (start_image); set image")
    if request.image_tail and not row.end_image:
        found.append(f"image_tail: {row.endpoint} takes no end frame; remove image_tail, or use kling-v2-1 pro")
    if not request.prompt:
        found.append(f"prompt: {row.endpoint} needs a prompt; set prompt")
    return found


def build_input(
    request: JobRequest, *, default_model: str, image_urls: Mapping[str, str] | None = None
) -> tuple[ReplicateModel, dict[str, Any]]:
    """Replicate's model for `request` and the `input` of its create; ProviderCapabilityError (nothing sent)
    for what Replicate cannot do. `image_urls` gives the URL for an `s3://` image (presigned by the caller)."""
    model = request.model or default_model
    row = model_for(model, request.kind, request.mode)
    problems = replicate_problems(request, row)
    if problems:
        raise ProviderCapabilityError(PROVIDER, problems)
    arguments: dict[str, Any] = {"prompt": request.prompt, "duration": int(request.duration)}
    if request.kind == "text2video" and request.aspect_ratio is not None:
        arguments["aspect_ratio"] = request.aspect_ratio
    if request.negative_prompt:
        arguments["negative_prompt"] = request.negative_prompt
    if row.mode_input is not None:
        arguments["mode"] = row.mode_input
    if request.kind == "image2video" and request.image:
        arguments["start_image"] = _image(request.image, "image", image_urls)
    if row.end_image and request.image_tail:
        arguments["end_image"] = _image(request.image_tail, "image_tail", image_urls)
    return row, arguments


def _image(value: str, field: str, resolved: Mapping[str, str] | None) -> str:
    if resolved and field in resolved:
        return resolved[field]
    if value.startswith(("https://", "http://")):
        return value
    if value.startswith("s3://"):
        raise ValueError(
            f"{field}: an s3:// image must be presigned by the caller (image_urls) before Replicate sees it"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderCapabilityError(PROVIDER, [f"{field}: neither a URL nor base64"]) from None
    mime = "image/png" if raw.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{mime};base64,{value}"


# -- Replicate's answers, in our words ---------------------------------------------------------------

STATUSES: dict[str, TaskStatus] = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "failed",
    "aborted": "failed",
}
ENDED = frozenset({"succeeded", "failed", "canceled", "aborted"})


def epoch(value: Any) -> float | None:
    """Replicate's ISO 8601 timestamps ("2026-12-07T10:00:00.123456Z") as epoch seconds; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def output_url(output: Any) -> str | None:
    """The one video URL of a prediction's output (a string; a one-item list is taken too)."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    return output if isinstance(output, str) and output.startswith(("https://", "http://")) else None


def task_of(prediction: Mapping[str, Any]) -> ProviderTask:
    """A prediction (a look-up's answer, or a webhook's body) in our words."""
    pid = str(prediction.get("id", ""))
    status = str(prediction.get("status", ""))
    ours = STATUSES.get(status, "unknown")
    if ours == "unknown":
        return ProviderTask(PROVIDER, pid, "unknown", error=f"Replicate status {status[:40]!r} is not one we know")
    if status == "succeeded":
        url = output_url(prediction.get("output"))
        if prediction.get("data_removed") or url is None:
            return ProviderTask(
                PROVIDER,
                pid,
                "failed",
                error_code=OUTPUT_EXPIRED,
                error=(
                    "Replicate made the video but has deleted it (API predictions' outputs are kept one hour): "
                    "it was not copied in time"
                ),
            )
        completed = epoch(prediction.get("completed_at"))
        expires = None if completed is None else completed + OUTPUT_LIFETIME_S
        return ProviderTask(PROVIDER, pid, "succeeded", video_url=url, video_expires_at=expires)
    if status in ("failed", "canceled", "aborted"):
        return ProviderTask(PROVIDER, pid, "failed", error=failure_text(prediction))
    return ProviderTask(PROVIDER, pid, ours)


def failure_text(prediction: Mapping[str, Any], limit: int = 500) -> str:
    status = str(prediction.get("status"))
    if status == "aborted":
        return "Replicate aborted the prediction: it had not started before its deadline (Cancel-After); not charged"
    if status == "canceled":
        return "Replicate canceled the prediction"
    error = prediction.get("error")
    text = error if isinstance(error, str) else json.dumps(error) if error else "no detail"
    return f"Replicate: the prediction failed: {text}"[:limit]


def read_webhook_body(body: bytes) -> dict[str, Any]:
    """A webhook's body: the whole prediction; ValueError for a body that is not one."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ValueError("not a Replicate prediction (no id)")
    return data
