"""fal.ai's door wired into the one lifecycle: what a fal job records, and how fal's words reach it.

A fal job lives the same life as a Kling job (QUEUED -> SUBMITTING -> SUBMITTED -> ... -> COMPLETED):
the same claims, store, workflow, events and API. What differs is said here, once:
- its reference (providers.TaskRef: request_id and fal's status/response/cancel URLs) is stored by the
  SUBMITTED transition itself (`provider_task`), before anything else is done with it;
- what fal says (providers.ProviderTask) is read as the task observation the lifecycle already decides on
  (`as_kling_task`: queued -> submitted, running -> processing, succeeded -> succeed with the video and
  its USD charge as a cash billing line, failed -> failed with fal's detail; unknown moves nothing);
- an unsettled create (its answer proves nothing) is never sent again: the job waits SUBMITTED without a
  request id (`provider_unsettled_at`) for fal's webhook, whose URL names the job, or for the window
  (FalWebhookWindowSeconds), after which it ends FAILED with PROVIDER_UNSETTLED.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job
from kling_pipeline.providers import Charge, ProviderTask, TaskRef
from kling_pipeline.providers.fal import DASHBOARD_URL
from kling_pipeline.settings import FalAccess

if TYPE_CHECKING:  # imported on first use (fal_client): Kling-only functions never load it
    from kling_pipeline.adapters.fal_client import FalClient

FAL: Final = "fal"
PROVIDER_UNSETTLED: Final = "PROVIDER_UNSETTLED"
# What a fal job records (besides task_id = fal's request_id): its reference, and while unsettled, when
# the create was sent and to which endpoint.
PROVIDER_TASK = "provider_task"
UNSETTLED_AT = "provider_unsettled_at"
ENDPOINT = "provider_endpoint"
STATUSES = {"queued": "submitted", "running": "processing", "succeeded": "succeed", "failed": "failed"}


class FalNotEnabledError(Exception):
    """The FalCredentials secret holds no api_key: fal's door is closed in this deployment."""


def provider_of(request: Mapping[str, Any], default: str = "kling") -> str:
    """The door a request goes through: its own `provider`, else the deployment's."""
    return str(request.get("provider") or default)


def is_fal(job: Job) -> bool:
    return provider_of(job.request) == FAL


def fal_callback_url(api_base_url: str, job_id: str, signing_secret: str) -> str:
    """The webhook URL handed to fal: the Kling callback URL's scheme (our token in it), on its own path."""
    from kling_pipeline.adapters.callback_tokens import job_token

    base = api_base_url.rstrip("/")
    return f"{base}/callbacks/{quote(job_id, safe='')}/fal?token={job_token(signing_secret, job_id)}"


def task_ref(job: Job) -> TaskRef | None:
    record = job.provider_task
    return TaskRef.from_record(record) if isinstance(record, Mapping) and record.get("id") else None


def unsettled_since(job: Job) -> int | None:
    return job.provider_unsettled_at


def adopted_ref(job: Job, request_id: str, queue_base_url: str) -> TaskRef:
    """The reference of a request an unsettled create made, from fal's webhook naming it: fal's queue URLs
    follow `<queue>/<owner>/<app>/requests/<id>` (docs/fal-contract.md), so they are rebuilt, on fal's
    own origin only."""
    endpoint = job.provider_endpoint or ""
    app = "/".join(endpoint.split("/")[:2])
    base = f"{queue_base_url.rstrip('/')}/{app}/requests/{request_id}"
    urls = {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}
    return TaskRef(provider=FAL, id=request_id, endpoint=endpoint, urls=urls, created_at=unsettled_since(job))


def charge_arguments(job: Job) -> dict[str, Any]:
    """What fal's price depends on, from the stored request (the seconds asked, and sound)."""
    return {"duration": job.request.get("duration", "5"), "generate_audio": bool(job.request.get("sound"))}


def as_kling_task(task: ProviderTask, charge: Charge | None = None) -> KlingTask | None:
    """fal's view of a request as the observation the lifecycle decides on; None for `unknown`."""
    status = STATUSES.get(task.status)
    if status is None:
        return None
    body: dict[str, Any] = {"task_id": task.id, "task_status": status, "task_status_msg": task.error}
    if task.status == "succeeded" and task.video_url:
        video: dict[str, Any] = {"id": task.id, "url": task.video_url}
        if task.duration_s is not None:
            video["duration"] = f"{task.duration_s:g}"
        body["task_result"] = {"videos": [video]}
    if charge is not None and charge.unit == "USD":
        body["billing"] = [{"charge_type": "cash", "amount": f"{charge.amount:.4f}", "currency": "USD"}]
    return KlingTask.model_validate(body)


def unsettled_reason(job: Job, window_s: int) -> str:
    """PROVIDER_UNSETTLED: what is known and how to check it."""
    since = unsettled_since(job) or 0
    when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    endpoint = job.provider_endpoint or "fal"
    return (
        f"a create for this job on fal ({endpoint}, sent {when}) got no answer proving whether fal queued it, and "
        f"no webhook from fal named the job within {window_s} s. It was not sent again (fal has no idempotency "
        f"key: a second create could be a second charge). fal may have made and billed it: look for a request to "
        f"{endpoint} at {when} in {DASHBOARD_URL}; send the request again with a new job_id if fal has none"
    )


_clients: dict[tuple[str, str], FalClient] = {}
_lock = threading.Lock()


def fal_key(settings: FalAccess, max_age_s: int) -> str:
    """fal's api_key from its secret; FalNotEnabledError naming the fix when it holds none."""
    from kling_pipeline.adapters.secrets import fal_api_key

    key = fal_api_key(settings.fal_credentials_secret, max_age_s=max_age_s)
    if not key:
        raise FalNotEnabledError(
            "fal is not enabled in this deployment: store fal's key in the FalCredentials secret "
            '({"api_key": "..."}, aws secretsmanager put-secret-value; README "fal.ai"), or use provider kling'
        )
    return key


def fal_client(settings: FalAccess, max_age_s: int) -> FalClient:
    """One FalClient per container and key (a rotated key makes a new one), verifying fal's webhooks
    against the JWKS the settings name. Imported on first use: Kling-only functions never load it."""
    from kling_pipeline.adapters.fal_client import FalClient
    from kling_pipeline.adapters.fal_signatures import FalWebhookVerifier
    from kling_pipeline.providers.fal_prices import PriceTable, parse_overrides

    key = fal_key(settings, max_age_s)
    with _lock:
        found = _clients.get((key, settings.fal_queue_base_url))
        if found is None:
            verifier = FalWebhookVerifier(settings.fal_jwks_url)
            found = FalClient(
                key,
                queue_base_url=settings.fal_queue_base_url,
                timeout_s=settings.fal_timeout_s,
                result_retention_s=settings.fal_result_retention_s,
                prices=PriceTable(parse_overrides(settings.fal_prices)),
                verify=lambda body, headers, now: verifier.verify(body, headers, now=now),
            )
            _clients[(key, settings.fal_queue_base_url)] = found
        return found


def _forget() -> None:
    with _lock:
        _clients.clear()


def _register() -> None:
    from kling_pipeline.adapters import on_reset

    on_reset(_forget)


_register()
