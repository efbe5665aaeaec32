"""The simulator's kinds as Kling serves them today: omni-video and multi-image2video, v3 durations,
image URLs fetched at the create, the V1-only extend rule, and results that are real MP4 clips of
the asked length and shape (a synthetic body only when a size is set, for the streaming benchmarks)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import av
import httpx
import pytest

from kling_local.sim import KlingSimulator
from tests.sim.conftest import Api


def clip(api: Api, kind: str, task: dict[str, Any]) -> tuple[int, float, int, int, bytes]:
    """(frames, seconds, width, height, first bytes) of a finished task's video, decoded with PyAV."""
    url = task["task_result"]["videos"][0]["url"]
    data = httpx.get(url, timeout=10).content
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.duration is not None
        return frames, float(stream.duration * stream.time_base), stream.width, stream.height, data[:8]


def test_results_are_playable_clips_of_the_asked_duration_and_aspect_ratio(
    make_sim: Callable[..., KlingSimulator], make_api: Callable[..., Api]
) -> None:
    # Given a simulator that makes real clips (no synthetic size)
    sim = make_sim(video_size_bytes=None)
    api = make_api(sim)
    # When a v3 task of 8 s in 9:16 and an omni task of 3 s finish
    tall = api.wait_terminal("text2video", api.create_ok(model_name="kling-v3", duration="8", aspect_ratio="9:16"))
    omni = api.wait_terminal("omni-video", api.create_ok("omni-video", {"prompt": "clouds", "duration": "3"}))
    # Then each video is an MP4 that decodes, as long as reported and shaped as asked
    frames, seconds, width, height, head = clip(api, "text2video", tall)
    assert head[4:8] == b"ftyp" and tall["task_result"]["videos"][0]["duration"] == "8.1"
    assert (frames, width, height) == (81, 180, 320) and seconds == pytest.approx(8.1, abs=0.1)
    frames, seconds, width, height, _ = clip(api, "omni-video", omni)
    assert (frames, width, height) == (31, 320, 180)


@pytest.mark.parametrize(
    ("kind", "body", "named"),
    [
        ("text2video", {"prompt": "p", "model_name": "kling-v2-6", "duration": "8"}, "duration"),
        ("text2video", {"prompt": "p", "model_name": "kling-v3", "duration": "16"}, "duration"),
        ("omni-video", {"duration": "5"}, "prompt"),
        ("omni-video", {"prompt": "p", "image_list": [{"image_url": "https://a/b.png"}] * 8}, "image_list"),
        ("omni-video", {"prompt": "p", "image_list": [{"image_url": "https://a/b.png", "type": "middle"}]}, "type"),
    ],
)
def test_kinds_and_durations_are_validated_as_kling_does(api: Api, kind: str, body: dict[str, Any], named: str) -> None:
    response = api.create(kind, body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    assert named in response.json()["message"]


def test_image_urls_are_fetched_at_the_create_and_held_to_klings_rules(
    make_sim: Callable[..., KlingSimulator], make_api: Callable[..., Api]
) -> None:
    # Given a simulator that fetches image URLs, and its own sample images
    sim = make_sim(fetch_image_urls=True)
    api = make_api(sim)
    good, small = f"{sim.cdn_base_url}/samples/720x1280.png", f"{sim.cdn_base_url}/samples/320x200.jpg"
    # When creates name a good image, a small one and one that is not there
    accepted = api.create("image2video", {"image": good})
    too_small = api.create("multi-image2video", {"prompt": "p", "image_list": [{"image": good}, {"image": small}]})
    missing = api.create("image2video", {"image": f"{sim.cdn_base_url}/nothing.png"})
    # Then only the good one makes a task, and the refusals name the field
    assert accepted.status_code == 200
    assert too_small.status_code == 400 and "image_list[1].image" in too_small.json()["message"]
    assert missing.status_code == 400 and "could not be fetched (HTTP 404)" in missing.json()["message"]
    fetches = sim.stats()["image_fetches"]
    assert (fetches["ok"], fetches["failed"]) == (2, 2)
    assert sim.stats()["creates"]["refused_by_code"] == {"1201": 2}


def test_only_videos_of_v1_models_can_be_extended(api: Api) -> None:
    newer = api.wait_terminal("text2video", api.create_ok(model_name="kling-v2-6"))
    refused = api.create("video-extend", {"video_id": newer["task_result"]["videos"][0]["id"]})
    assert refused.status_code == 400 and "extend" in refused.json()["message"]


def test_a_task_that_asked_for_sound_has_an_audio_track_and_one_that_did_not_has_none(
    make_sim: Callable[..., KlingSimulator], make_api: Callable[..., Api]
) -> None:
    # Given a simulator that makes real clips
    sim = make_sim(video_size_bytes=None)
    api = make_api(sim)
    # When a task with Kling's `sound: "on"` and one without finish
    loud = api.wait_terminal("text2video", api.create_ok(model_name="kling-v3", duration="5", sound="on"))
    quiet = api.wait_terminal("text2video", api.create_ok(model_name="kling-v3", duration="5", sound="off"))
    # Then only the first video has sound, an audio track as long as the clip, and it decodes
    for task, has_sound in ((loud, True), (quiet, False)):
        data = httpx.get(task["task_result"]["videos"][0]["url"], timeout=10).content
        with av.open(io.BytesIO(data)) as container:
            assert bool(container.streams.audio) is has_sound
            if has_sound:
                audio = container.streams.audio[0]
                assert audio.duration is not None
                assert float(audio.duration * audio.time_base) == pytest.approx(5.1, abs=0.1)
                assert sum(frame.samples for frame in container.decode(audio)) > 5 * 20_000
