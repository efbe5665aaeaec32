"""JobRequest validation mirrors Kling's rules and names the field in every error; Kling's task object parses."""

import pytest
from pydantic import ValidationError

from kling_pipeline.kling_body import create_body
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.requests import JobRequest, describe_validation_error


def errors_of(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate(fields)
    return describe_validation_error(info.value)


def test_minimal_text2video_gets_kling_defaults() -> None:
    request = JobRequest.model_validate({"prompt": "a red fox in snow"})
    assert request.kind == "text2video"
    assert request.duration == "5"
    assert request.mode == "std"
    body = create_body(request, default_model="kling-v2-6", callback_url="https://cb", external_task_id="j1")
    assert body == {
        "callback_url": "https://cb",
        "external_task_id": "j1",
        "model_name": "kling-v2-6",
        "mode": "std",
        "duration": "5",
        "prompt": "a red fox in snow",
    }


def test_duration_number_becomes_the_string_kling_wants() -> None:
    assert JobRequest.model_validate({"prompt": "x", "duration": 10}).duration == "10"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"prompt": "x", "duration": "7"}, "duration"),
        ({"prompt": "x" * 2501}, "prompt"),
        ({"prompt": "x", "negative_prompt": "n" * 2501}, "negative_prompt"),
        ({"prompt": "x", "mode": "standard"}, "mode"),
        ({"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"prompt": "x", "cfg_scale": 1.5}, "cfg_scale"),
        ({"prompt": "x", "job_id": "has space"}, "job_id"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "metadata": {"blob": "y" * 5000}}, "metadata"),
        ({"prompt": "x", "kind": "text2image"}, "kind"),
    ],
)
def test_bad_field_is_named(fields: dict[str, object], named: str) -> None:
    message = errors_of(**fields)
    assert message.startswith("invalid job request: ")
    assert named in message


def test_text2video_needs_a_prompt() -> None:
    assert "prompt is required" in errors_of(prompt="")


def test_image2video_rules() -> None:
    assert "image is required" in errors_of(kind="image2video", prompt="x")
    assert "data:" in errors_of(kind="image2video", image="data:image/png;base64,AAAA")
    assert "aspect_ratio" in errors_of(kind="image2video", image="https://x/y.png", aspect_ratio="1:1")
    ok = JobRequest.model_validate({"kind": "image2video", "image": "https://x/y.png"})
    body = create_body(ok, default_model="kling-v1", callback_url="https://cb", external_task_id="j")
    assert body["image"] == "https://x/y.png"
    assert "aspect_ratio" not in body


def test_video_extend_needs_video_id_and_sends_only_its_fields() -> None:
    assert "video_id is required" in errors_of(kind="video-extend")
    body = create_body(
        JobRequest.model_validate({"kind": "video-extend", "video_id": "v1", "prompt": "more"}),
        default_model="kling-v1",
        callback_url="https://cb",
        external_task_id="j",
    )
    assert body == {"callback_url": "https://cb", "external_task_id": "j", "video_id": "v1", "prompt": "more"}


def test_simple_camera_control_moves_exactly_one_axis() -> None:
    assert "exactly one" in errors_of(prompt="x", camera_control={"type": "simple", "config": {"pan": 2, "zoom": 3}})
    good = JobRequest.model_validate({"prompt": "x", "camera_control": {"type": "simple", "config": {"zoom": 5}}})
    assert good.camera_control is not None
    assert "camera_control.config.zoom" in errors_of(
        prompt="x", camera_control={"type": "simple", "config": {"zoom": 11}}
    )


def test_kling_task_accepts_numeric_ids_and_finds_the_video() -> None:
    task = KlingTask.model_validate(
        {
            "task_id": 867283741759111202,
            "task_status": "succeed",
            "task_result": {"videos": [{"id": "v", "url": "https://cdn.klingai.com/a.mp4", "duration": "5.1"}]},
        }
    )
    assert task.task_id == "867283741759111202"
    assert task.first_video is not None
    assert task.first_video.url.endswith("a.mp4")
