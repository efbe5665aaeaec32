"""The download step of the workflow: take a DOWNLOADING job's video from Kling's CDN into S3.

Returns what the state machine writes with its MarkCompleted/MarkFailed DynamoDB tasks, so the
shape of the job item stays defined here, next to the store. Transient failures raise
TransientDownloadError for the state machine's Retry; final ones are returned as {ok: false}.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kling_pipeline.download import DownloadPolicy, DownloadRefusedError, stream_to_s3
from kling_pipeline.jobs import utc_now_iso
from kling_pipeline.models import JobState
from kling_pipeline.observability import logger
from kling_pipeline.store import JobStore

BY = "download-workflow"


@dataclass
class DownloadDependencies:
    store: JobStore
    s3: Any
    bucket: str
    policy: DownloadPolicy
    finished_ttl_days: int = 90


def video_key(job_id: str) -> str:
    return f"videos/{job_id}.mp4"


def download_job(job_id: str, deps: DownloadDependencies) -> dict[str, Any]:
    job = deps.store.get(job_id)
    logger.set_correlation_id(job_id)
    if job.state is not JobState.DOWNLOADING:
        logger.info("job is not downloading; nothing to do", extra={"state": job.state})
        return {"ok": True, "skipped": True, "state": job.state.value}
    if not job.video_url:
        return failure("NO_VIDEO_URL", "the job has no video URL from Kling; send the request again with a new job_id")
    request = job.request
    metadata = {
        "job-id": job.job_id,
        "task-id": job.task_id or "",
        "prompt-hash": str(getattr(job, "prompt_hash", "") or ""),
        "model": str((job.model_extra or {}).get("model_name") or request.get("model") or ""),
        "duration": str(getattr(job, "video_duration", "") or request.get("duration") or ""),
    }
    try:
        stored = stream_to_s3(
            job.video_url,
            bucket=deps.bucket,
            key=video_key(job.job_id),
            policy=deps.policy,
            s3=deps.s3,
            metadata={k: v for k, v in metadata.items() if v},
        )
    except DownloadRefusedError as exc:
        logger.warning("download refused", extra={"error_code": exc.code, "reason": exc.message})
        return failure(exc.code, exc.message)
    logger.info("video stored", extra={"s3_uri": stored.s3_uri, "size": stored.size})
    now = utc_now_iso()
    return {
        "ok": True,
        "skipped": False,
        "s3_uri": stored.s3_uri,
        "size": stored.size,
        "sha256": stored.sha256,
        # ExpressionAttributeValues of the state machine's MarkCompleted (a conditional updateItem).
        "completion": {
            ":downloading": {"S": JobState.DOWNLOADING.value},
            ":completed": {"S": JobState.COMPLETED.value},
            ":one": {"N": "1"},
            ":now": {"S": now},
            ":entry": {"L": [{"M": {"state": {"S": "COMPLETED"}, "at": {"S": now}, "by": {"S": BY}}}]},
            ":uri": {"S": stored.s3_uri},
            ":key": {"S": stored.key},
            ":size": {"N": str(stored.size)},
            ":sha": {"S": stored.sha256},
            ":ttl": {"N": str(int(time.time()) + deps.finished_ttl_days * 86400)},
        },
    }


def failure(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "skipped": False, "error_code": code, "error_message": message}
