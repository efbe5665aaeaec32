"""`submit`: one job from flags or many from a jobs file, to the queue or through the jobs API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kling_local import terminal
from kling_local.api_client import JobsApiClient
from kling_local.commands.input_images import InputImages
from kling_local.connection import PipelineConnection, connect
from kling_local.jobs_files import read_jobs_file, send_jobs, validate_jobs
from kling_local.terminal import UsageError


def images_of(kind: str | None, images: list[str]) -> dict[str, Any]:
    """--kind and --image as job fields: one image is image2video's `image`, several (or any for
    multi-image2video / omni-video) are `image_list`; the kind follows the images unless given."""
    if not images:
        return {"kind": kind}
    if kind is None:
        kind = "image2video" if len(images) == 1 else "multi-image2video"
    if kind in ("multi-image2video", "omni-video"):
        return {"kind": kind, "image_list": images}
    if len(images) > 1:
        raise UsageError("several --image need --kind multi-image2video or omni-video")
    return {"kind": kind, "image": images[0]}


def parse_options(options: list[str] | None) -> dict[str, Any] | None:
    """--option KEY=VALUE pairs as kling_options; a VALUE that parses as JSON is taken as JSON."""
    if not options:
        return None
    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {option!r}: write it as KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value
    return parsed


def job_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """One job from `submit`'s flags, unset ones left out (the job's defaults apply)."""
    if not args.prompt and not args.image and not args.video_id:
        raise UsageError("give --prompt (or --image / --video-id), or --file with many jobs")
    job: dict[str, Any] = {
        "prompt": args.prompt,
        "job_id": args.job_id,
        "model": args.model,
        "mode": args.mode,
        "duration": args.duration,
        "aspect_ratio": args.aspect_ratio,
        "negative_prompt": args.negative_prompt,
        "cfg_scale": args.cfg_scale,
        "sound": args.sound,
        "watermark": args.watermark,
        "image_tail": args.image_tail,
        "video_id": args.video_id,
        "kling_options": parse_options(args.option),
        "extend": [{"prompt": prompt} for prompt in args.extend] if args.extend else None,
        "priority": args.priority,
    } | images_of(args.kind, args.image or [])
    if args.metadata:
        try:
            job["metadata"] = json.loads(args.metadata)
        except ValueError as exc:
            raise UsageError(f"--metadata must be a JSON object ({exc})") from exc
    return {k: v for k, v in job.items() if v is not None}


def cmd_submit(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.file:
        jobs = read_jobs_file(args.file)
        source = str(args.file)
        images = InputImages(lambda: connection or connect(args), args.file.parent, flags=False)
    else:
        jobs = [job_from_flags(args)]
        source = "command line"
        images = InputImages(lambda: connection or connect(args), Path(), flags=True)
    jobs = [images.placed(job, number) for number, job in enumerate(jobs, start=1)]
    jobs = validate_jobs(jobs, source)
    images.upload()
    if args.api_url:
        return submit_through_api(JobsApiClient(args.api_url), jobs)
    assert connection is not None
    for job_id in send_jobs(connection, jobs):
        print(job_id)
    return 0


def submit_through_api(api: JobsApiClient, jobs: list[dict[str, Any]]) -> int:
    """POST /jobs, a hundred at a time; prints each job id as the queue path does (a job sent before
    with the same request is one too); a job not queued is said on stderr, and the exit is 1."""
    refused = 0
    for start in range(0, len(jobs), 100):
        answer = api.call("POST", "/jobs", body={"jobs": jobs[start : start + 100]})
        for item in answer["jobs"]:
            if item["outcome"] in ("accepted", "existing"):
                print(item["job_id"])
                continue
            refused += 1
            why = item["error"]["message"] if item.get("error") else item["outcome"]
            terminal.err.print(f"[red]not queued[/red] {item['job_id']}: {why}")
    return 1 if refused else 0
