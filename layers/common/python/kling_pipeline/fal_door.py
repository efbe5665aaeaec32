"""fal.ai's door: what only fal needs (its client, built once per key; how a request an unsettled create
made is adopted from fal's webhook; what fal's price depends on). Everything every door shares (the
reference stored before anything else, the unsettled path, the callback, the look-ups) is doors.py,
door_submit.py and door_callback.py.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from kling_pipeline.doors import FAL
from kling_pipeline.errors import ProviderNotEnabledError
from kling_pipeline.lifecycle import Job
from kling_pipeline.providers import TaskRef
from kling_pipeline.requests import JobRequest
from kling_pipeline.settings import FalAccess

if TYPE_CHECKING:  # imported on first use (fal_client): Kling-only functions never load it
    from kling_pipeline.adapters.fal_client import FalClient
    from kling_pipeline.settings import SubmitSettings


class FalNotEnabledError(ProviderNotEnabledError):
    """The FalCredentials secret holds no api_key: fal's door is closed in this deployment."""


def adopted_ref(job: Job, request_id: str, queue_base_url: str) -> TaskRef:
    """The reference of a request an unsettled create made, from fal's webhook naming it: fal's queue URLs
    follow `<queue>/<owner>/<app>/requests/<id>` (docs/fal-contract.md), so they are rebuilt, on fal's
    own origin only."""
    endpoint = job.provider_endpoint or ""
    app = "/".join(endpoint.split("/")[:2])
    base = f"{queue_base_url.rstrip('/')}/{app}/requests/{request_id}"
    urls = {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}
    return TaskRef(provider=FAL, id=request_id, endpoint=endpoint, urls=urls, created_at=job.provider_unsettled_at)


def charge_arguments(job: Job) -> dict[str, Any]:
    """What fal's price depends on, from the stored request (the seconds asked, and sound)."""
    return {"duration": job.request.get("duration", "5"), "generate_audio": bool(job.request.get("sound"))}


def usd_to_reserve(request: JobRequest, settings: SubmitSettings) -> float | None:
    """What a fal job's video will cost in USD by the price table (and FalPrices), for the daily USD budget;
    None when fal does not serve it (refused at its create, before any money is spent) or no price is known."""
    from kling_pipeline.errors import ProviderCapabilityError
    from kling_pipeline.observability import logger
    from kling_pipeline.providers.fal import endpoint_for
    from kling_pipeline.providers.fal_prices import PriceTable

    try:
        endpoint = endpoint_for(request.model or settings.default_model, request.kind, request.mode)
        seconds = float(request.duration)
    except (ProviderCapabilityError, TypeError, ValueError):
        return None
    charge = PriceTable.from_setting(settings.fal_prices).charge(endpoint.model_id, seconds, audio=bool(request.sound))
    if charge is None:
        logger.warning("no fal price for the daily USD budget's estimate", extra={"endpoint": endpoint.model_id})
    return None if charge is None else charge.amount


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
