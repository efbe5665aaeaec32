"""`kling-pipeline submit`'s flags for today's contract: durations 3..15, sound, images from S3,
several images, Kling options; checked against the capability table before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from kling_local.cli import build_parser
from kling_local.commands.submit import job_from_flags
from kling_local.jobs_files import validate_jobs
from kling_local.terminal import UsageError


def job_of(*argv: str) -> dict[str, Any]:
    args = build_parser().parse_args(["submit", *argv])
    return validate_jobs([job_from_flags(args)], "command line")[0]


def test_a_v3_job_of_eight_seconds_with_sound() -> None:
    assert job_of("--prompt", "a fox", "--model", "kling-v3", "--duration", "8", "--sound") == {
        "prompt": "a fox",
        "model": "kling-v3",
        "duration": "8",
        "sound": True,
    }


def test_one_image_is_image2video_and_several_are_multi_image2video() -> None:
    assert job_of("--image", "s3://inputs/a.png", "--prompt", "p") == {
        "prompt": "p",
        "kind": "image2video",
        "image": "s3://inputs/a.png",
    }
    several = job_of("--image", "s3://inputs/a.png", "--image", "https://example.com/b.jpg", "--prompt", "p")
    assert several["kind"] == "multi-image2video"
    assert several["image_list"] == ["s3://inputs/a.png", "https://example.com/b.jpg"]
    omni = job_of("--kind", "omni-video", "--image", "s3://inputs/a.png", "--prompt", "p", "--duration", "12")
    assert omni["image_list"] == ["s3://inputs/a.png"] and omni["kind"] == "omni-video"


def test_options_are_kling_fields_as_json_or_text() -> None:
    job = job_of("--prompt", "p", "--option", "multi_shot=false", "--option", "shot_type=customize", "--no-watermark")
    assert job["kling_options"] == {"multi_shot": False, "shot_type": "customize"}
    assert job["watermark"] is False


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--prompt", "p", "--model", "kling-v2-6", "--duration", "8"], "rule durations"),
        (["--prompt", "p", "--model", "kling-v1", "--sound"], "rule sound"),
        (["--prompt", "p", "--option", "callback_url=https://x"], "the pipeline sets them"),
        (["--prompt", "p", "--option", "novalue"], "KEY=VALUE"),
        (["--kind", "image2video", "--image", "a.png", "--image", "b.png"], "several --image"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_sent(argv: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        job_of(*argv)


def test_priority_is_sent_as_given_and_refused_outside_zero_to_nine() -> None:
    assert job_of("--prompt", "p", "--priority", "8") == {"prompt": "p", "priority": 8}
    assert "priority" not in job_of("--prompt", "p")  # absent: 5, the job's default
    with pytest.raises(UsageError, match="priority: 12 is not a priority; use a whole number from 0"):
        job_of("--prompt", "p", "--priority", "12")
