"""The doors to Kling's models besides Kling's own API (fal.ai, Replicate, AceData), in one registry, so the
submit path, the callback, the poller and the API dispatch on a job's provider once (`door_of`).

What differs per provider is said here, once, as one `Door` each:
- its client, built from the deployment's settings; a door is open once its credentials secret holds a
  key (FalCredentials, ReplicateCredentials, AceDataCredentials), else ProviderNotEnabledError naming the fix;
  what the callback function holds of it when that is less (`webhooks`: Replicate's webhook secret, no token);
- how a request becomes its create (`build`: endpoint, model, arguments) and what it refuses at accept;
- what its charge depends on (`charge_arguments`), in its own unit (USD for all three);
- how an ambiguous create is settled: Replicate *by listing* (`finds_lost_creates`: its prediction list
  shows the webhook URL naming the job, so the job is reconciled before any new create); fal and AceData
  have no way to find a task by our id, so the job waits, never created again, for the callback whose URL
  names it, within a window (`window_s`), then ends PROVIDER_UNSETTLED;
- how often a live job must be looked up (`poll_within_s`: Replicate deletes an output an hour after the
  prediction ends, so a lost webhook is noticed well inside that hour);
- whether it looks up many tasks in one call (`looks_up_many`: AceData's retrieve_batch);
- how the task an unsettled create made is adopted from the callback that names it (`adopt`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from kling_pipeline.errors import KlingKeysInvalidError, KlingKeysMissingError, ProviderNotEnabledError
from kling_pipeline.lifecycle import Job
from kling_pipeline.providers import ProviderTask, TaskRef

if TYPE_CHECKING:
    from kling_pipeline.adapters.kling_client import KlingClient
    from kling_pipeline.requests import JobRequest

KLING: Final = "kling"
FAL: Final = "fal"
REPLICATE: Final = "replicate"
ACEDATA: Final = "acedata"
PROVIDER_UNSETTLED: Final = "PROVIDER_UNSETTLED"
# What a provider job records (besides task_id = the provider's id): its reference, and while unsettled,
# when the create was sent and to which endpoint.
PROVIDER_TASK = "provider_task"
UNSETTLED_AT = "provider_unsettled_at"
ENDPOINT = "provider_endpoint"


@dataclass(frozen=True)
class Built:
    """A request as one door's create: the provider's endpoint (its name for the model), our model, and the
    arguments its table built."""

    endpoint: str
    model: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Door:
    """One provider's door (see the module's docstring)."""

    name: str
    label: str  # for a person: "fal", "Replicate", "AceData"
    secret: str  # the template's logical id of its credentials secret (a name, never a value)
    secret_hint: str  # the shape of what the secret holds
    client: Callable[[Any], Any]  # settings -> the provider's client (ProviderNotEnabledError)
    build: Callable[[JobRequest, str, Mapping[str, str] | None], Built]
    problems: Callable[[JobRequest, str], list[str]]  # what it cannot do, "field: why and the fix"
    charge_arguments: Callable[[Job], dict[str, Any]]
    adopt: Callable[[Job, ProviderTask, Any], TaskRef]  # (job, what its callback said, the callback's deps)
    dashboard: str
    finds_lost_creates: bool = False
    looks_up_many: bool = False
    window_setting: str = ""  # the settings' field: how long an unsettled create waits for its callback
    poll_within_setting: str = ""  # the settings' field: the longest wait between look-ups of a live job
    # https hosts its videos come from, allowed (beside AllowedDownloadHosts) for its jobs' downloads only.
    media_hosts: tuple[str, ...] = ()
    cancels_running: bool = True  # False: its cancel does not stop a running request (fal), so it is not asked
    # What a job's video will cost in USD by the door's price table (DailyBudgetUsd); None: not known.
    usd_estimate: Callable[[JobRequest, Any], float | None] | None = None
    # What the callback function holds of the door, when it is not `client` (Replicate: its webhook secret and
    # prices, no API token: adapters/replicate_signatures.py); settings -> it (ProviderNotEnabledError).
    webhooks: Callable[[Any], Any] | None = None

    def window_s(self, settings: Any) -> int:
        return int(getattr(settings, self.window_setting)) if self.window_setting else 3600

    def poll_within_s(self, settings: Any) -> int | None:
        return int(getattr(settings, self.poll_within_setting)) if self.poll_within_setting else None

    def callback_url(self, api_base_url: str, job_id: str, signing_secret: str) -> str:
        """The webhook URL handed to the provider: the Kling callback URL's scheme (our token in it), on the
        door's own path. The same for every create of the job (Replicate's listing finds it by it)."""
        from kling_pipeline.adapters.callback_tokens import job_token

        base = api_base_url.rstrip("/")
        token = job_token(signing_secret, job_id)
        return f"{base}/callbacks/{quote(job_id, safe='')}/{self.name}?token={token}"

    def not_enabled(self) -> ProviderNotEnabledError:
        return ProviderNotEnabledError(
            f"{self.label} is not enabled in this deployment: store its key in the {self.secret} secret "
            f"({self.secret_hint}, aws secretsmanager put-secret-value; README), or use provider kling"
        )


def provider_of(request: Mapping[str, Any], default: str = KLING) -> str:
    """The door a request goes through: its own `provider`, else the deployment's."""
    return str(request.get("provider") or default)


def door_of(job: Job) -> Door | None:
    """The job's door, None for Kling's own API."""
    return DOORS.get(provider_of(job.request))


def door(name: str) -> Door:
    found = DOORS.get(name)
    if found is None:
        raise ProviderNotEnabledError(f"no door named {name!r}: one of kling, {', '.join(DOORS)}")
    return found


def task_ref(job: Job) -> TaskRef | None:
    record = job.provider_task
    return TaskRef.from_record(record) if isinstance(record, Mapping) and record.get("id") else None


def enabled(settings: Any) -> frozenset[str]:
    """kling, and each door whose secret holds a key (read through the secrets' cache)."""
    names = {KLING}
    for name, found in DOORS.items():
        try:
            found.client(settings)
        except ProviderNotEnabledError:
            continue
        names.add(name)
    return frozenset(names)


def clients(settings: Any) -> Callable[[str], Any]:
    """`deps.door`: a provider's client by name, built on first use."""
    return lambda name: door(name).client(settings)


def callback_clients(settings: Any) -> Callable[[str], Any]:
    """`deps.door` in the callback function: what reads and verifies a door's callbacks, built on first use."""

    def built(name: str) -> Any:
        found = door(name)
        return (found.webhooks or found.client)(settings)

    return built


def no_clients(name: str) -> Any:
    raise ProviderNotEnabledError(f"{name} is not configured here")


def kling_on_first_use(settings: Any) -> Callable[[], KlingClient]:
    """`deps.kling_client`: Kling's own client, built on first use, as the doors' are. The KlingCredentials
    secret is read now all the same: a secret holding something malformed is one error at cold start
    (KlingKeysInvalidError), and so is an empty one in a deployment with no other door enabled
    (KlingKeysMissingError: nothing could be sent). With another door enabled (a team reaching Kling only
    through fal, Replicate or AceData) an empty Kling secret is allowed: only a Kling job meets it, on first use."""
    from kling_pipeline.adapters.kling_client import shared_client
    from kling_pipeline.adapters.secrets import kling_credentials

    def build() -> KlingClient:
        credentials = kling_credentials(settings.kling_credentials_secret, max_age_s=settings.secrets_max_age_s)
        return shared_client(settings.kling_base_url, credentials, timeout_s=settings.kling_timeout_s)

    try:
        build()
    except KlingKeysInvalidError:
        raise
    except KlingKeysMissingError:
        if enabled(settings) == {KLING}:
            raise
    return build


def kling_keys_refusal(exc: KlingKeysMissingError, settings: Any) -> str:
    """Why a Kling job is parked in a deployment without Kling keys, and the two fixes."""
    others = sorted(enabled(settings) - {KLING})
    doors = "/".join(others) or "fal/replicate/acedata"
    return (
        f"this job goes through Kling's own API (provider kling) and this deployment has no Kling keys: {exc}. "
        f"Fix: store the keys in the KlingCredentials secret (README, 'Deploy'), then `kling-pipeline dlq "
        f"--redrive`; or send the request again with a new job_id and provider {doors}"
    )


# -- fal.ai --------------------------------------------------------------------------------------


def _fal_client(settings: Any) -> Any:
    from kling_pipeline.fal_door import fal_client

    return fal_client(settings, settings.secrets_max_age_s)


def _fal_build(request: JobRequest, default_model: str, images: Mapping[str, str] | None) -> Built:
    from kling_pipeline.providers.fal import build_arguments

    endpoint, arguments = build_arguments(request, default_model=default_model, image_urls=images)
    return Built(endpoint.model_id, endpoint.model, arguments)


def _fal_problems(request: JobRequest, default_model: str) -> list[str]:
    from kling_pipeline.errors import ProviderCapabilityError
    from kling_pipeline.providers import fal

    try:
        endpoint = fal.endpoint_for(request.model or default_model, request.kind, request.mode)
    except ProviderCapabilityError as exc:
        return list(exc.problems)
    return fal.fal_problems(request, endpoint)


def _fal_charge_arguments(job: Job) -> dict[str, Any]:
    from kling_pipeline.fal_door import charge_arguments

    return charge_arguments(job)


def _fal_usd(request: JobRequest, settings: Any) -> float | None:
    from kling_pipeline.fal_door import usd_to_reserve

    return usd_to_reserve(request, settings)


def _fal_adopt(job: Job, said: ProviderTask, deps: Any) -> TaskRef:
    from kling_pipeline.fal_door import adopted_ref

    return adopted_ref(job, said.id, deps.fal_queue_base_url)


# -- Replicate -----------------------------------------------------------------------------------

_cached: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def _replicate_client(settings: Any) -> Any:
    """One ReplicateClient per container and API token (ReplicateCredentials): submit, poller and API. It
    verifies no webhook: the callback holds the webhook secret alone (_replicate_webhooks)."""
    from kling_pipeline.adapters.secrets import provider_secret_field

    secret, max_age = settings.replicate_credentials_secret, settings.secrets_max_age_s
    token = provider_secret_field(secret, "api_token", max_age_s=max_age)
    if not token:
        raise REPLICATE_DOOR.not_enabled()
    key = (REPLICATE, token, settings.replicate_base_url, settings.replicate_prices)
    with _lock:
        found = _cached.get(key)
        if found is None:
            from kling_pipeline.adapters.replicate_client import ReplicateClient
            from kling_pipeline.providers.replicate_prices import table

            found = ReplicateClient(
                token,
                base_url=settings.replicate_base_url,
                timeout_s=settings.replicate_timeout_s,
                cancel_after_s=settings.job_timeout_minutes * 60,
                prices=table(settings.replicate_prices),
                max_list_pages=settings.replicate_max_list_pages,
            )
            _cached[key] = found
        return found


def _replicate_webhooks(settings: Any) -> Any:
    """Replicate's door in the callback function: the account's webhook secret(s) from ReplicateWebhookSecret
    (read once from Replicate at set-up) and the prices, never the API token (adapters/replicate_signatures.py
    says why). No secret stored: its webhooks are refused (the poller, which holds the token, settles the jobs)."""
    from kling_pipeline.adapters.secrets import webhook_secrets

    secrets = webhook_secrets(
        settings.replicate_webhook_secret, max_age_s=settings.secrets_max_age_s, whose="Replicate"
    )
    if not secrets:
        raise ProviderNotEnabledError(
            "Replicate's webhook secret is not stored: put the whsec_ value of GET /v1/webhooks/default/secret "
            "in the ReplicateWebhookSecret secret (aws secretsmanager put-secret-value; README)"
        )
    key = (REPLICATE, "webhooks", secrets, settings.replicate_prices)
    with _lock:
        found = _cached.get(key)
        if found is None:
            from kling_pipeline.adapters.replicate_client import ReplicateWebhooks
            from kling_pipeline.adapters.replicate_signatures import ReplicateWebhookVerifier
            from kling_pipeline.providers.replicate_prices import table

            found = ReplicateWebhooks(ReplicateWebhookVerifier(secrets), table(settings.replicate_prices))
            _cached[key] = found
        return found


def _replicate_build(request: JobRequest, default_model: str, images: Mapping[str, str] | None) -> Built:
    from kling_pipeline.providers.replicate import build_input

    row, arguments = build_input(request, default_model=default_model, image_urls=images)
    return Built(row.endpoint, row.model, arguments)


def _replicate_problems(request: JobRequest, default_model: str) -> list[str]:
    from kling_pipeline.errors import ProviderCapabilityError
    from kling_pipeline.providers import replicate

    try:
        row = replicate.model_for(request.model or default_model, request.kind, request.mode)
    except ProviderCapabilityError as exc:
        return list(exc.problems)
    return replicate.replicate_problems(request, row)


def _replicate_charge_arguments(job: Job) -> dict[str, Any]:
    """What Replicate's price depends on: the seconds asked, and (kling-v2.1) its `mode` input."""
    from kling_pipeline.errors import ProviderCapabilityError
    from kling_pipeline.providers.replicate import model_for

    request = job.request
    arguments: dict[str, Any] = {"duration": request.get("duration", "5")}
    model = str(job.model_name or request.get("model") or "")
    try:
        row = model_for(model, str(request.get("kind") or "text2video"), str(request.get("mode") or "std"))
    except ProviderCapabilityError:
        return arguments
    if row.mode_input is not None:
        arguments["mode"] = row.mode_input
    return arguments


def _replicate_usd(request: JobRequest, settings: Any) -> float | None:
    """A Replicate job's video in USD by its price table (and ReplicatePrices), for the daily USD budget."""
    from kling_pipeline.errors import ProviderCapabilityError
    from kling_pipeline.providers.replicate import model_for
    from kling_pipeline.providers.replicate_prices import charge, table

    try:
        row = model_for(request.model or settings.default_model, request.kind, request.mode)
        seconds = float(request.duration)
    except (ProviderCapabilityError, TypeError, ValueError):
        return None
    arguments = {"mode": row.mode_input} if row.mode_input is not None else {}
    found = charge(table(settings.replicate_prices), row.endpoint, arguments, seconds)
    return None if found is None else found.amount


def _replicate_adopt(job: Job, said: ProviderTask, deps: Any) -> TaskRef:
    return TaskRef(provider=REPLICATE, id=said.id, endpoint=job.provider_endpoint or "")


# -- AceData -------------------------------------------------------------------------------------


def _acedata_client(settings: Any) -> Any:
    from kling_pipeline.adapters.secrets import provider_secret_field

    token = provider_secret_field(
        settings.acedata_credentials_secret, "api_token", max_age_s=settings.secrets_max_age_s
    )
    if not token:
        raise ACEDATA_DOOR.not_enabled()
    key = (ACEDATA, token, settings.acedata_base_url, settings.acedata_batch_size, settings.acedata_price_per_call)
    with _lock:
        found = _cached.get(key)
        if found is None:
            from kling_pipeline.adapters.acedata_client import AceDataClient

            found = AceDataClient(
                token,
                base_url=settings.acedata_base_url,
                timeout_s=settings.acedata_timeout_s,
                batch_size=settings.acedata_batch_size,
                usd_per_call=settings.acedata_price_per_call,
            )
            _cached[key] = found
        return found


def _acedata_build(request: JobRequest, default_model: str, images: Mapping[str, str] | None) -> Built:
    from kling_pipeline.providers.acedata import build_arguments

    name, arguments = build_arguments(request, default_model=default_model, image_urls=images)
    return Built(name, request.model or default_model, arguments)


def _acedata_problems(request: JobRequest, default_model: str) -> list[str]:
    from kling_pipeline.errors import ProviderCapabilityError
    from kling_pipeline.providers import acedata

    try:
        acedata.model_for(request.model or default_model, request.kind)
    except ProviderCapabilityError as exc:
        return list(exc.problems)
    return acedata.acedata_problems(request)


def _acedata_adopt(job: Job, said: ProviderTask, deps: Any) -> TaskRef:
    return TaskRef(
        provider=ACEDATA, id=said.id, endpoint=job.provider_endpoint or "", created_at=job.provider_unsettled_at
    )


# Replicate serves outputs from replicate.delivery (https://replicate.delivery/<bucket>/<id>/<file>, and
# older <bucket>.replicate.delivery): replicate.com's model pages and its client libraries' examples, 2026-12.
REPLICATE_MEDIA_HOSTS = ("replicate.delivery", "*.replicate.delivery")
# AceData hands back Kling's own CDN URL (cdn.klingai.com in seed 002's answers; providers.md "AceData"),
# already in AllowedDownloadHosts' default: named here so its jobs keep it whatever a deployment sets.
ACEDATA_MEDIA_HOSTS = ("*.klingai.com",)

FAL_DOOR = Door(
    name=FAL,
    label="fal",
    secret="FalCredentials",  # noqa: S106 - the secret's logical id
    secret_hint='{"api_key": "..."}',  # noqa: S106 - its shape
    client=_fal_client,
    build=_fal_build,
    problems=_fal_problems,
    charge_arguments=_fal_charge_arguments,
    adopt=_fal_adopt,
    dashboard="https://fal.ai/dashboard/requests",
    window_setting="fal_webhook_window_s",
    cancels_running=False,
    usd_estimate=_fal_usd,
)
REPLICATE_DOOR = Door(
    name=REPLICATE,
    label="Replicate",
    secret="ReplicateCredentials",  # noqa: S106 - the secret's logical id
    secret_hint='{"api_token": "r8_..."}',  # noqa: S106 - its shape
    client=_replicate_client,
    webhooks=_replicate_webhooks,
    build=_replicate_build,
    problems=_replicate_problems,
    charge_arguments=_replicate_charge_arguments,
    adopt=_replicate_adopt,
    dashboard="https://replicate.com/predictions",
    finds_lost_creates=True,
    poll_within_setting="replicate_poll_within_s",
    media_hosts=REPLICATE_MEDIA_HOSTS,
    usd_estimate=_replicate_usd,
)
ACEDATA_DOOR = Door(
    name=ACEDATA,
    label="AceData",
    secret="AceDataCredentials",  # noqa: S106 - the secret's logical id
    secret_hint='{"api_token": "..."}',  # noqa: S106 - its shape
    client=_acedata_client,
    build=_acedata_build,
    problems=_acedata_problems,
    charge_arguments=lambda job: {},
    adopt=_acedata_adopt,
    dashboard="https://platform.acedata.cloud",
    looks_up_many=True,
    window_setting="acedata_callback_window_s",
    media_hosts=ACEDATA_MEDIA_HOSTS,
)
DOORS: dict[str, Door] = {d.name: d for d in (FAL_DOOR, REPLICATE_DOOR, ACEDATA_DOOR)}


def _forget() -> None:
    with _lock:
        _cached.clear()


def _register() -> None:
    from kling_pipeline.adapters import on_reset

    on_reset(_forget)


_register()
