"""The download step of the workflow: a DOWNLOADING job's video from Kling's CDN into S3.

It returns the job store's own write for the outcome (DOWNLOADING -> COMPLETED, or -> FAILED for a
refusal), which the state machine's RecordOutcome sends as is, so the record's shape is defined once
(adapters.job_store), with the store's condition (state and version). It also returns the event to
announce and, when a caller waits, its task token: the state machine never reads the whole item.
A transient failure (the CDN, S3, DynamoDB) raises TransientDownloadError for the state machine's
Retry; when the retries are spent the job stays DOWNLOADING for the stale-job repair, which never
makes the user pay Kling again. The step acts only for the job version its execution was started for
(docs/architecture.md, "The download workflow").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from kling_pipeline.adapters.aws_errors import is_transient
from kling_pipeline.adapters.job_store import JobStore, announced_write, job_store
from kling_pipeline.adapters.video_transfer import DownloadPolicy, StoredVideo, s3_client, stream_to_s3
from kling_pipeline.doors import door_of
from kling_pipeline.errors import DownloadRefusedError, TransientDownloadError, VideoLinkRefusedError
from kling_pipeline.extend_chain import stored_move, video_key
from kling_pipeline.job_ids import job_reference
from kling_pipeline.lifecycle import Job, JobState, Transition, public_step
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.providers import OUTPUT_EXPIRED
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


def policy_for(job: Job, policy: DownloadPolicy) -> DownloadPolicy:
    """The download's rules for this job: AllowedDownloadHosts, and the hosts its provider's videos come
    from (doors.py: Replicate's replicate.delivery) for its own jobs only, streamed and checked as every
    download is."""
    door = door_of(job)
    if door is None or not door.media_hosts:
        return policy
    return replace(policy, allowed_hosts=tuple(dict.fromkeys(policy.allowed_hosts + door.media_hosts)))


def download_job(job_id: str, version: int, deps: DownloadDependencies) -> dict[str, Any]:
    """Copy the video of job `job_id` (at `version`, as the workflow was started) into S3."""
    logger.set_correlation_id(job_id)
    try:
        return _download(job_id, version, deps)
    except (DownloadRefusedError, TransientDownloadError):
        raise
    except Exception as exc:
        if is_transient(exc):
            raise TransientDownloadError(f"{type(exc).__name__}: {exc}") from exc
        raise


def _download(job_id: str, version: int, deps: DownloadDependencies) -> dict[str, Any]:
    job = deps.store.get(job_id)
    if job.state is not JobState.DOWNLOADING or job.version != version:
        logger.info("not the job this execution was started for; nothing to do", extra={"state": job.state})
        record(Metric.DOWNLOADS, outcome="skipped")
        return {"ok": True, "skipped": True, "state": job.state.value}
    if not job.video_url:
        return refused(
            job, "NO_VIDEO_URL", "the job has no video URL from Kling (a pipeline error; please report it)", deps
        )
    try:
        stored = stream_to_s3(
            job.video_url,
            bucket=deps.bucket,
            key=video_key(job),
            policy=policy_for(job, deps.policy),
            s3=deps.s3,
            metadata=object_metadata(job),
        )
    except VideoLinkRefusedError as exc:
        return link_refused(job, exc, deps)
    except DownloadRefusedError as exc:
        logger.warning("download refused", extra={"error_code": exc.code, "reason": exc.message})
        return refused(job, exc.code, exc.message, deps)
    logger.info("video stored", extra={"s3_uri": stored.s3_uri, "size": stored.size})
    record(Metric.DOWNLOADS, outcome="stored")
    record(Metric.VIDEO_BYTES_STORED, stored.size, MetricUnit.Bytes)
    if job.kling_finished_at:
        record(Metric.NOTICE_LATENCY, max(0.0, time.time() - job.kling_finished_at / 1000), MetricUnit.Seconds)
    return stored_outcome(job, stored, deps)


def output_expired_message(job: Job, what: str) -> str:
    """PROVIDER_OUTPUT_EXPIRED, said plainly: the video was made (and billed) but the provider deleted it
    before it could be copied (Replicate keeps an API prediction's output one hour)."""
    provider = str(job.request.get("provider") or "the provider")
    return (
        f"{what}: {provider} made the video but deleted it before it could be copied (its output is kept only "
        "a short while: Replicate keeps an API prediction's output one hour), so it can no longer be fetched; "
        "making it again is a new job, and a new charge"
    )


def link_refused(job: Job, exc: VideoLinkRefusedError, deps: DownloadDependencies) -> dict[str, Any]:
    """A 401/403/404/410 from the CDN. Within Kling's 30 days of the task's end the link is good (an edge
    still propagating, a WAF): an attempt that failed, retried by the workflow and then repaired by the
    poller's next attempt, up to DownloadAttempts. Only past the 30 days is it expired."""
    expires_at = job.results_expire_at
    if job.video_expires_at is not None and time.time() >= job.video_expires_at:
        return refused(job, OUTPUT_EXPIRED, output_expired_message(job, exc.message), deps)
    if expires_at is not None and time.time() >= expires_at:
        expired_on = datetime.fromtimestamp(expires_at, UTC).date()
        return refused(
            job,
            "VIDEO_URL_EXPIRED",
            f"{exc.message}: Kling's result link expired on {expired_on} (results are kept 30 days), so this "
            "video can no longer be fetched; making it again is a new job, and a new Kling charge",
            deps,
        )
    logger.warning("the CDN refused a result link within Kling's 30 days: retried", extra={"status": exc.status})
    record(Metric.DOWNLOADS, outcome="link_refused")
    raise TransientDownloadError(
        f"{exc.message} within Kling's 30 days of the task's end (an edge not serving it yet, or a WAF): tried again"
    ) from exc


def object_metadata(job: Job) -> dict[str, str]:
    """What is stored with the object: enough to tell which job, task and request made it."""
    metadata = {
        "job-id": job.job_id,
        "task-id": job.task_id or "",
        "prompt-hash": str(job.prompt_hash or ""),
        "model": str(job.model_name or job.request.get("model") or ""),
        "duration": str(job.video_duration or job.request.get("duration") or ""),
    }
    return {k: v for k, v in metadata.items() if v}


def stored_changes(stored: StoredVideo) -> dict[str, Any]:
    return {"s3_uri": stored.s3_uri, "s3_key": stored.key, "video_size": stored.size, "sha256": stored.sha256}


def refused(job: Job, code: str, message: str, deps: DownloadDependencies) -> dict[str, Any]:
    record(Metric.DOWNLOADS, outcome="refused")
    message = f"{job.step_label}{message}"
    changes = {"error_code": code, "error_message": message}
    return outcome(job, Transition(job.state, JobState.FAILED, changes, by=BY), changes, deps)


def stored_outcome(job: Job, stored: StoredVideo, deps: DownloadDependencies) -> dict[str, Any]:
    """The video is in S3: the job is COMPLETED with it, or (an extend chain) QUEUED for its next step,
    whose message the workflow sends once the write is made (extend_chain.py)."""
    move = stored_move(job, stored_changes(stored), by=BY)
    details = {"s3_uri": stored.s3_uri, "size": stored.size, "sha256": stored.sha256}
    answer = outcome(job, move, details, deps)
    if move.to_state is JobState.QUEUED:
        # The job by id only: its request (up to a message's size) stays in its record, out of the
        # workflow's state (256 KiB) and of the step's message.
        answer |= {"next_step": True, "next_message": json.dumps(job_reference(job.job_id))}
    return answer


def outcome(job: Job, move: Transition, details: dict[str, Any], deps: DownloadDependencies) -> dict[str, Any]:
    """The step's answer: the store's write for the outcome, the event to announce, a waiting caller.

    `recorded` is what the job reads once this write is made (its state, version and `updated_at`, as
    strings, as DynamoDB's typed answer holds them): a write whose first answer was lost and whose retry
    failed its condition is recognised as made, and the workflow carries on. `announced` is the write
    that clears the end's `announce_pending` once the event was taken and the caller resumed."""
    write = deps.store.transition_write(job, move)
    to_state = move.to_state
    ended = job.model_copy(update={k: v for k, v in move.changes.items() if k in ("steps", "units_charged")})
    answer: dict[str, Any] = {
        "ok": to_state is not JobState.FAILED,
        "skipped": False,
        "next_step": False,
        "write": write.for_step_functions(),
        "recorded": {"state": to_state.value, "version": str(job.version + 1), "updated_at": write.values[":now"]},
        "announced": announced_write(job.version + 1).for_step_functions(),
        "event": {"job_id": job.job_id, "state": to_state.value}
        | details
        | {"units_charged": ended.total_units, "metadata": json.loads(job.metadata_json or "{}")}
        | ({"steps": [public_step(s) for s in ended.steps]} if job.is_chain else {}),
    }
    if job.task_token:
        answer["task_token"] = job.task_token
    return answer
