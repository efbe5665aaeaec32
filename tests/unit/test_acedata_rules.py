"""AceData's door as rules: our models under AceData's names, the create's body, what is refused before
anything is sent, AceData's task answers and callbacks in our words, and its error envelope."""

from __future__ import annotations

import json

import pytest

from kling_local.sim import png_base64
from kling_pipeline.errors import ProviderCapabilityError
from kling_pipeline.providers.acedata import (
    ACCOUNT_CODES,
    BACKPRESSURE_CODES,
    MODELS,
    build_arguments,
    error_of,
    item_task,
    items_of,
    read_callback_body,
    task_of,
)
from kling_pipeline.requests import JobRequest

PNG = png_base64(400, 400)


def request(**fields: object) -> JobRequest:
    return JobRequest.model_validate({"prompt": "a red fox in snow", **fields})


def test_every_model_row_is_dated_and_sourced() -> None:
    for name, source in MODELS.values():
        assert name and source.checked and source.where


def test_the_create_body_names_acedatas_fields_and_never_the_callback() -> None:
    model, body = build_arguments(
        request(model="kling-v2-1", kind="image2video", image=PNG, mode="pro", duration=10), default_model="x"
    )
    assert model == "kling-v2-1"
    assert body["action"] == "image2video" and body["mode"] == "pro" and body["duration"] == 10
    assert body["start_image_url"].startswith("data:image/png;base64,")
    assert "callback_url" not in body and "async" not in body


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"model": "kling-v9"}, "model: AceData does not serve kling-v9"),
        ({"kind": "omni-video", "model": "kling-v3-omni"}, "kind: AceData serves text2video and image2video"),
        ({"negative_prompt": "x" * 201}, "negative_prompt: AceData takes at most 200 characters"),
        ({"resolution": "1080p", "model": "kling-3.0"}, "model: AceData does not serve kling-3.0"),
        ({"watermark": True}, "watermark: AceData's Kling API takes no watermark"),
    ],
)
def test_what_acedata_cannot_do_is_refused_naming_the_field_and_the_fix(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ProviderCapabilityError) as caught:
        build_arguments(request(**fields), default_model="kling-v2-6")
    assert words in str(caught.value)


def test_task_answers_in_our_words() -> None:
    assert task_of("t", None).status == "running"
    assert task_of("t", {"state": "processing"}).status == "running"
    done = task_of("t", {"success": True, "state": "succeed", "video_url": "https://cdn.example/v.mp4", "duration": 5})
    assert (done.status, done.video_url, done.duration_s) == ("succeeded", "https://cdn.example/v.mp4", 5.0)
    failed = task_of("t", {"success": False, "error": {"code": "x", "message": "refused by Kling"}})
    assert failed.status == "failed" and "refused by Kling" in (failed.error or "")
    assert task_of("t", {"state": "succeed"}).status == "failed"  # succeed without a video: nothing to collect


def test_retrieve_answers_one_item_or_items() -> None:
    item = {"id": "t1", "response": {"state": "succeed", "video_url": "https://cdn.example/v.mp4"}}
    assert [item_task(i).id for i in items_of({"items": [item], "count": 1})] == ["t1"]  # type: ignore[union-attr]
    assert [item_task(i).id for i in items_of(item)] == ["t1"]  # type: ignore[union-attr]
    assert items_of({"success": False, "error": {}}) == []


def test_the_error_envelope_and_which_codes_park_or_wait() -> None:
    assert error_of({"success": False, "error": {"code": "invalid_token", "message": "bad"}}) == (
        "invalid_token",
        "bad",
    )
    assert error_of({"task_id": "t"}) is None
    assert set(ACCOUNT_CODES) == {"invalid_token", "token_mismatched", "api_not_implemented"}
    assert set(BACKPRESSURE_CODES) == {"too_many_requests", "api_error"}


def test_a_callback_body_is_read_as_what_it_claims() -> None:
    body = {
        "success": True,
        "task_id": "t1",
        "video_id": "v",
        "video_url": "https://cdn.example/v.mp4",
        "state": "succeed",
    }
    callback = read_callback_body(json.dumps(body).encode())
    assert (callback.task_id, callback.task.status) == ("t1", "succeeded")
    with pytest.raises(ValueError):
        read_callback_body(b'{"state": "succeed"}')
