"""The callback use case: Kling's webhook, authenticated by our own URL token, its body a hint that a
GET from Kling confirms before anything that costs money happens; unless Kling signed it (Standard
Webhooks, with the account's webhook secret, which we hold too): a verified body is Kling's word and is
acted on as it stands, once per `webhook-id`, with no GET.

Answers fast and changes nothing for forged, unknown, duplicate, stale or out-of-order callbacks.
What an observed task means is lifecycle.advance_job, shared with every other observer
(docs/architecture.md, "Callbacks are hints").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from kling_pipeline.adapters.announcements import Announcer, announcer
from kling_pipeline.adapters.callback_tokens import verify_job_token
from kling_pipeline.adapters.download_workflow import DownloadWorkflow, download_workflow
from kling_pipeline.adapters.generation_estimates import GenerationEstimates, generation_estimates
from kling_pipeline.adapters.job_queue import job_queue
from kling_pipeline.adapters.job_store import JobStore, job_store
from kling_pipeline.adapters.kling_signatures import BadSignatureError, is_signed, kling_signers, verify_kling_callback
from kling_pipeline.adapters.ledger import Ledger, ledger
from kling_pipeline.adapters.secrets import callback_signing_secrets, kling_credentials, kling_webhook_secrets
from kling_pipeline.adapters.slot_pools import slot_pools
from kling_pipeline.doors import callback_clients, no_clients
from kling_pipeline.errors import ConfigError, KlingApiError, KlingShapeError, KlingUnavailableError
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import AWAITING_KLING, Job, JobState, advance_job
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.settings import CallbackSettings

if TYPE_CHECKING:
    from standardwebhooks import Webhook

    from kling_pipeline.adapters.kling_client import KlingClient

MAX_CALLBACK_BYTES = 64 * 1024
BY = "callback"


@dataclass
class CallbackDependencies:
    store: JobStore
    kling: Callable[[], KlingClient]  # built on first use: only a terminal status needs Kling
    workflow: DownloadWorkflow
    estimates: GenerationEstimates
    ledger: Ledger
    announcer: Announcer
    signing_secrets: tuple[str, ...]  # the current secret, and the previous one for a while after a rotation
    # Kling's webhook secrets, read on first use (only a signed callback needs them): none, one, or two mid-rotation.
    kling_signers: Callable[[], tuple[Webhook, ...]] = tuple
    # The other providers' doors (doors.py): a client by name, built on first use (only their callbacks).
    door: Callable[[str], Any] = no_clients
    fal_queue_base_url: str = ""


def callback_dependencies(settings: CallbackSettings) -> CallbackDependencies:
    """Assembled per invocation from clients built once per container (see submit.submit_dependencies)."""

    def kling() -> KlingClient:
        # Imported here: most callbacks (forged ones, `submitted`, `processing`) never ask Kling, and the
        # client's HTTP and JWT libraries are a good part of a cold start.
        from kling_pipeline.adapters.kling_client import shared_client

        credentials = kling_credentials(settings.kling_credentials_secret, max_age_s=settings.secrets_max_age_s)
        return shared_client(settings.kling_base_url, credentials, timeout_s=settings.kling_timeout_s)

    def signers() -> tuple[Webhook, ...]:
        return kling_signers(kling_webhook_secrets(settings.kling_webhook_secret, max_age_s=settings.secrets_max_age_s))

    # A task's end gives its Kling slot back (adapters.job_store): the pool's next waiting job is sent
    # from here at once, to the submit path's queue (never dead-lettered from here: no DLQ).
    slots = slot_pools(settings.jobs_table_name, settings.pool_limits, job_queue(settings.jobs_queue_url, ""))
    store = job_store(settings.jobs_table_name, settings.finished_job_ttl_days, settings.poll_schedule, slots)
    return CallbackDependencies(
        store=store,
        kling=kling,
        estimates=generation_estimates(settings.stats_table_name),
        ledger=ledger(settings.stats_table_name),
        announcer=announcer(settings.event_bus_name, store),
        workflow=download_workflow(settings.download_state_machine_arn, settings.download_attempts),
        signing_secrets=callback_signing_secrets(
            settings.callback_secret,
            max_age_s=settings.secrets_max_age_s,
            previous_for_s=settings.callback_secret_grace_s,
        ),
        kling_signers=signers,
        door=callback_clients(settings),
        fal_queue_base_url=settings.fal_queue_base_url,
    )


@dataclass(frozen=True)
class CallbackAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def handle_callback(
    job_id: str,
    token: str | None,
    raw_body: str | bytes | None,
    deps: CallbackDependencies,
    headers: Mapping[str, str] | None = None,
) -> CallbackAnswer:
    """Everything the callback endpoint does; never raises for anything a caller sent."""
    answer = answer_callback(job_id, token, raw_body, deps, headers or {})
    record(Metric.CALLBACKS, status=str(answer.status))
    return answer


def answer_callback(
    job_id: str,
    token: str | None,
    raw_body: str | bytes | None,
    deps: CallbackDependencies,
    headers: Mapping[str, str],
) -> CallbackAnswer:
    if not verify_job_token(deps.signing_secrets, job_id, token):
        logger.warning("callback refused: bad or missing token", extra={"job_id": job_id[:80]})
        return CallbackAnswer(401, {"message": "invalid or missing callback token"})
    job = deps.store.find(job_id) if is_valid_job_id(job_id) else None
    if job is None:
        return CallbackAnswer(404, {"message": f"no job {job_id[:80]}"})
    logger.set_correlation_id(job_id)
    body = raw_body.encode("utf-8", "surrogatepass") if isinstance(raw_body, str) else (raw_body or b"")
    if len(body) > MAX_CALLBACK_BYTES:
        logger.warning("callback body too large", extra={"bytes": len(body)})
        return CallbackAnswer(413, {"message": f"callback body over {MAX_CALLBACK_BYTES} bytes"})
    try:
        webhook_id = verified_webhook_id(body, headers, deps)
    except BadSignatureError as exc:
        logger.warning("callback refused: bad signature", extra={"reason": str(exc)})
        return CallbackAnswer(401, {"message": "invalid callback signature"})
    try:
        hint = task_from_callback(body)
    except (ValueError, ValidationError, RecursionError, UnicodeError) as exc:
        logger.warning("malformed callback body", extra={"error": str(exc)[:500]})
        return CallbackAnswer(400, {"message": "body is not a Kling task object"})
    if webhook_id is None:
        return apply_hint(job, hint, deps)
    if not deps.store.remember_callback(job.job_id, webhook_id):
        return answered(job, "duplicate callback (webhook-id seen before)")
    try:
        return apply_hint(job, hint, deps, verified=True)
    except BaseException:
        deps.store.forget_callback(job.job_id, webhook_id)  # not handled: Kling's redelivery will be
        raise


def task_from_callback(body: bytes) -> KlingTask:
    """The task a callback's body describes (the legacy design's bare task object)."""
    return KlingTask.model_validate(json.loads(body))


def verified_webhook_id(body: bytes, headers: Mapping[str, str], deps: CallbackDependencies) -> str | None:
    """The `webhook-id` of a callback Kling signed, verified with the secrets we hold; None for a callback
    to treat as a hint: unsigned, or signed while we hold no secret (or one we cannot use: logged).
    BadSignatureError for a signature that does not verify or a timestamp more than 5 minutes off."""
    if not is_signed(headers):
        return None
    try:
        signers = deps.kling_signers()
    except ConfigError as exc:
        logger.error("signed callback taken as a hint: the Kling webhook secret is unusable", extra={"error": str(exc)})
        return None
    if not signers:
        return None
    return verify_kling_callback(signers, body, headers)


def apply_hint(job: Job, hint: KlingTask, deps: CallbackDependencies, *, verified: bool = False) -> CallbackAnswer:
    """`verified`: Kling signed the body, so it is the task as Kling has it, no GET needed."""
    if job.state is JobState.DOWNLOADING:
        # Repairs a crash between the DOWNLOADING write and the start; a started execution is a no-op.
        deps.workflow.start(job)
        return answered(job, "download already under way")
    if job.state not in AWAITING_KLING or job.task_id is None:
        return answered(job, "nothing to do")
    if hint.task_status in ("submitted", "processing"):
        # Cheap states start nothing that costs: the body may move the job, if it is this job's task.
        return move(job, hint, deps)
    if verified:
        # Kling's own word on its task (its signature verified): acted on with no GET, zero queries per video.
        return move(job, hint, deps)
    try:
        confirmed = deps.kling().get_task(job.task_kind, job.task_id, model=job.task_model)
    except (KlingApiError, KlingUnavailableError, KlingShapeError) as exc:
        # A 5xx tells Kling this one did not land, so it may call again.
        logger.warning("could not confirm the callback with Kling", extra={"error": str(exc)})
        return CallbackAnswer(503, {"message": "could not confirm the task with Kling; try again"})
    if confirmed.task_status != hint.task_status:
        logger.info(
            "callback body disagrees with Kling", extra={"hint": hint.task_status, "kling": confirmed.task_status}
        )
    return move(job, confirmed, deps)


def move(job: Job, task: KlingTask, deps: CallbackDependencies) -> CallbackAnswer:
    moved, action = advance_job(job, task, deps, by=BY)
    return answered(moved, action)


def answered(job: Job, action: str) -> CallbackAnswer:
    return CallbackAnswer(200, {"job_id": job.job_id, "state": job.state.value, "action": action})
