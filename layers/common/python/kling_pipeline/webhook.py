"""The webhook use case: a job that has ended is POSTed, signed, to the job's `webhook_url`.

Fed by an EventBridge rule on the pipeline's own events (`Video Completed`, `Video Failed`, source
`kling-pipeline`) through WebhookQueue, so every way a job ends (the download workflow, the stale-job
poller, a cancel) is notified by one path. The event only says which job to look at: what is signed
and sent is built from the job's record, and only when the record shows the end the event names, so
whoever may put events on the bus cannot have the pipeline sign an end that did not happen. The
message id is the end's (job, state, version), the same however often the end is announced, so a
receiver can drop a repeat (events are at least once). A receiver that does not answer 2xx is tried again
with a growing, jittered backoff (hours in all), then the event moves to the webhook DLQ. A URL that
may not be called (adapters.webhook_targets' rules) is refused once, never retried.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kling_pipeline.adapters.announcements import COMPLETED, FAILED, SOURCE, event_detail
from kling_pipeline.adapters.job_store import JobStore, job_store
from kling_pipeline.adapters.webhook_queue import WebhookQueue, webhook_queue
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy
from kling_pipeline.errors import WebhookNotDeliveredError, WebhookRefusedError
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.settings import WebhookSettings

EVENT_TYPES = {COMPLETED: "video.completed", FAILED: "video.failed"}
# The ends each event names: what the job's record must show for its webhook to be sent.
ENDS = {
    COMPLETED: frozenset({JobState.COMPLETED}),
    FAILED: frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}),
}


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


def event_job_id(event: Any) -> str | None:
    """The job an event of the pipeline's is about; None for anything else."""
    if not isinstance(event, dict) or event.get("source") != SOURCE or event.get("detail-type") not in EVENT_TYPES:
        return None
    detail = event.get("detail")
    job_id = detail.get("job_id") if isinstance(detail, dict) else None
    return job_id if isinstance(job_id, str) and is_valid_job_id(job_id) else None


def webhook_body(event: dict[str, Any], job: Job) -> tuple[str, str] | None:
    """(message id, body) of the end `job`'s record shows, when it is the end `event` names; None when
    the record shows another (a forged event, or one about a job still running). Nothing is taken from
    the event's detail. The id is the end's, the same on every attempt and every announcement of it."""
    detail_type = str(event.get("detail-type"))
    if detail_type not in EVENT_TYPES or job.state not in ENDS[detail_type]:
        return None
    payload = {"type": EVENT_TYPES[detail_type], "timestamp": job.updated_at, "data": event_detail(job)}
    end = hashlib.sha256(f"{job.job_id}\n{job.state.value}\n{job.version}".encode()).hexdigest()[:32]
    return f"msg_{end}", json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)


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
    job_id = event_job_id(event)
    if job_id is None:
        logger.warning("not an event of the pipeline's; dropped", extra={"body": raw_body[:200]})
        return Outcome.SKIPPED
    logger.set_correlation_id(job_id)
    job = deps.store.find(job_id)
    if job is None:
        return Outcome.SKIPPED
    message = webhook_body(event, job)
    if message is None:
        logger.warning(
            "the event names an end the job's record does not show (forged, or not the pipeline's); dropped",
            extra={"detail_type": str(event.get("detail-type"))[:40], "state": job.state.value},
        )
        return Outcome.SKIPPED
    url = job.request.get("webhook_url")
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
