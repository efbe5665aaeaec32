"""The download step of the workflow: a DOWNLOADING job's video from Kling's CDN into S3.

On success it returns the job store's own write for DOWNLOADING -> COMPLETED, which the state
machine's MarkCompleted sends as is, so the record's shape is defined once (adapters.job_store).
A refusal (host not allowed, not an MP4, too large, link expired) comes back as {ok: false} for
MarkFailed; a transient failure raises TransientDownloadError for the state machine's Retry.
The step acts only for the job version its execution was started for (docs/architecture.md,
"The download workflow").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from kling_pipeline.adapters.job_store import JobStore, job_store
from kling_pipeline.adapters.video_transfer import DownloadPolicy, s3_client, stream_to_s3
from kling_pipeline.errors import DownloadRefusedError
from kling_pipeline.lifecycle import JobState
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.settings import DownloadSettings

BY = "download-workflow"


@dataclass
class DownloadDependencies:
    store: JobStore
    s3: Any
    bucket: str
    policy: DownloadPolicy


def download_dependencies(settings: DownloadSettings) -> DownloadDependencies:
    return DownloadDependencies(
        store=job_store(settings.jobs_table_name, settings.finished_job_ttl_days),
        s3=s3_client(),
        bucket=settings.video_bucket,
        policy=DownloadPolicy.from_setting(
            settings.allowed_download_hosts,
            max_bytes=settings.max_video_bytes,
            production=settings.pipeline_mode == "production",
        ),
    )


def video_key(job_id: str) -> str:
    return f"videos/{job_id}.mp4"


def download_job(job_id: str, version: int, deps: DownloadDependencies) -> dict[str, Any]:
    """Copy the video of job `job_id` (at `version`, as the workflow was started) into S3."""
    logger.set_correlation_id(job_id)
    job = deps.store.get(job_id)
    if job.state is not JobState.DOWNLOADING or job.version != version:
        logger.info("not the job this execution was started for; nothing to do", extra={"state": job.state})
        record(Metric.DOWNLOADS, outcome="skipped")
        return {"ok": True, "skipped": True, "state": job.state.value}
    if not job.video_url:
        return refused("NO_VIDEO_URL", "the job has no video URL from Kling; send the request again with a new job_id")
    request = job.request
    extra = job.model_extra or {}
    metadata = {
        "job-id": job.job_id,
        "task-id": job.task_id or "",
        "prompt-hash": str(extra.get("prompt_hash") or ""),
        "model": str(extra.get("model_name") or request.get("model") or ""),
        "duration": str(extra.get("video_duration") or request.get("duration") or ""),
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
        return refused(exc.code, exc.message)
    logger.info("video stored", extra={"s3_uri": stored.s3_uri, "size": stored.size})
    record(Metric.DOWNLOADS, outcome="stored")
    record(Metric.VIDEO_BYTES_STORED, stored.size, MetricUnit.Bytes)
    completion = deps.store.transition_write(
        job,
        JobState.COMPLETED,
        by=BY,
        changes={"s3_uri": stored.s3_uri, "s3_key": stored.key, "video_size": stored.size, "sha256": stored.sha256},
    )
    return {
        "ok": True,
        "skipped": False,
        "s3_uri": stored.s3_uri,
        "size": stored.size,
        "sha256": stored.sha256,
        "completion": completion.for_step_functions(),  # MarkCompleted's UpdateItem, as the store writes it
    }


def refused(code: str, message: str) -> dict[str, Any]:
    record(Metric.DOWNLOADS, outcome="refused")
    return {"ok": False, "skipped": False, "error_code": code, "error_message": message}
