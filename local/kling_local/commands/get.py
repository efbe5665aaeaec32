"""`get`: a finished job's video, downloaded."""

from __future__ import annotations

import argparse

from kling_local.connection import PipelineConnection
from kling_local.terminal import UsageError
from kling_pipeline.lifecycle import JobState


def cmd_get(args: argparse.Namespace, connection: PipelineConnection) -> int:
    job = connection.store().find(args.job_id)
    if job is None:
        raise UsageError(f"no job {args.job_id} ({connection.where})")
    if job.state is not JobState.COMPLETED or not job.s3_uri:
        detail = f": {job.error_message}" if job.error_message else ""
        raise UsageError(f"job {args.job_id} is {job.state.value}, not COMPLETED{detail}")
    bucket, _, key = job.s3_uri.removeprefix("s3://").partition("/")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    connection.client("s3").download_file(bucket, key, str(args.out))
    print(f"{args.out} ({args.out.stat().st_size} bytes) from {job.s3_uri}")
    return 0
