"""fal's door as rules: which of our models fal serves under which id, the arguments its queue takes, and
what is refused (naming the field and the fix) before anything is sent."""

from __future__ import annotations

import pytest

from kling_local.sim import png_base64
from kling_pipeline.errors import ProviderCapabilityError
from kling_pipeline.providers.fal import (
    ENDPOINTS,
    build_arguments,
    detail_text,
    endpoint_for,
    read_webhook_body,
    result_of,
    status_of,
    webhook_task,
)
from kling_pipeline.providers.fal_prices import PRICES
from kling_pipeline.requests import JobRequest

PNG = png_base64(400, 400)


def request(**fields: object) -> JobRequest:
    return JobRequest.model_validate({"prompt": "a red fox in snow", **fields})


def refusal(**fields: object) -> str:
    with pytest.raises(ProviderCapabilityError) as caught:
        build_arguments(request(**fields), default_model="kling-v2-6")
    return str(caught.value)


@pytest.mark.parametrize(
    ("model", "kind", "mode", "model_id"),
    [
        ("kling-v2-6", "text2video", "pro", "fal-ai/kling-video/v2.6/pro/text-to-video"),
        ("kling-v3", "text2video", "std", "fal-ai/kling-video/v3/standard/text-to-video"),
        ("kling-v3", "text2video", "pro", "fal-ai/kling-video/v3/pro/text-to-video"),
        ("kling-v3", "image2video", "std", "fal-ai/kling-video/v3/standard/image-to-video"),
        ("kling-v3", "image2video", "pro", "fal-ai/kling-video/v3/pro/image-to-video"),
        ("kling-v2-1", "image2video", "std", "fal-ai/kling-video/v2.1/standard/image-to-video"),
        ("kling-v2-5-turbo", "text2video", "pro", "fal-ai/kling-video/v2.5-turbo/pro/text-to-video"),
    ],
)
def test_our_models_map_to_fals_ids(model: str, kind: str, mode: str, model_id: str) -> None:
    # Given one of our (model, kind, mode) / When fal's endpoint is asked for / Then it is fal's documented id
    assert endpoint_for(model, kind, mode).model_id == model_id


def test_every_endpoint_row_is_dated_and_sourced_and_has_a_price() -> None:
    for row in ENDPOINTS.values():
        assert row.source.checked and row.source.where, row
        assert row.model_id in PRICES, f"{row.model_id} has no price: the budget could not estimate it"


def test_the_seed_example_v3_pro_text_to_video_10s_16_9_builds_fals_arguments() -> None:
    # Given the seed's fal example as our request
    endpoint, arguments = build_arguments(
        request(model="kling-v3", mode="pro", duration=10, aspect_ratio="16:9", negative_prompt="blur", cfg_scale=0.5),
        default_model="kling-v2-6",
    )
    # Then the duration is a string, and v3's sound is asked off unless the job asks for it (fal's default is on)
    assert endpoint.model_id == "fal-ai/kling-video/v3/pro/text-to-video"
    assert arguments == {
        "prompt": "a red fox in snow",
        "duration": "10",
        "aspect_ratio": "16:9",
        "negative_prompt": "blur",
        "cfg_scale": 0.5,
        "generate_audio": False,
    }


def test_v3_frames_go_to_start_and_end_image_url_and_v2_frames_to_image_url() -> None:
    _, v3 = build_arguments(
        request(
            kind="image2video",
            model="kling-v3",
            mode="pro",
            image="https://img.example/a.png",
            image_tail="https://img.example/b.png",
            sound=True,
        ),
        default_model="kling-v2-6",
    )
    assert v3["start_image_url"] == "https://img.example/a.png"
    assert v3["end_image_url"] == "https://img.example/b.png"
    assert v3["generate_audio"] is True
    _, v21 = build_arguments(request(kind="image2video", model="kling-v2-1", image=PNG), default_model="kling-v2-6")
    assert v21["image_url"] == f"data:image/png;base64,{PNG}"
    assert "generate_audio" not in v21 and "start_image_url" not in v21


def test_an_s3_image_takes_the_url_the_caller_presigned() -> None:
    _, arguments = build_arguments(
        request(kind="image2video", model="kling-v3", image="s3://inputs/a.png"),
        default_model="kling-v2-6",
        image_urls={"image": "https://inputs.s3.amazonaws.com/a.png?X-Amz-Signature=x"},
    )
    assert arguments["start_image_url"].startswith("https://inputs.s3.amazonaws.com/")


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"model": "kling-v2-6", "mode": "std"}, "mode: fal serves kling-v2-6 text2video in mode pro only"),
        ({"model": "kling-v1-6", "mode": "pro"}, "model: fal does not serve kling-v1-6"),
        ({"kind": "multi-image2video", "image_list": [{"image": "https://i.example/a.png"}] * 2}, "kind: fal serves"),
        ({"model": "kling-v3", "camera_control": {"type": "down_back"}}, "camera_control: fal's Kling endpoints"),
        (
            {
                "kind": "image2video",
                "model": "kling-v2-5-turbo",
                "mode": "pro",
                "image": "https://i.example/a.png",
                "image_tail": "https://i.example/b.png",
            },
            "image_tail: fal-ai/kling-video/v2.5-turbo/pro/image-to-video takes no end frame",
        ),
        ({"model": "kling-v3", "mode": "pro", "duration": "15", "watermark": True}, "watermark: fal's Kling"),
        ({"model": "kling-v3", "kling_options": {"x": 1}}, "kling_options: fal's Kling endpoints take no"),
    ],
)
def test_what_fal_cannot_do_is_refused_before_anything_is_sent_naming_the_field(
    fields: dict[str, object], names: str
) -> None:
    # When a request asks what fal's endpoint has no place for / Then the refusal names the field and a fix
    assert names in refusal(**fields)


def test_fal_statuses_in_our_words_and_completed_means_read_the_result() -> None:
    assert status_of({"status": "IN_QUEUE", "queue_position": 3}, "r").status == "queued"  # type: ignore[union-attr]
    assert status_of({"status": "IN_QUEUE", "queue_position": 3}, "r").queue_position == 3  # type: ignore[union-attr]
    assert status_of({"status": "IN_PROGRESS"}, "r").status == "running"  # type: ignore[union-attr]
    assert status_of({"status": "COMPLETED"}, "r") is None
    assert status_of({"status": "FAILED"}, "r").status == "unknown"  # type: ignore[union-attr]


def test_a_result_without_a_video_is_a_failure_and_fals_detail_reads_for_a_person() -> None:
    assert result_of({"video": {"url": "https://v3.fal.media/x.mp4"}}, "r", expires_at=None).status == "succeeded"
    assert result_of({"images": []}, "r", expires_at=None).status == "failed"
    detail = {"detail": [{"loc": ["body", "prompt"], "msg": "flagged by the content checker", "type": "x"}]}
    assert detail_text(detail) == "prompt: flagged by the content checker"


def test_a_webhook_error_is_not_a_failure_until_the_result_says_so() -> None:
    # Given fal's webhook bodies: OK with a video, and ERROR (a 422 or a transient 5xx, fal does not say which)
    ok = read_webhook_body(b'{"request_id":"r","status":"OK","payload":{"video":{"url":"https://v3.fal.media/v.mp4"}}}')
    error = read_webhook_body(b'{"request_id":"r","status":"ERROR","payload":null,"error":"Internal error"}')
    # Then OK is a success and ERROR is "unknown": the result fetch decides (422 failed, 5xx ask again)
    assert webhook_task(ok, expires_at=None).status == "succeeded"
    assert webhook_task(error, expires_at=None).status == "unknown"
    with pytest.raises(ValueError):
        read_webhook_body(b'{"status":"OK"}')
