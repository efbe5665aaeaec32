"""Every knob of the Kling simulator, in one validated, immutable model.

Time semantics (so a test can reason about them):
- *simulated* durations are divided by `speed`: generation time, the `submitted` phase and the
  result-URL lifetime. `speed=200` turns a 120 s generation into 0.6 s.
- *real* durations are wall-clock seconds whatever the speed, because they model the network and
  the client's timeouts: `slow_s`, `callback_max_delay_s`, `callback_timeout_s`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Models seen in Kling's API reference; they appear often, so this is configuration.
DEFAULT_MODELS: tuple[str, ...] = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
    "kling-v3-omni",
    "kling-video-o1",
)

# The newer design's create paths (the model is in the path). The contract lists the first, third, fourth and
# fifth and ends with "...": text-to-video for kling-3.0 is served too, as Kling 3.0's model page covers both.
DEFAULT_NEW_DESIGN_ROUTES: tuple[str, ...] = (
    "text-to-video/kling-2.6",
    "text-to-video/kling-3.0",
    "image-to-video/kling-3.0",
    "image-to-video/kling-3.0-turbo",
    "omni-video/kling-3.0-omni",
)

DEFAULT_FAIL_MESSAGES: tuple[str, ...] = (
    "Failure to pass the risk control system",
    "Video generation failed, internal error, please try again later",
    "The generation timed out, please try again",
)

Probability = float  # documented as 0..1, enforced by Field(ge=0, le=1)


class SimConfigError(ValueError):
    """A knob update was refused; the message names the knob (never a secret value)."""


class SimConfig(BaseModel):
    """The simulator's knobs. Frozen: change them with `KlingSimulator.configure(**knobs)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # -- accounts ------------------------------------------------------------------------------
    access_key: str = Field(default="sim-access-key", min_length=1)
    secret_key: str = Field(default="sim-secret-key", min_length=1, repr=False)
    extra_accounts: dict[str, str] = Field(
        default_factory=dict, repr=False, description="more accounts: access key -> secret key"
    )
    api_key: str | None = Field(
        default="sim-api-key",
        min_length=1,
        repr=False,
        description="the first account's API key (`Authorization: Bearer <API_KEY>`, both designs; None = none)",
    )
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        description="the account's webhook secret (whsec_<base64>): every callback is signed (Standard Webhooks); "
        "None = unsigned callbacks, as from an account that never set one",
    )
    webhook_secret_previous: str | None = Field(
        default=None,
        repr=False,
        description="a rotation window: the previous secret, whose signature is sent beside the current one "
        "(space-separated), as Kling does for 7 days after a rotation",
    )
    unsigned_callback_rate: Probability = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of callback events sent without signature headers though a webhook secret is set "
        "(a console without a secret, a misconfigured account)",
    )

    # -- the newer API design ------------------------------------------------------------------
    new_design_routes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NEW_DESIGN_ROUTES),
        min_length=1,
        description="the newer design's create paths (<product>/<model>); models appear often, so configuration",
    )
    tasks_max_ids: int = Field(
        default=50,
        ge=1,
        description="ids a GET /tasks?task_ids=|external_task_ids= may carry; more is refused with 1201 (Kling "
        "documents no maximum)",
    )
    tasks_include_legacy: bool = Field(
        default=False,
        description="whether tasks created through /v1/videos/* appear in /tasks (not documented: off, the worst case)",
    )
    billing_currency: str | None = Field(
        default=None,
        min_length=1,
        description="None: newer-design tasks are billed in units (billing[].charge_type unit); a currency "
        "(e.g. USD): billed in cash, cash_per_unit a unit",
    )
    cash_per_unit: float = Field(default=0.14, ge=0, description="cash a unit costs when billing_currency is set")

    # -- timing ----------------------------------------------------------------------------------
    speed: float = Field(default=1.0, gt=0, description="simulated seconds per real second")
    generation_min_s: float = Field(default=30.0, ge=0, description="simulated generation time, min")
    generation_max_s: float = Field(default=120.0, ge=0, description="simulated generation time, max")
    submitted_fraction: float = Field(
        default=0.1, ge=0, le=1, description="share of the generation time a task stays 'submitted'"
    )

    # -- limits ----------------------------------------------------------------------------------
    concurrency_limit: int = Field(
        default=5,
        ge=0,
        description="tasks in flight per account and model version, as Kling counts them (0 = no limit)",
    )
    rate_limit_per_s: float = Field(
        default=0.0, ge=0, description="API requests per second per account, else 1302 (0 = no limit)"
    )
    unit_budget: float | None = Field(
        default=None,
        ge=0,
        description="units an account may spend; past it creates get 1102 (None = no limit)",
    )

    # -- task outcomes ---------------------------------------------------------------------------
    fail_rate: Probability = Field(default=0.0, ge=0, le=1, description="share of tasks that end 'failed'")
    fail_messages: list[str] = Field(default_factory=lambda: list(DEFAULT_FAIL_MESSAGES), min_length=1)
    reject_marker: str = Field(default="[[reject]]", description="a prompt containing it gets 1301 ('' = off)")
    fail_marker: str = Field(
        default="[[fail]]",
        description="a prompt containing it is accepted and billed, then ends 'failed' ('' = off): one chosen "
        "step of a chain fails",
    )
    known_models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS), min_length=1)
    check_image_content: bool = Field(
        default=True, description="decode base64 images: jpg/png, >= 300 px, aspect 1:2.5..2.5:1, <= 10 MB"
    )
    fetch_image_urls: bool = Field(
        default=False,
        description="fetch image URLs at the create, as Kling does, and hold them to the same rules (1201 if "
        "they cannot be fetched); off by default so a bare simulator reaches no host it was not pointed at "
        "(the local stack turns it on)",
    )

    # -- API faults ------------------------------------------------------------------------------
    error_5xx_rate: Probability = Field(default=0.0, ge=0, le=1, description="requests answered 5000/5001/5002")
    slow_rate: Probability = Field(default=0.0, ge=0, le=1, description="responses delayed by slow_s")
    slow_s: float = Field(default=5.0, ge=0, description="real seconds a slow response is held back")
    query_faults: bool = Field(default=True, description="whether 5xx and slow faults also hit GETs")
    create_response_drop_rate: Probability = Field(
        default=0.0, ge=0, le=1, description="creates accepted, then the connection closed without an answer"
    )
    create_lost_answer_rate: Probability = Field(
        default=0.0,
        ge=0,
        le=1,
        description="creates accepted (and billed), then answered 5000 (HTTP 500) or a bare HTTP 502",
    )
    refuse_reused_external_id: bool = Field(
        default=False,
        description="refuse a create whose external_task_id exists (1201); off = a second, billed task, "
        "as Kling's contract allows",
    )
    reused_external_id_message: str | None = Field(
        default=None,
        min_length=1,
        description="the words of the 1201 refusing a reused external_task_id (None: one naming the id); "
        "Kling's wording is not documented and may change or be translated",
    )
    query_lag_s: float = Field(
        default=0.0, ge=0, description="real seconds a new task stays invisible to every query (get, look-up, list)"
    )
    shape_drift_rate: Probability = Field(
        default=0.0,
        ge=0,
        le=1,
        description="task objects answered in a shape clients may not know: an unknown status or a missing field",
    )
    shape_drift_mode: Literal["any", "unknown_status", "missing_status", "missing_task_id"] = Field(
        default="any", description="which drift a drifted answer shows ('any' picks one at random)"
    )
    external_id_lookup: Literal["exact", "ignored", "missing"] = Field(
        default="exact",
        description="GET {kind}?external_task_id=: the task (exact), the filter ignored and the list "
        "answered (ignored), or a bare HTTP 404 as from a route Kling does not serve (missing)",
    )
    force_create_errors: list[int] = Field(
        default_factory=list, description="the next creates answer these codes, one each, in order"
    )
    force_lookup_errors: list[int] = Field(
        default_factory=list,
        description="the next look-ups by external_task_id answer these codes, one each, in order",
    )
    error_burst_every_s: float = Field(
        default=0.0,
        ge=0,
        description="simulated seconds between the starts of 5xxx bursts (0 = none); in a burst every API "
        "request is answered 5000/5001/5002",
    )
    error_burst_s: float = Field(default=0.0, ge=0, description="simulated seconds each 5xxx burst lasts")
    outage_s: float = Field(
        default=0.0,
        ge=0,
        description="a Kling outage of this many simulated seconds, from the moment the knob is set: every API "
        "request is answered 5001 (HTTP 503) and callbacks due in it are lost; then Kling recovers",
    )

    # -- callbacks -------------------------------------------------------------------------------
    callback_loss_rate: Probability = Field(default=0.0, ge=0, le=1)
    callback_dup_rate: Probability = Field(default=0.0, ge=0, le=1)
    callback_reorder_rate: Probability = Field(
        default=0.0, ge=0, le=1, description="non-final callbacks held back until after the next one"
    )
    callback_max_delay_s: float = Field(default=0.0, ge=0, description="real seconds of random extra delay")
    callback_min_delay_s: float = Field(
        default=0.0, ge=0, description="real seconds every callback waits at least (delivered past a poll)"
    )
    callback_timeout_s: float = Field(default=5.0, gt=0)
    callback_workers: int = Field(
        default=4, ge=1, le=64, description="delivery threads, read when the simulator is created"
    )

    # -- results and CDN -------------------------------------------------------------------------
    video_size_bytes: int | None = Field(
        default=None,
        ge=64,
        description="None: a real, playable MP4 clip showing prompt, model and task id, with the requested "
        "duration and aspect ratio; a number: a synthetic body of exactly that many bytes (ftyp + filler), "
        "for the streaming benchmarks",
    )
    url_lifetime_s: float = Field(default=30 * 86400.0, gt=0, description="simulated seconds a result URL works")
    cdn_host: str | None = Field(default=None, description="host put in result URLs (default: bind host)")
    result_url_base: str | None = Field(
        default=None,
        description="scheme://host[:port] put in result URLs instead of the CDN's (hostile-URL tests: a foreign "
        "host, a metadata address, loopback); the path and query stay the CDN's",
    )
    cdn_not_ready_s: float = Field(
        default=0.0,
        ge=0,
        description="real seconds after a task succeeds during which the CDN refuses its result with "
        "cdn_not_ready_status (an edge still propagating, a WAF), though the URL is good",
    )
    cdn_not_ready_status: int = Field(
        default=404, ge=400, le=499, description="what the CDN answers a result URL in its first cdn_not_ready_s"
    )
    cdn_drop_rate: Probability = Field(default=0.0, ge=0, le=1, description="downloads cut mid-body")
    cdn_drop_after_bytes: int = Field(default=65536, ge=0)
    cdn_cut_first: int = Field(
        default=0,
        ge=0,
        description="the first this many GETs of each result video are cut after cdn_drop_after_bytes (0 = none): "
        "a download that fails that often (a whole download workflow's tries), then works",
    )
    cdn_redirect_url: str | None = Field(default=None, description="answer 302 to this URL instead")
    cdn_body: Literal["mp4", "html"] = "mp4"
    cdn_content_type: str | None = Field(
        default=None, description="override Content-Type (default: video/mp4, or text/html for html bodies)"
    )

    # -- units (final_unit_deduction) ----------------------------------------------------------
    units_std_5s: float = Field(default=1.0, ge=0, description="std 5 s; 10 s doubles it, pro doubles again")
    omit_unit_deduction: bool = Field(default=False, description="tasks answered without final_unit_deduction")
    succeed_without_videos: bool = Field(default=False, description="'succeed' tasks answered with no video")

    # -- plumbing --------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    seed: int | None = None

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> SimConfig:
        if self.generation_max_s < self.generation_min_s:
            raise ValueError("generation_max_s must be >= generation_min_s")
        if self.callback_max_delay_s and self.callback_max_delay_s < self.callback_min_delay_s:
            raise ValueError("callback_max_delay_s must be 0 or >= callback_min_delay_s")
        for name in ("webhook_secret", "webhook_secret_previous"):
            if getattr(self, name) is not None and not _is_webhook_secret(getattr(self, name)):
                raise ValueError(f"{name} must be whsec_ followed by base64 (at least 16 bytes)")
        for route in self.new_design_routes:
            if route.count("/") != 1 or not all(route.split("/")):
                raise ValueError("new_design_routes holds <product>/<model> paths, e.g. text-to-video/kling-2.6")
        for field in ("force_create_errors", "force_lookup_errors"):
            if 0 in getattr(self, field):
                raise ValueError(f"{field} holds Kling error codes; 0 is success")
        return self

    def api_keys(self) -> dict[str, str]:
        """API key -> the account (access key) it belongs to; every key shares its account's limits."""
        return {self.api_key: self.access_key} if self.api_key else {}

    def webhook_secrets(self) -> tuple[str, ...]:
        """The secrets callbacks are signed with: the current one, then the previous during a rotation."""
        if self.webhook_secret is None:
            return ()
        return tuple(s for s in (self.webhook_secret, self.webhook_secret_previous) if s)

    def accounts(self) -> dict[str, str]:
        """Access key -> secret key for every account the simulator accepts."""
        return {**self.extra_accounts, self.access_key: self.secret_key}

    def public_dict(self) -> dict[str, Any]:
        """The knobs as JSON-ready data, without any secret."""
        data = self.model_dump(
            mode="json", exclude={"secret_key", "api_key", "webhook_secret", "webhook_secret_previous"}
        )
        data["api_key_set"] = self.api_key is not None
        data["webhook_secrets"] = sum(1 for s in (self.webhook_secret, self.webhook_secret_previous) if s)
        data["extra_accounts"] = sorted(self.extra_accounts)
        return data

    def updated(self, knobs: dict[str, Any]) -> SimConfig:
        """A new config with `knobs` applied, validated as a whole."""
        unknown = sorted(set(knobs) - set(type(self).model_fields))
        if unknown:
            raise SimConfigError(f"unknown knob(s): {', '.join(unknown)}")
        try:
            return type(self).model_validate({**self.model_dump(), **knobs})
        except ValidationError as exc:
            raise SimConfigError(_describe(exc)) from None


# Everything Kling's contract does not promise, at once (`kling-pipeline demo --worst-case`). Reused
# external ids already make a second task by default; these turn on every other fault.
WORST_CASE: dict[str, Any] = {
    "query_lag_s": 2.0,
    "create_lost_answer_rate": 0.1,
    "create_response_drop_rate": 0.05,
    "shape_drift_rate": 0.03,
    "error_5xx_rate": 0.05,
    "callback_loss_rate": 0.3,
    "callback_dup_rate": 0.2,
    "callback_reorder_rate": 0.2,
    "cdn_drop_rate": 0.1,
}


def _is_webhook_secret(value: str) -> bool:
    if not value.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(value[len("whsec_") :], validate=True)) >= 16
    except (binascii.Error, ValueError):
        return False


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors without echoing input values (a secret may be among them)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
