"""Every kind end to end on the local stack, with the simulator's playable clips: images from the
input bucket (presigned, fetched by the simulator), from a URL and inline; today's models and
durations; an unknown model passed through; the demo's own batch, whose videos a person can open."""

from __future__ import annotations

import base64
import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from rich.console import Console

from kling_local.cli import build_parser
from kling_local.demo import connection_of, drive_batch, load_jobs
from kling_local.jobs_files import send_jobs
from kling_local.sim import SimConfig
from kling_local.sim.config import DEFAULT_MODELS
from kling_local.sim.media import sample_image
from kling_local.stack import LocalStack, StackOptions
from kling_pipeline.lifecycle import Job, JobState
from tests.e2e.test_pipeline_e2e import cli, wait_terminal
from tests.support.template import ROOT

RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = SimConfig(
        access_key=f"kinds-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        speed=120.0,
        generation_min_s=30.0,
        generation_max_s=90.0,
        concurrency_limit=10,
        fetch_image_urls=True,
        seed=13,
    )
    options = StackOptions(
        template_path=ROOT / "template.yaml", project_root=tmp_path_factory.mktemp("kinds"), sim_config=config
    )
    with LocalStack(options) as running:
        s3 = running.client("s3")
        bucket = running.endpoints["input_bucket"]
        for key, (width, height) in {"tall.png": (720, 1280), "wide.jpg": (1280, 720)}.items():
            s3.put_object(Bucket=bucket, Key=f"e2e/{key}", Body=sample_image(width, height, key[-3:]))
        yield running


def video_of(stack: LocalStack, job: Job) -> tuple[int, float, float]:
    """(frames, seconds, width / height) of the job's stored video, as PyAV decodes it."""
    assert job.s3_uri is not None
    bucket, _, key = job.s3_uri.removeprefix("s3://").partition("/")
    data = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return decoded(data)


def decoded(data: bytes | Path) -> tuple[int, float, float]:
    source: Any = data if isinstance(data, Path) else io.BytesIO(data)
    with av.open(source) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.duration is not None
        return frames, float(stream.duration * stream.time_base), stream.width / stream.height


def test_each_kind_ends_as_a_playable_video_of_the_asked_length_and_shape(stack: LocalStack) -> None:
    # Given images in the input bucket, on a web host (the simulator's CDN) and inline
    bucket = stack.endpoints["input_bucket"]
    url_image = f"{stack.endpoints['kling_cdn_url']}/samples/800x800.png"
    inline = base64.b64encode(sample_image(640, 360)).decode()
    jobs: list[dict[str, Any]] = [
        {"job_id": "kind-t2v", "prompt": "a fox in snow", "model": "kling-v3", "duration": 8, "sound": True,
         "aspect_ratio": "9:16"},
        {"job_id": "kind-i2v", "kind": "image2video", "prompt": "it turns", "image": f"s3://{bucket}/e2e/tall.png"},
        {"job_id": "kind-multi", "kind": "multi-image2video", "prompt": "they meet", "aspect_ratio": "1:1",
         "image_list": [f"s3://{bucket}/e2e/wide.jpg", url_image, inline]},
        {"job_id": "kind-omni", "kind": "omni-video", "model": "kling-v3-omni", "duration": "12",
         "prompt": "clouds roll from <<<image_1>>>",
         "image_list": [{"image": f"s3://{bucket}/e2e/wide.jpg", "type": "first_frame"}]},
        {"job_id": "kind-v1-source", "prompt": "a lighthouse", "model": "kling-v1"},
    ]  # fmt: skip
    # When they run to the end
    done = wait_terminal(stack, send_jobs(connection_of(stack), jobs))
    # And the kling-v1 video is then extended
    extend = {"job_id": "kind-extend", "kind": "video-extend", "prompt": "and the storm comes",
              "video_id": done["kind-v1-source"].kling_video_id}  # fmt: skip
    done |= wait_terminal(stack, send_jobs(connection_of(stack), [extend]))
    # Then every job completed with one Kling task, on its kind's endpoint
    assert {job_id: job.state for job_id, job in done.items()} == dict.fromkeys(done, JobState.COMPLETED)
    assert stack.simulator is not None
    stats = stack.simulator.stats()
    assert all(stats["tasks_by_external_task_id"][job_id] == 1 for job_id in done)
    for kind in ("text2video", "image2video", "multi-image2video", "omni-video", "video-extend"):
        assert stats["calls"][f"POST {kind}"] >= 1
        assert stats["calls"][f"GET {kind}/{{id}}"] >= 1  # the callback's confirmation, on the same endpoint
    # And each video decodes, as long as asked and shaped as asked (or as its first image)
    expected = {
        "kind-t2v": (8.1, "9:16"),
        "kind-i2v": (5.1, "9:16"),
        "kind-multi": (5.1, "1:1"),
        "kind-omni": (12.1, "16:9"),
        "kind-v1-source": (5.1, "16:9"),
        "kind-extend": (9.7, "16:9"),
    }
    for job_id, (seconds, ratio) in expected.items():
        frames, duration, shape = video_of(stack, done[job_id])
        assert frames == round(seconds * 10), job_id
        assert duration == pytest.approx(seconds, abs=0.15), job_id
        assert shape == pytest.approx(RATIOS[ratio], rel=0.02), job_id
    # And the simulator fetched the S3 images through presigned URLs, never a public object
    fetched = stats["image_fetches"]["recent"]
    from_bucket = [f for f in fetched if f["path"].startswith(f"/{bucket}/e2e/")]
    assert from_bucket and all(f["signed"] and f["ok"] for f in from_bucket)


def test_an_unknown_model_is_passed_to_kling_with_a_warning(stack: LocalStack) -> None:
    # Given Kling knows a model the capability table does not
    assert stack.simulator is not None
    stack.simulator.configure(known_models=[*DEFAULT_MODELS, "kling-v9-preview"])
    # When a job asks for it
    done = wait_terminal(
        stack,
        send_jobs(connection_of(stack), [{"job_id": "kind-new-model", "prompt": "x", "model": "kling-v9-preview"}]),
    )
    # Then Kling made its video, and the submit function said the model was passed through unchecked
    assert done["kind-new-model"].state is JobState.COMPLETED
    log = Path(stack.endpoints["log_dir"], "SubmitFunction.log").read_text(encoding="utf-8")
    assert "model kling-v9-preview is not in the capability table" in log


def test_the_demos_batch_leaves_videos_a_person_can_open(stack: LocalStack, tmp_path: Path) -> None:
    # Given the demo's bundled jobs (every kind, s3:// images among them)
    jobs = load_jobs(None, None, run_id="e2e")
    args = build_parser().parse_args(
        ["demo", "--json", "--timeout", "180", "--stall", "30", "--out", str(tmp_path / "out")]
    )
    # When the demo drives them through the stack and copies the videos out
    summary = drive_batch(stack, jobs, args, Console(quiet=True))
    # Then every job completed, and every copied video opens and has frames
    assert (summary.completed, summary.lost, summary.failures) == (len(jobs), 0, [])
    videos = sorted((tmp_path / "out").glob("*.mp4"))
    assert len(videos) == len(jobs)
    for video in videos:
        frames, duration, _ = decoded(video)
        assert frames >= 30 and duration >= 3.0, video.name


def test_an_extend_chain_from_the_cli_ends_as_one_longer_playable_video(stack: LocalStack) -> None:
    # Given a job submitted with the CLI as a base video and two extensions (a three-step chain)
    root = str(stack.project_root)
    args = ["--prompt", "a paper boat", "--model", "kling-v1-6", "--job-id", "e2e-chain"]
    steps = ["--extend", "it sails downstream", "--extend", "it reaches the shore"]
    submitted = cli("submit", *args, *steps, "--project-root", root)
    assert submitted.returncode == 0, submitted.stderr
    # When the stack has run it (each step a Kling task, stored, then the next queued)
    done = wait_terminal(stack, ["e2e-chain"])["e2e-chain"]
    # Then the job completed with the last step's video, every step stored, each longer than the last
    assert done.state is JobState.COMPLETED, done.error_message
    status = cli("status", "e2e-chain", "--json", "--project-root", root)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert [step["step"] for step in shown["steps"]] == [1, 2, 3]
    assert shown["s3_uri"] == shown["steps"][-1]["s3_uri"]
    durations = [float(step["duration"]) for step in shown["steps"]]
    assert durations == sorted(durations) and durations[0] < durations[-1]
    assert float(shown["units_charged"]) == sum(float(step["units_charged"]) for step in shown["steps"])
    # And the extended video plays for about as long as Kling says it is
    frames, seconds, _ = video_of(stack, done)
    assert frames >= 30 and abs(seconds - durations[-1]) < 1.0
