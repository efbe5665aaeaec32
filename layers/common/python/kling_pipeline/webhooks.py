"""The webhook use case: a job that has ended is POSTed, signed, to the job's `webhook_url`.

Fed by an EventBridge rule on the pipeline's own events (`Video Completed`, `Video Failed`, source
`kling-pipeline`) through WebhookQueue, so every way a job ends (the download workflow, the stale-job
poller, a cancel) is notified once, by one path. A receiver that does not answer 2xx is tried again
with a growing, jittered backoff (hours in all), then the event moves to the webhook DLQ. A URL that
may not be called (adapters.webhook_targets' rules) is refused once, never retried.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kling_pipeline.adapters.announcements import COMPLETED, FAILED, SOURCE
from kling_pipeline.adapters.job_store import JobStore, job_store
from kling_pipeline.adapters.webhook_queue import WebhookQueue, webhook_queue
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy
from kling_pipeline.errors import WebhookNotDeliveredError, WebhookRefusedError
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.settings import WebhookSettings

EVENT_TYPES = {COMPLETED: "video.completed", FAILED: "video.failed"}


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRYING = "retrying"  # not delivered; tried again after a backoff
    GIVEN_UP = "given_up"  # not delivered on the last attempt; the event goes to the webhook DLQ
    REFUSED = "refused"  # the URL may not be called: never retried
    SKIPPED = "skipped"  # not ours, no such job, or no webhook_url


@dataclass
class WebhookDependencies:
    settings: WebhookSettings
    store: JobStore
    queue: WebhookQueue
    sender: Callable[[], WebhookSender]  # built on first use: most jobs have no webhook


def webhook_dependencies(settings: WebhookSettings) -> WebhookDependencies:
    from kling_pipeline.adapters.secrets import webhook_signing_secret

    def sender() -> WebhookSender:
        secret = webhook_signing_secret(settings.webhook_secret, max_age_s=settings.secrets_max_age_s)
        policy = WebhookPolicy.from_settings(
            settings.webhook_allowed_hosts, pipeline_mode=settings.pipeline_mode, timeout_s=settings.webhook_timeout_s
        )
        return _sender(secret, policy)

    return WebhookDependencies(
        settings=settings,
        store=job_store(settings.jobs_table_name, settings.finished_job_ttl_days),
        queue=webhook_queue(settings.webhook_queue_url),
        sender=sender,
    )


_senders: dict[tuple[str, WebhookPolicy], WebhookSender] = {}


def _sender(secret: str, policy: WebhookPolicy) -> WebhookSender:
    """One sender (and HTTP client) per secret, so a rotated secret is used as soon as it is read."""
    key = (secret, policy)
    if key not in _senders:
        _senders.clear()
        _senders[key] = WebhookSender(secret, policy)
    return _senders[key]


def webhook_body(event: dict[str, Any]) -> tuple[str, str] | None:
    """(message id, body) for one of the pipeline's events, or None for anything else. The id is the
    event's, the same on every attempt, so a receiver can drop a duplicate."""
    detail = event.get("detail")
    kind = EVENT_TYPES.get(str(event.get("detail-type")))
    if event.get("source") != SOURCE or kind is None or not isinstance(detail, dict):
        return None
    payload = {"type": kind, "timestamp": event.get("time"), "data": detail}
    return f"msg_{event.get('id')}", json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)


def deliver(raw_body: str, *, receipt_handle: str, attempt: int, deps: WebhookDependencies) -> Outcome:
    """One delivery attempt for one queued event. Raises WebhookNotDeliveredError when the event is to
    come back (after the backoff this sets)."""
    outcome = attempt_delivery(raw_body, receipt_handle=receipt_handle, attempt=attempt, deps=deps)
    record(Metric.WEBHOOKS, outcome=outcome.value)
    if outcome in (Outcome.RETRYING, Outcome.GIVEN_UP):
        raise WebhookNotDeliveredError(f"webhook not delivered (attempt {attempt}): {outcome.value}")
    return outcome


def attempt_delivery(raw_body: str, *, receipt_handle: str, attempt: int, deps: WebhookDependencies) -> Outcome:
    try:
        event = json.loads(raw_body)
    except (ValueError, RecursionError):
        event = None
    message = webhook_body(event) if isinstance(event, dict) else None
    job_id = event["detail"].get("job_id") if message is not None and isinstance(event, dict) else None
    if message is None or not isinstance(job_id, str) or not is_valid_job_id(job_id):
        logger.warning("not an event of the pipeline's; dropped", extra={"body": raw_body[:200]})
        return Outcome.SKIPPED
    logger.set_correlation_id(job_id)
    job = deps.store.find(job_id)
    url = job.request.get("webhook_url") if job is not None else None
    if not isinstance(url, str) or not url:
        return Outcome.SKIPPED
    message_id, body = message
    try:
        delivery = deps.sender().send(url, message_id=message_id, body=body)
    except WebhookRefusedError as exc:
        logger.warning("webhook refused; not retried", extra={"reason": exc.message})
        return Outcome.REFUSED
    if delivery.delivered:
        logger.info("webhook delivered", extra={"status": delivery.status, "attempt": attempt})
        return Outcome.DELIVERED
    settings = deps.settings
    last = attempt >= settings.webhook_max_attempts
    delay = (
        0 if last else retry_delay(attempt, base_s=settings.webhook_retry_base_s, max_s=settings.webhook_retry_max_s)
    )
    logger.warning(
        "webhook not delivered",
        extra={"status": delivery.status, "answer": delivery.detail, "attempt": attempt, "retry_in_s": delay},
    )
    deps.queue.retry_later(receipt_handle, delay)  # the last attempt's event goes to the DLQ at once
    return Outcome.GIVEN_UP if last else Outcome.RETRYING


def retry_delay(attempt: int, *, base_s: int, max_s: int, rng: random.Random | None = None) -> int:
    """Exponential from the base after the first attempt, capped, with jitter (half to full)."""
    ceiling = min(float(max_s), base_s * 2.0 ** min(max(attempt - 1, 0), 30))
    return max(1, round(ceiling * (rng or random).uniform(0.5, 1.0)))
