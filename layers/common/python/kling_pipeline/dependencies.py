"""Builds each function's collaborators once per container and reuses them while warm.

Secrets come from Secrets Manager through Powertools Parameters (cached for SECRETS_MAX_AGE_S),
so a rotated Kling key is picked up without a redeploy; the Kling client is rebuilt only then.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters

from kling_pipeline.callbacks import CallbackDependencies
from kling_pipeline.config import ConfigError, Settings, get_settings
from kling_pipeline.delivery import DownloadDependencies
from kling_pipeline.download import DownloadPolicy
from kling_pipeline.kling import KlingClient
from kling_pipeline.queue import JobQueue
from kling_pipeline.store import JobStore
from kling_pipeline.submission import SubmitDependencies
from kling_pipeline.workflow import DownloadWorkflow

_lock = threading.Lock()
_kling: dict[tuple[str, str, str], KlingClient] = {}
_stores: dict[str, JobStore] = {}
_workflows: dict[str, DownloadWorkflow] = {}
_s3: dict[str, Any] = {}


def kling_credentials(settings: Settings) -> tuple[str, str]:
    secret = get_secret_json(settings.need("kling_credentials_secret"), settings)
    access_key, secret_key = str(secret.get("access_key", "")), str(secret.get("secret_key", ""))
    if not access_key or not secret_key:
        raise ConfigError(
            "the Kling credentials secret needs both 'access_key' and 'secret_key'; set them with "
            "aws secretsmanager put-secret-value (see the README, 'Deploy')"
        )
    return access_key, secret_key


def get_secret_json(name: str, settings: Settings) -> dict[str, Any]:
    value = parameters.get_secret(name, transform="json", max_age=settings.secrets_max_age_s)
    if not isinstance(value, dict):
        raise ConfigError(f"secret {name} must hold a JSON object")
    return value


def callback_signing_secret(settings: Settings) -> str:
    value = parameters.get_secret(settings.need("callback_secret"), max_age=settings.secrets_max_age_s)
    if not isinstance(value, str) or len(value) < 32:
        raise ConfigError("the callback signing secret must be a string of at least 32 characters")
    return value


def kling_client(settings: Settings) -> KlingClient:
    access_key, secret_key = kling_credentials(settings)
    key = (settings.kling_base_url, access_key, secret_key)
    with _lock:
        client = _kling.get(key)
        if client is None:
            for old in _kling.values():
                old.close()
            _kling.clear()
            client = _kling[key] = KlingClient(
                settings.kling_base_url, access_key, secret_key, timeout_s=settings.kling_timeout_s
            )
        return client


def job_store(settings: Settings) -> JobStore:
    name = settings.need("jobs_table_name")
    with _lock:
        if name not in _stores:
            _stores[name] = JobStore(name, finished_ttl_days=settings.finished_job_ttl_days)
        return _stores[name]


_queues: dict[tuple[str, str], JobQueue] = {}


def job_queue(settings: Settings) -> JobQueue:
    key = (settings.need("jobs_queue_url"), settings.need("dead_letter_queue_url"))
    with _lock:
        if key not in _queues:
            _queues[key] = JobQueue(*key)
        return _queues[key]


def submit_dependencies(settings: Settings | None = None) -> SubmitDependencies:
    settings = settings or get_settings()
    return SubmitDependencies(
        settings=settings,
        store=job_store(settings),
        queue=job_queue(settings),
        kling=kling_client(settings),
        callback_signing_secret=callback_signing_secret(settings),
        workflow=download_workflow(settings),
    )


def download_workflow(settings: Settings) -> DownloadWorkflow:
    arn = settings.need("download_state_machine_arn")
    with _lock:
        if arn not in _workflows:
            _workflows[arn] = DownloadWorkflow(arn)
        return _workflows[arn]


def callback_dependencies(settings: Settings | None = None) -> CallbackDependencies:
    settings = settings or get_settings()
    return CallbackDependencies(
        store=job_store(settings),
        kling=kling_client(settings),
        workflow=download_workflow(settings),
        signing_secret=callback_signing_secret(settings),
    )


def download_dependencies(settings: Settings | None = None) -> DownloadDependencies:
    settings = settings or get_settings()
    with _lock:
        s3 = _s3.get("s3")
        if s3 is None:
            s3 = _s3["s3"] = boto3.client("s3")
    return DownloadDependencies(
        store=job_store(settings),
        s3=s3,
        bucket=settings.need("video_bucket"),
        policy=DownloadPolicy.from_setting(
            settings.allowed_download_hosts,
            max_bytes=settings.max_video_bytes,
            production=settings.pipeline_mode == "production",
        ),
        finished_ttl_days=settings.finished_job_ttl_days,
    )


def reset_caches() -> None:
    """Forget every cached client, setting and secret (tests and the local runtime use this)."""
    get_settings.cache_clear()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with _lock:
        for client in _kling.values():
            client.close()
        _kling.clear()
        _stores.clear()
        _queues.clear()
        _workflows.clear()
        _s3.clear()
