"""Create-body validation: each rule answers HTTP 400 with 1200/1201 and names the field."""

from __future__ import annotations

import base64

import pytest

from kling_local.sim import png_base64

PNG = png_base64(512, 512)
TEXT = {"prompt": "a lighthouse at dusk"}
IMAGE = {"image": "https://example.com/frame.png"}


def _without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


CASES = [
    # text2video
    ("text2video", {}, "prompt"),
    ("text2video", {"prompt": ""}, "prompt"),
    ("text2video", {"prompt": 42}, "prompt"),
    ("text2video", {"prompt": "x" * 2501}, "prompt"),
    ("text2video", {**TEXT, "negative_prompt": "y" * 2501}, "negative_prompt"),
    ("text2video", {**TEXT, "duration": 5}, "duration"),
    ("text2video", {**TEXT, "duration": "7"}, "duration"),
    ("text2video", {**TEXT, "mode": "fast"}, "mode"),
    ("text2video", {**TEXT, "aspect_ratio": "4:3"}, "aspect_ratio"),
    ("text2video", {**TEXT, "cfg_scale": 1.5}, "cfg_scale"),
    ("text2video", {**TEXT, "cfg_scale": -0.1}, "cfg_scale"),
    ("text2video", {**TEXT, "cfg_scale": "0.5"}, "cfg_scale"),
    ("text2video", {**TEXT, "model_name": "kling-v9-imaginary"}, "model_name"),
    ("text2video", {**TEXT, "camera_control": "zoom"}, "camera_control"),
    ("text2video", {**TEXT, "camera_control": {"type": "spin"}}, "camera_control.type"),
    ("text2video", {**TEXT, "camera_control": {"type": "simple"}}, "camera_control.config"),
    (
        "text2video",
        {**TEXT, "camera_control": {"type": "simple", "config": {"zoom": 5, "pan": 2}}},
        "camera_control.config",
    ),
    (
        "text2video",
        {**TEXT, "camera_control": {"type": "simple", "config": {"zoom": 11}}},
        "camera_control.config.zoom",
    ),
    ("text2video", {**TEXT, "camera_control": {"type": "simple", "config": {"warp": 1}}}, "camera_control.config"),
    ("text2video", {**TEXT, "camera_control": {"type": "down_back", "config": {"zoom": 1}}}, "camera_control.config"),
    ("text2video", {**TEXT, "callback_url": "ftp://example.com/cb"}, "callback_url"),
    ("text2video", {**TEXT, "callback_url": "not a url"}, "callback_url"),
    ("text2video", {**TEXT, "external_task_id": 123}, "external_task_id"),
    ("text2video", {**TEXT, "external_task_id": "x" * 300}, "external_task_id"),
    ("text2video", {**TEXT, "sound": "loud"}, "sound"),
    ("text2video", {**TEXT, "watermark_info": "yes"}, "watermark_info"),
    # image2video
    ("image2video", {"prompt": "move"}, "image"),
    ("image2video", {"image": "data:image/png;base64," + PNG}, "image"),
    ("image2video", {"image": "ftp://example.com/a.png"}, "image"),
    ("image2video", {"image": "not base64 at all!"}, "image"),
    ("image2video", {"image": base64.b64encode(b"just some text, no image").decode()}, "image"),
    ("image2video", {"image": png_base64(100, 100)}, "image"),
    ("image2video", {"image": png_base64(1000, 300)}, "image"),
    ("image2video", {**IMAGE, "image_tail": "data:image/png;base64,AAAA"}, "image_tail"),
    (
        "image2video",
        {**IMAGE, "image_tail": PNG, "camera_control": {"type": "simple", "config": {"zoom": 1}}},
        "camera_control",
    ),
    ("image2video", {**IMAGE, "duration": 10}, "duration"),
    ("image2video", {**IMAGE, "model_name": "nope"}, "model_name"),
    # video-extend
    ("video-extend", {"prompt": "more"}, "video_id"),
    ("video-extend", {"video_id": "no-such-video"}, "video_id"),
    ("video-extend", {"video_id": 7}, "video_id"),
    ("video-extend", {"video_id": "x", "prompt": "p" * 2501}, "prompt"),
    # the minimal kinds
    ("multi-image2video", {"prompt": "p"}, "image_list"),
    ("multi-image2video", {"prompt": "p", "image_list": [{"image": "data:x"}]}, "image_list[0].image"),
    ("lip-sync", {}, "input"),
    ("lip-sync", {"input": {"mode": "text2video", "text": "hi"}}, "input.video_id"),
]


@pytest.mark.parametrize(("kind", "body", "field"), CASES, ids=[f"{c[0]}:{c[2]}:{i}" for i, c in enumerate(CASES)])
def test_invalid_bodies_are_refused_naming_the_field(api, kind, body, field):
    response = api.http.post(f"/v1/videos/{kind}", json=body)
    assert response.status_code == 400, response.text
    envelope = response.json()
    assert envelope["code"] == 1201
    assert field in envelope["message"]
    assert envelope["request_id"]


def test_refused_creates_make_no_task_and_are_counted(api, sim):
    api.create(body={"prompt": ""})
    api.create(body={"duration": 5})
    stats = sim.stats()
    assert stats["tasks_total"] == 0
    assert stats["creates"]["refused_by_code"] == {"1201": 2}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("text2video", {"prompt": "x" * 2500, "negative_prompt": "y" * 2500}),
        (
            "text2video",
            {
                "prompt": "full body",
                "model_name": "kling-v2-1-master",
                "mode": "pro",
                "duration": "10",
                "aspect_ratio": "9:16",
                "cfg_scale": 0,
                "camera_control": {"type": "simple", "config": {"zoom": -10, "pan": 0}},
                "sound": "on",
                "watermark_info": {"enabled": True},
                "callback_url": "https://example.com/cb?token=1",
                "external_task_id": "job-1",
                "some_future_field": "ignored",
            },
        ),
        ("text2video", {"prompt": "p", "camera_control": {"type": "forward_up"}}),
        ("image2video", {"image": PNG}),
        ("image2video", {"image": "http://example.com/a.jpg", "image_tail": PNG, "mode": "pro"}),
        ("image2video", {"image": png_base64(300, 740), "prompt": "tall but within 1:2.5"}),
        ("image2video", {"image": PNG, "camera_control": {"type": "simple", "config": {"tilt": 3}}}),
        ("multi-image2video", {"prompt": "p", "image_list": [{"image": PNG}, {"image": "https://e.com/b.png"}]}),
        ("lip-sync", {"input": {"video_url": "https://e.com/v.mp4", "mode": "text2video", "text": "hello"}}),
    ],
    ids=["limits", "every-field", "camera-preset", "png", "tail", "tall", "i2v-camera", "multi", "lip-sync"],
)
def test_valid_bodies_are_accepted(api, kind, body):
    response = api.http.post(f"/v1/videos/{kind}", json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["task_status"] == "submitted"


def test_image_content_check_can_be_turned_off(make_sim, make_api):
    sim = make_sim(check_image_content=False)
    api = make_api(sim)
    tiny = base64.b64encode(b"\x89PNG not really").decode()
    assert api.create("image2video", {"image": tiny}).status_code == 200
    # The prefix rule is about the format, not the content: still enforced.
    assert api.create("image2video", {"image": "data:image/png;base64," + tiny}).json()["code"] == 1201


def test_known_models_are_configurable(api, sim):
    sim.configure(known_models=["house-model"])
    assert api.create(model_name="house-model").status_code == 200
    refused = api.create(model_name="kling-v1")
    assert refused.json()["code"] == 1201
    assert "house-model" in refused.json()["message"]
