"""Kling's create bodies: a request's own create (step 1) and an extend chain's next step (a
video-extend of the previous step's video). Only the fields a kind takes are sent; unset ones are
left to Kling's defaults (docs/kling-contract.md, create bodies).

A model of Kling's newer design (capabilities.design_of) gets that design's body: `prompt` or
`contents[]`, `settings` and `options`, from the same request (docs/kling-contract.md, "The newer API
design"); the job's request is the same whichever design serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kling_pipeline import capabilities

if TYPE_CHECKING:
    from kling_pipeline.lifecycle import Job
    from kling_pipeline.requests import JobRequest


def create_body(
    request: JobRequest,
    *,
    default_model: str,
    callback_url: str,
    external_task_id: str,
    images: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The create body for Kling: only the fields this kind takes, unset ones left to Kling's defaults.
    `images` replaces image references by field (an S3 image by its presigned URL)."""
    sent = dict(images or {})
    body: dict[str, Any] = {"callback_url": callback_url, "external_task_id": external_task_id}
    if request.kind == "video-extend":
        body["video_id"] = request.video_id
        if request.prompt:
            body["prompt"] = request.prompt
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if request.cfg_scale is not None:
            body["cfg_scale"] = request.cfg_scale
        return body | (request.kling_options or {})
    model = capabilities.effective_model(request.kind, request.model, default_model)
    if model is not None and capabilities.design_of(model) == "new":
        return new_design_body(request, callback_url=callback_url, external_task_id=external_task_id, images=sent)
    body |= {"model_name": model, "mode": request.mode, "duration": request.duration}
    optional = {
        "prompt": request.prompt or None,
        "negative_prompt": request.negative_prompt,
        "cfg_scale": request.cfg_scale,
        "aspect_ratio": request.aspect_ratio,
        "image": sent.get("image", request.image),
        "image_tail": sent.get("image_tail", request.image_tail),
        "static_mask": sent.get("static_mask", request.static_mask),
        "sound": _sound(request, model),
        "watermark_info": None if request.watermark is None else {"enabled": request.watermark},
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    if request.camera_control is not None:
        body["camera_control"] = request.camera_control.model_dump(exclude_none=True)
    if request.image_list is not None:
        body["image_list"] = [
            _list_item(request, sent.get(f"image_list[{i}]", item.image), item.type)
            for i, item in enumerate(request.image_list)
        ]
    if request.dynamic_masks is not None:
        body["dynamic_masks"] = [
            {
                "mask": sent.get(f"dynamic_masks[{i}].mask", item.mask),
                "trajectories": [p.model_dump() for p in item.trajectories],
            }
            for i, item in enumerate(request.dynamic_masks)
        ]
    return body | (request.kling_options or {})


def new_design_body(
    request: JobRequest, *, callback_url: str, external_task_id: str, images: Mapping[str, str]
) -> dict[str, Any]:
    """The newer design's create body (the model is in the path, not here): the prompt, or `contents[]`
    when there are frames or elements; `settings` from the request's own fields, with kling_options
    (the model's settings the request has no field for, such as multi_shot) beside them; `options`
    with what the pipeline owns (the callback, exactly-once's external id)."""
    contents: list[dict[str, str]] = []
    if request.kind == "image2video":
        contents.append({"type": "first_frame", "image": images.get("image", request.image or "")})
        if request.image_tail is not None:
            contents.append({"type": "last_frame", "image": images.get("image_tail", request.image_tail)})
    for i, item in enumerate(request.image_list or []):
        frame = {"first_frame": "first_frame", "end_frame": "last_frame"}.get(item.type or "", "element")
        contents.append({"type": frame, "image": images.get(f"image_list[{i}]", item.image)})
    body: dict[str, Any] = {}
    if contents:
        body["contents"] = ([{"type": "prompt", "text": request.prompt}] if request.prompt else []) + contents
    elif request.prompt:
        body["prompt"] = request.prompt
    settings = {
        "resolution": request.resolution,
        "duration": int(request.duration),
        "audio": None if request.sound is None else ("native" if request.sound else "off"),
        "aspect_ratio": request.aspect_ratio,
    }
    body["settings"] = {k: v for k, v in settings.items() if v is not None} | (request.kling_options or {})
    body["options"] = {"callback_url": callback_url, "external_task_id": external_task_id} | (
        {} if request.watermark is None else {"watermark_info": {"enabled": request.watermark}}
    )
    return body


def _sound(request: JobRequest, model: str | None) -> str | None:
    # "off" is not sent to a model the table knows makes no sound: it may not know the field.
    spec = capabilities.MODELS.get(model or "")
    if request.sound is None or (not request.sound and spec is not None and not spec.sound.value):
        return None
    return "on" if request.sound else "off"


def _list_item(request: JobRequest, image: str, image_type: str | None) -> dict[str, str]:
    # multi-image2video items are {image}; omni-video items are {image_url[, type]}.
    if request.kind == "omni-video":
        return {"image_url": image} | ({"type": image_type} if image_type else {})
    return {"image": image}


def step_body(job: Job, *, callback_url: str) -> dict[str, Any]:
    """The video-extend create body of step n >= 2: the previous step's video, this step's prompt."""
    assert job.step >= 2 and job.steps, "step 1 is the request's own create"
    extend = (job.request.get("extend") or [])[job.step - 2]
    body: dict[str, Any] = {
        "video_id": job.steps[-1]["video_id"],
        "callback_url": callback_url,
        "external_task_id": job.external_task_id,
    }
    for field in ("prompt", "negative_prompt", "cfg_scale"):
        if extend.get(field) not in (None, ""):
            body[field] = extend[field]
    return body
