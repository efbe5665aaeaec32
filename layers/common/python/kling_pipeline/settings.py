"""One settings model per function, read from its environment once per cold start.

Every field is required and has no default: the template sets each variable (template.yaml is the
one place defaults live), and a test builds each function's environment from template.yaml and
validates it against the function's model, so a template change that drops a variable fails a test
instead of an invocation. A missing or malformed variable fails the cold start with its name.
Logic never reads os.environ; it receives its function's settings. Secrets are not here, only the
names of the Secrets Manager secrets that hold them (adapters.secrets reads them, cached).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError, field_validator

from kling_pipeline.errors import ConfigError
from kling_pipeline.poll_schedule import PollSchedule
from kling_pipeline.slots import PoolLimits

NonEmpty = Annotated[str, Field(min_length=1)]
Provider = Literal["kling", "fal", "replicate", "acedata"]


class _Part(BaseModel):
    """A piece of some function's settings. Its validator is built on first use (defer_build), so a
    function's cold start builds its own model only, not the five other functions' models."""

    model_config = ConfigDict(defer_build=True)


class FunctionSettings(_Part):
    """What every function needs: the jobs table and how long finished jobs are kept."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    jobs_table_name: NonEmpty
    finished_job_ttl_days: int = Field(ge=1)

    @classmethod
    def variable_names(cls) -> list[str]:
        """The environment variables this function reads (a field's name in upper case)."""
        return [name.upper() for name in cls.model_fields]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate the function's environment; the error names each variable and what is wrong."""
        environ = os.environ if environ is None else environ
        values = {name: environ[name.upper()] for name in cls.model_fields if name.upper() in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                variable = str(error["loc"][0]).upper() if error["loc"] else "?"
                if error["type"] == "missing":
                    problems.append(f"{variable} is not set")
                else:
                    problems.append(f"{variable}: {error['msg']}")
            raise ConfigError(
                f"{cls.__name__}: {'; '.join(problems)} (template.yaml sets these; check the function's "
                "Environment there)"
            ) from exc


class _KlingAccess(_Part):
    """Talking to Kling: where, with which keys (a secret's name), how patiently."""

    kling_base_url: NonEmpty
    kling_credentials_secret: NonEmpty
    kling_timeout_s: float = Field(gt=0, le=60)
    secrets_max_age_s: int = Field(ge=0)


class _CallbackSigning(_Part):
    callback_secret: NonEmpty


class _DownloadStart(_Part):
    """Functions that start the download workflow: which, and how many attempts a job may take."""

    download_state_machine_arn: NonEmpty
    download_attempts: int = Field(ge=1, le=10)  # workflow attempts before a DOWNLOADING job is FAILED


class _Scheduling(_Part):
    """Functions that put jobs in live states set when each is next due (poll_schedule.py)."""

    poll_schedule: Json[PollSchedule]


class _Counting(_Part):
    """What Kling charged and the daily budget's counter live in StatsTable (adapters.ledger)."""

    stats_table_name: NonEmpty


class _Announcing(_Part):
    """Functions that may end a job announce it on the pipeline's bus (adapters.announcements)."""

    event_bus_name: NonEmpty


class _ObservingTasks(_Scheduling, _Counting, _Announcing):
    """...and those that see Kling finish a task learn how long it took (adapters.generation_estimates),
    count what it charged, and announce the job it ends (Kling failed the task)."""


class _Reconciling(_Part):
    """Claiming a job, looking for its task at Kling and sending it back: the submit path and the poller."""

    jobs_queue_url: NonEmpty
    dead_letter_queue_url: NonEmpty
    submit_lease_s: int = Field(ge=0)
    backpressure_base_delay_s: float = Field(ge=0)
    backpressure_max_delay_s: int = Field(ge=0, le=900)
    reconcile_grace_s: int = Field(ge=0, le=900)


class _Slots(_Part):
    """Functions that give Kling slots back hand them on to the next waiting job (adapters.slot_pools):
    C per pool (KlingConcurrency, KlingPoolConcurrency), and the queue the waiting job is sent to."""

    jobs_queue_url: NonEmpty
    kling_concurrency: int = Field(ge=1, le=1000)
    kling_pool_concurrency: Json[dict[str, Annotated[int, Field(ge=1, le=1000)]]]

    @property
    def pool_limits(self) -> PoolLimits:
        return PoolLimits.of_table(self.kling_concurrency, self.kling_pool_concurrency)


class FalAccess(_Part):
    """Talking to fal.ai (providers/fal.py, adapters/fal_client.py, adapters/fal_signatures.py): where, with
    which key (a secret's name), how patiently, whose keys sign its webhooks, how long it keeps results,
    and this deployment's prices. Mixed into the functions that talk to fal (submit, callback, poller, API
    for cancel); template.yaml sets each variable (Globals). A fal job's door is open only once the
    FalCredentials secret holds {"api_key": ...}."""

    fal_queue_base_url: NonEmpty  # https://queue.fal.run
    fal_credentials_secret: NonEmpty
    fal_timeout_s: float = Field(gt=0, le=60)
    fal_jwks_url: NonEmpty  # https://rest.alpha.fal.ai/.well-known/jwks.json (docs/fal-contract.md, "Webhooks")
    fal_result_retention_s: int = Field(ge=3600, le=365 * 24 * 3600)
    # An unsettled create waits this long for fal's webhook (which names the job) before it ends
    # PROVIDER_UNSETTLED (providers/fal.py WEBHOOK_WINDOW_S; FalWebhookWindowSeconds).
    fal_webhook_window_s: int = Field(ge=1, le=7 * 24 * 3600)
    fal_prices: str  # JSON overrides of providers/fal_prices.py's table; "{}" for none

    @field_validator("fal_prices")
    @classmethod
    def _prices_readable(cls, value: str) -> str:
        from kling_pipeline.providers.fal_prices import parse_overrides  # only a fal deployment pays for it

        parse_overrides(value)  # PriceTableError is a ValueError: the message names the entry
        return value


class _ReplicatePrices(_Part):
    replicate_prices: str  # JSON overrides of providers/replicate_prices.py's table; "{}" for none

    @field_validator("replicate_prices")
    @classmethod
    def _prices_readable(cls, value: str) -> str:
        from kling_pipeline.providers.replicate_prices import table

        table(value)  # PriceTableError is a ValueError: the message names the entry
        return value


class ReplicateWebhooks(_ReplicatePrices):
    """Replicate's webhooks, as the callback function reads them (adapters/replicate_signatures.py): the name
    of the ReplicateWebhookSecret secret (the account's `whsec_` secret, read once from Replicate at set-up),
    and the prices a finished video is charged at. No API token: it stays out of the function the internet calls."""

    replicate_webhook_secret: NonEmpty


class ReplicateAccess(_ReplicatePrices):
    """Talking to Replicate (providers/replicate.py, adapters/replicate_client.py): where, with which token (a
    secret's name), how patiently, how many list pages a reconciliation may walk, how often a live job is
    looked up, the job timeout (its `Cancel-After`) and this deployment's prices. Mixed into the functions
    that call Replicate (submit, poller, API for cancel); its door is open once ReplicateCredentials holds
    {"api_token": ...}. The callback reads ReplicateWebhooks instead."""

    replicate_base_url: NonEmpty  # https://api.replicate.com
    replicate_credentials_secret: NonEmpty
    replicate_timeout_s: float = Field(gt=0, le=60)
    replicate_max_list_pages: int = Field(ge=1, le=1000)  # 100 predictions a page
    # A live Replicate job is looked up at least this often (its output is deleted an hour after the
    # prediction ends: a lost webhook is noticed well inside that hour); ReplicatePollWithinSeconds.
    replicate_poll_within_s: int = Field(ge=1, le=3000)
    job_timeout_minutes: float = Field(gt=0)  # Cancel-After: a prediction not started by then is aborted


class AceDataAccess(_Part):
    """Talking to AceData Cloud (providers/acedata.py, adapters/acedata_client.py): where, with which token (a
    secret's name), how patiently, how many ids per retrieve_batch (AceData documents no maximum), and what a
    call costs in USD if the deployment knows (AceData's per-call price is UNCONFIRMED: "" for none, and
    charges are then not counted), and how long an unsettled create waits for its callback. Mixed into the
    functions that talk to AceData; its door is open once AceDataCredentials holds {"api_token": ...}."""

    acedata_base_url: NonEmpty  # https://api.acedata.cloud
    acedata_credentials_secret: NonEmpty
    acedata_timeout_s: float = Field(gt=0, le=60)
    acedata_batch_size: int = Field(ge=1, le=500)
    acedata_price_per_call: float | None = Field(ge=0, lt=100)  # USD; "" (None): not counted
    # An unsettled create waits this long for AceData's callback (which names the job) before it ends
    # PROVIDER_UNSETTLED (AceDataCallbackWindowSeconds).
    acedata_callback_window_s: int = Field(ge=1, le=7 * 24 * 3600)

    @field_validator("acedata_price_per_call", mode="before")
    @classmethod
    def _no_price(cls, value: object) -> object:
        return None if value == "" else value


class SubmitSettings(
    FunctionSettings,
    _KlingAccess,
    _CallbackSigning,
    _DownloadStart,
    _ObservingTasks,
    _Reconciling,
    _Slots,
    FalAccess,
    ReplicateAccess,
    AceDataAccess,
):
    """SubmitFunction: the queue it re-sends to, Kling, the callback URL it hands Kling, backpressure."""

    public_api_base_url: NonEmpty
    default_model: NonEmpty
    default_provider: Provider  # a job naming no provider goes through this door
    known_models: tuple[str, ...]
    daily_budget_units: float = Field(ge=0)  # 0: no budget; else the units a UTC day's jobs may reserve
    daily_budget_usd: float = Field(ge=0)  # the same in USD, for the doors that bill USD (fal); 0: no budget
    # Input images: s3:// only from this bucket (empty: none), handed to Kling presigned for this long;
    # https URLs only from these hosts, under the download's address rules (relaxed in local mode).
    input_bucket: str
    input_url_lifetime_s: int = Field(ge=60, le=3600)
    image_url_hosts: NonEmpty
    image_timeout_s: float = Field(gt=0, le=20)  # for the whole probe of one image URL (a drip is no answer)
    pipeline_mode: Literal["production", "local"]

    @field_validator("known_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return value


class CallbackSettings(
    FunctionSettings,
    _KlingAccess,
    _CallbackSigning,
    _DownloadStart,
    _ObservingTasks,
    _Slots,
    FalAccess,
    ReplicateWebhooks,
    AceDataAccess,
):
    """CallbackFunction: checks the URL token, confirms with Kling, starts the download workflow."""

    callback_secret_grace_s: int = Field(ge=0)
    kling_webhook_secret: NonEmpty  # the secret's name: Kling's whsec_ secret(s) that sign callbacks, or none


class PollerSettings(
    FunctionSettings,
    _KlingAccess,
    _DownloadStart,
    _ObservingTasks,
    _Reconciling,
    _Slots,
    FalAccess,
    ReplicateAccess,
    AceDataAccess,
):
    """PollerFunction: settles every job that has gone quiet (poller.py), and keeps Kling's slots busy."""

    pool_quiet_s: int = Field(ge=1)  # a limit lowered by a 1303 climbs one slot after this long without one

    video_bucket: NonEmpty
    job_timeout_minutes: float = Field(gt=0)  # from submission to Kling: past it, TIMED_OUT
    poll_parallelism: int = Field(ge=1, le=64)  # Kling GETs at once
    # How long one run keeps looking (every poll interval) while live jobs are due; 0: one pass.
    poller_run_s: int = Field(ge=0, le=840)
    kling_batch_size: int = Field(ge=1, le=500)  # ids a GET /tasks carries (halved on Kling's refusal)
    kling_list_pages: int = Field(ge=0, le=20)  # task-list pages read for several legacy jobs of a kind
    account_check_s: int = Field(ge=1)  # how often the account's resource packs are read (RemainingUnits)

    @property
    def job_timeout_s(self) -> int:
        return int(self.job_timeout_minutes * 60)


class DownloadSettings(FunctionSettings):
    """DownloadFunction: where videos may come from, how large they may be, where they go."""

    video_bucket: NonEmpty
    allowed_download_hosts: NonEmpty
    max_video_bytes: int = Field(ge=1024)
    pipeline_mode: Literal["production", "local"]


class _WebhookTargets(_Part):
    """Where job webhooks may point: an optional allow-list (empty = any public https host)."""

    webhook_allowed_hosts: str
    pipeline_mode: Literal["production", "local"]


class ApiSettings(
    FunctionSettings, _WebhookTargets, _Scheduling, _Counting, _Announcing, FalAccess, ReplicateAccess, AceDataAccess
):
    """ApiFunction: the jobs API sends to JobsQueue, reads JobsTable, presigns videos, announces cancels
    (and gives a cancelled job's budget reservation back)."""

    jobs_queue_url: NonEmpty
    video_bucket: NonEmpty
    download_url_ttl_s: int = Field(ge=1, le=43200)
    default_model: NonEmpty  # a job naming no model is checked as the submit path will check it
    default_provider: Provider  # a job naming no provider is checked against this door
    secrets_max_age_s: int = Field(ge=0)


class WebhookSettings(FunctionSettings, _WebhookTargets):
    """WebhookFunction: signs and posts ended jobs' events; retries through its queue with backoff."""

    webhook_queue_url: NonEmpty
    webhook_secret: NonEmpty
    secrets_max_age_s: int = Field(ge=0)
    webhook_timeout_s: float = Field(gt=0, le=30)
    webhook_max_attempts: int = Field(ge=1, le=1000)
    webhook_retry_base_s: int = Field(ge=1, le=43200)
    webhook_retry_max_s: int = Field(ge=1, le=42600)  # SQS's 12 hours from the receive (adapters.webhook_queue)
