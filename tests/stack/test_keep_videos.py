"""`kling-pipeline local up --kling-url` against a Kling whose videos are paid: the simulator started on
its own (as `kling-pipeline sim` runs it) and given as --kling-url, which the stack treats as a real
Kling. A completed video lands in --out as it completes; on stop, a live job is listed with its task id."""

from __future__ import annotations

import io
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_local.cli import build_parser
from kling_local.demo import connection_of
from kling_local.jobs_files import send_jobs
from kling_local.sim import KlingSimulator, SimConfig
from kling_local.stack import LocalStack
from kling_local.stack.serve import command
from kling_local.stack.template_loader import load_template, parameter_defaults
from kling_pipeline.lifecycle import JobState
from tests.support.template import ROOT
from tests.support.waiting import wait_for

VIDEO_BYTES = 150_000


@pytest.fixture
def kling() -> Iterator[KlingSimulator]:
    config = SimConfig(
        access_key=f"paid-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        speed=60.0,
        generation_min_s=60.0,  # a second or so
        generation_max_s=90.0,
        video_size_bytes=VIDEO_BYTES,
    )
    with KlingSimulator(config, host="127.0.0.1", port=0, cdn_port=0) as sim:
        yield sim


def test_local_up_with_a_real_kling_keeps_videos_on_disk_and_lists_live_jobs(
    kling: KlingSimulator, tmp_path: Path
) -> None:
    # Given `local up --kling-url <Kling> --out DIR`, this Kling's keys in a file
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"access_key": kling.config.access_key, "secret_key": kling.config.secret_key}))
    hosts = parameter_defaults(load_template(ROOT / "template.yaml"))["AllowedDownloadHosts"]
    out_dir = tmp_path / "kept"
    args = build_parser().parse_args(
        [
            "local",
            "up",
            "--template",
            str(ROOT / "template.yaml"),
            "--project-root",
            str(tmp_path),
            "--kling-url",
            kling.base_url,
            "--kling-keys-file",
            str(keys),
            "--out",
            str(out_dir),
            "--param",
            f"AllowedDownloadHosts={hosts},{kling.cdn_base_url}",  # this Kling's CDN is plain http
            "--stack-name",
            "keep-test",
        ]
    )
    printed = io.StringIO()
    stop = threading.Event()
    ready: list[LocalStack] = []
    exit_codes: list[int] = []
    runner = threading.Thread(
        target=lambda: exit_codes.append(command(args, out=printed, stop_event=stop, on_ready=ready.append)),
        daemon=True,
    )
    runner.start()
    try:
        wait_for(lambda: bool(ready), 180, what="the local stack to start")
        stack = ready[0]
        assert "Job state is in memory" in printed.getvalue() and str(out_dir) in printed.getvalue()
        connection = connection_of(stack)

        # When a job completes
        (done,) = send_jobs(connection, [{"job_id": "kept-1", "prompt": "a paid video"}])
        video = out_dir / f"{done}.mp4"
        # Then its video is on disk as soon as it lands, whole
        wait_for(video.exists, 120, what="the completed video in --out")
        assert video.stat().st_size == VIDEO_BYTES
        first_write = video.stat().st_mtime_ns

        # Given a second job Kling is still generating when the stack stops
        kling.configure(generation_min_s=1e6, generation_max_s=1e6)
        (live,) = send_jobs(connection, [{"job_id": "kept-live", "prompt": "still rendering"}])
        store = connection.store()
        wait_for(lambda: (job := store.find(live)) is not None and job.task_id, 60, what="the live job's Kling task")
        task_id = store.get(live).task_id
        assert store.get(live).state in (JobState.SUBMITTED, JobState.PROCESSING)
    finally:
        # When the stack is stopped (Ctrl-C)
        stop.set()
        runner.join(timeout=120)
    assert not runner.is_alive() and exit_codes == [0]

    # Then the live job is printed and written down with its Kling task id and external_task_id
    text = printed.getvalue()
    assert f"{live}  " in text and f"task {task_id}" in text
    (listing,) = out_dir.glob("unfinished-jobs-*.jsonl")
    assert str(listing) in text
    (line,) = [json.loads(row) for row in listing.read_text().splitlines()]
    assert (line["job_id"], line["task_id"], line["external_task_id"]) == (live, task_id, live)
    assert line["kling_base_url"] == kling.base_url
    # And the completed video, already on disk, was checked and not written again
    assert video.stat().st_mtime_ns == first_write
    assert sorted(p.name for p in out_dir.glob("*.mp4")) == [f"{done}.mp4"]
