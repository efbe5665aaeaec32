"""Replicate's HTTP API: the one module that talks to Replicate (create, look up, list, cancel, the webhook
secret), and Replicate's door as a `providers.Provider`.

Our own httpx calls (not the `replicate` package), for the reasons adapters/fal_client.py gives: a total
deadline per exchange, error text with the webhook URL's token hidden, and no retry we did not decide on.

Rules this module keeps (docs/replicate-contract.md):
- **Create** `POST /v1/models/kwaivgi/<name>/predictions` with `{"input", "webhook": <the job's webhook
  URL>, "webhook_events_filter": ["completed"]}` and `Cancel-After: <the job's timeout>s`, so a
  prediction that has not started by then is aborted (and not charged) instead of running late. No
  `Prefer: wait`. Answers that prove nothing was made (no connection, 400/404/422, 401/402/403, 429)
  raise ProviderRefusedError / ProviderAccountError / ProviderUnavailableError; any other (a timeout or
  cut connection after sending, a 5xx, an answer we cannot read) raises ProviderCreateUnsettledError.
- **Exactly once by listing.** Replicate has no idempotency key, but every prediction carries the webhook
  URL it was made with, and our webhook URL names the job. After an unsettled create the caller calls
  `find_by_webhook(webhook_url, created_since)` BEFORE any new create: it walks `GET /v1/predictions`
  (newest first, 100 a page, the `next` cursor) until it finds the prediction carrying that URL (the
  job's reference: store it, no new create) or passes `created_since` (then, and only then, None: no
  prediction was made, a new create is safe). A walk that cannot finish (a 429, a page cap) raises
  ProviderUnavailableError: ask again, never "not found".
- **Look up** `GET /v1/predictions/{id}`; **cancel** `POST /v1/predictions/{id}/cancel`; a 429 anywhere
  is backpressure (ProviderUnavailableError with http_status 429).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from kling_pipeline.adapters.deadlines import within
from kling_pipeline.adapters.pinned_http import deadline_transport
from kling_pipeline.adapters.provider_http import ACCOUNT, REFUSED, THROTTLED, json_or_text, origin
from kling_pipeline.errors import (
    ProviderAccountError,
    ProviderCreateUnsettledError,
    ProviderRefusedError,
    ProviderSignatureError,
    ProviderUnavailableError,
)
from kling_pipeline.providers import CallbackEvent, CancelOutcome, Charge, ProviderTask, TaskRef
from kling_pipeline.providers.fal_prices import PriceTable
from kling_pipeline.providers.replicate import (
    API_BASE_URL,
    DASHBOARD_URL,
    PROVIDER,
    WEBHOOK_EVENTS,
    epoch,
    read_webhook_body,
    task_of,
)
from kling_pipeline.providers.replicate_prices import charge as price_charge
from kling_pipeline.providers.replicate_prices import table
from kling_pipeline.redaction import redact

# How far before the create's own clock the listing looks (our clock and Replicate's may differ).
LIST_SKEW_S = 300.0
MAX_LIST_PAGES = 50  # 5,000 predictions: a walk longer than this is asked again, never "not found"
DEFAULT_CANCEL_AFTER_S = 3600

Verify = Callable[[bytes, Mapping[str, str], float | None], str]


class ReplicateWebhooks:
    """Replicate's door as the callback function holds it: the account's webhook secret(s) and the price
    table, and no API token (ReplicateWebhookSecret, adapters/replicate_signatures.py says why). A look-up
    is not its to make: left for the poller, which holds the token."""

    name = PROVIDER

    def __init__(self, verify: Verify | None, prices: PriceTable | None = None) -> None:
        self._verify = verify
        self._prices = prices or table()

    def look_up(self, ref: TaskRef) -> ProviderTask:
        raise ProviderUnavailableError(PROVIDER, "the callback holds no Replicate API token: left for the poller")

    # -- callbacks and money --------------------------------------------------------------------

    def read_callback(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> CallbackEvent:
        """Replicate's webhook verified (adapters/replicate_signatures.py) and read; the caller de-duplicates
        on `dedup_key` (the `webhook-id`, the same over Replicate's retries)."""
        if self._verify is None:
            raise ProviderSignatureError(
                PROVIDER, "no Replicate webhook verifier is configured: refusing unsigned trust"
            )
        webhook_id = self._verify(body, headers, now)
        try:
            prediction = read_webhook_body(body)
        except ValueError as exc:
            raise ProviderSignatureError(PROVIDER, f"a signed body that is not a prediction ({exc})") from None
        return CallbackEvent(PROVIDER, webhook_id, task_of(prediction), signed=True)

    def charge(self, ref: TaskRef, arguments: Mapping[str, Any], task: ProviderTask) -> Charge | None:
        """A finished video's seconds x its model's price, in USD (an expired output was still made: charged).
        None for a prediction that made no video."""
        if task.status != "succeeded" and task.error_code is None:
            return None
        try:
            seconds = float(task.duration_s or arguments.get("duration") or 0)
        except (TypeError, ValueError):
            return None
        return price_charge(self._prices, ref.endpoint, arguments, seconds)


class ReplicateClient(ReplicateWebhooks):
    """Replicate's door: one instance per container (its connection pool reused while warm)."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = API_BASE_URL,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        cancel_after_s: float = DEFAULT_CANCEL_AFTER_S,
        prices: PriceTable | None = None,
        verify: Verify | None = None,
        max_list_pages: int = MAX_LIST_PAGES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ValueError("Replicate needs its API token (in the Replicate credentials secret)")
        self._base = base_url.rstrip("/")
        self._origin = origin(self._base)
        self.timeout_s = timeout_s
        self.cancel_after_s = cancel_after_s
        self.max_list_pages = max_list_pages
        super().__init__(verify, prices)
        self._clock = clock
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "kling-pipeline/0.1"},
            transport=transport or deadline_transport(),
            follow_redirects=False,
        )

    # -- create ---------------------------------------------------------------------------------

    def create(
        self,
        endpoint: str,
        arguments: Mapping[str, Any],
        *,
        webhook_url: str,
        cancel_after_s: float | None = None,
    ) -> TaskRef:
        """One prediction on `endpoint` (`kwaivgi/<name>`) with `arguments` as its input, the job's
        `webhook_url` and `Cancel-After` = `cancel_after_s` (the job's timeout; the client's default
        otherwise). Its reference, to be stored before anything else; on ProviderCreateUnsettledError the
        caller runs `find_by_webhook` before any new create."""
        if not webhook_url:
            raise ValueError("a Replicate create needs the job's webhook URL: it is how a lost answer is found")
        deadline = max(5, math.ceil(self.cancel_after_s if cancel_after_s is None else cancel_after_s))
        at = self._clock()
        where = f"POST {endpoint}"
        body = {"input": dict(arguments), "webhook": webhook_url, "webhook_events_filter": list(WEBHOOK_EVENTS)}
        try:
            with within(self.timeout_s):
                response = self._http.post(
                    f"{self._base}/v1/models/{endpoint.strip('/')}/predictions",
                    json=body,
                    headers={"Cancel-After": f"{deadline}s"},
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailableError(PROVIDER, f"{where}: {type(exc).__name__}", request_sent=False) from exc
        except httpx.HTTPError as exc:
            raise self._unsettled(f"no answer to the create ({type(exc).__name__})", at, endpoint) from exc
        status = response.status_code
        if status in REFUSED:
            detail = json_or_text(response)
            raise ProviderRefusedError(
                PROVIDER, f"{where} refused ({status}): {_detail(detail)}", http_status=status, detail=detail
            )
        if status in ACCOUNT:
            raise ProviderAccountError(
                PROVIDER,
                f"{where}: {status}, Replicate refused our token or account (check the Replicate credentials "
                "secret, and the account's billing)",
                http_status=status,
            )
        if status == THROTTLED:
            raise ProviderUnavailableError(PROVIDER, f"{where}: 429, too many requests", http_status=status)
        if not 200 <= status < 300:
            raise self._unsettled(f"the create was answered {status}, which proves nothing", at, endpoint)
        try:
            return self._ref(response.json(), endpoint, at)
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unsettled(f"an answer to the create we cannot use ({exc})", at, endpoint) from exc

    def _ref(self, answer: Any, endpoint: str, at: float | None) -> TaskRef:
        if not isinstance(answer, Mapping) or not isinstance(answer.get("id"), str) or not answer["id"]:
            raise ValueError("no prediction id")
        urls = answer.get("urls") if isinstance(answer.get("urls"), Mapping) else {}
        web = urls.get("web") if isinstance(urls, Mapping) else None
        return TaskRef(
            provider=PROVIDER,
            id=answer["id"],
            endpoint=endpoint,
            urls={"web": web} if isinstance(web, str) else {},
            created_at=at,
        )

    def _unsettled(self, what: str, at: float, endpoint: str) -> ProviderCreateUnsettledError:
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return ProviderCreateUnsettledError(
            PROVIDER,
            f"{what}: Replicate may have made the prediction, so it is not sent again before the prediction "
            f"list is searched for the job's webhook URL (find_by_webhook, from {when}); or look for a "
            f"prediction of {endpoint} at {when} in {DASHBOARD_URL}",
            at=at,
            endpoint=endpoint,
            dashboard=DASHBOARD_URL,
        )

    # -- look-ups -------------------------------------------------------------------------------

    def prediction(self, prediction_id: str) -> dict[str, Any]:
        """`GET /v1/predictions/{id}` as Replicate answered it."""
        return self._get_json(f"{self._base}/v1/predictions/{prediction_id}", f"prediction {prediction_id}")

    def look_up(self, ref: TaskRef) -> ProviderTask:
        """The prediction now, in our words (a succeeded one whose output was deleted: failed, OUTPUT_EXPIRED)."""
        return task_of(self.prediction(ref.id))

    def find_by_webhook(self, webhook_url: str, created_since: float) -> TaskRef | None:
        """The prediction made with `webhook_url` (exactly as sent), walking the list newest first until it is
        found or a prediction older than `created_since` (epoch seconds, less LIST_SKEW_S) is passed. None
        only then, or at the list's end: no such prediction exists. ProviderUnavailableError (ask again)
        when the walk cannot finish: a 429, an unreadable page, more than `max_list_pages` pages."""
        since = created_since - LIST_SKEW_S
        url: str | None = f"{self._base}/v1/predictions"
        for _ in range(self.max_list_pages):
            assert url is not None
            page = self._get_json(url, "the prediction list")
            results = page.get("results")
            if not isinstance(results, list):
                raise ProviderUnavailableError(PROVIDER, "the prediction list: a page without results (ask again)")
            for prediction in results:
                if not isinstance(prediction, Mapping):
                    continue
                if prediction.get("webhook") == webhook_url:
                    made = epoch(prediction.get("created_at"))
                    return self._ref(prediction, _endpoint_of(prediction), made)
                created = epoch(prediction.get("created_at"))
                if created is not None and created < since:
                    return None
            following = page.get("next")
            if not following:
                return None
            if not isinstance(following, str) or origin(following) != self._origin:
                # Our token goes to the cursor's URL: only to Replicate's API itself.
                raise ProviderUnavailableError(PROVIDER, f"the prediction list: a next page not on {self._origin}")
            url = following
        raise ProviderUnavailableError(
            PROVIDER, f"the prediction list: not settled within {self.max_list_pages} pages (ask again)"
        )

    def webhook_signing_secret(self) -> str:
        """The account's webhook secret (`GET /v1/webhooks/default/secret` -> `{"key": "whsec_..."}`), read
        once at set-up and stored in the ReplicateWebhookSecret secret (adapters/replicate_signatures.py)."""
        answer = self._get_json(f"{self._base}/v1/webhooks/default/secret", "the webhook secret")
        key = answer.get("key")
        if not isinstance(key, str) or not key.startswith("whsec_"):
            raise ProviderUnavailableError(PROVIDER, "the webhook secret: an answer without a whsec_ key")
        return key

    # -- cancel ---------------------------------------------------------------------------------

    def cancel(self, ref: TaskRef) -> CancelOutcome:
        """`POST /v1/predictions/{id}/cancel`; what Replicate answered and what it will bill."""
        response = self._send("POST", f"{self._base}/v1/predictions/{ref.id}/cancel", "cancel")
        if response.status_code == 404:
            return CancelOutcome(
                "not_found", "Replicate does not know the prediction: nothing to cancel, nothing billed"
            )
        if response.status_code != 200:
            raise ProviderUnavailableError(
                PROVIDER, f"cancel of {ref.id}: {response.status_code} (ask again)", http_status=response.status_code
            )
        answer = json_or_text(response)
        status = answer.get("status") if isinstance(answer, Mapping) else None
        if status in ("succeeded", "failed", "aborted"):
            return CancelOutcome("already_completed", f"Replicate had already ended the prediction ({status})")
        return CancelOutcome(
            "cancel_requested",
            "Replicate stops the prediction: one that had not started is not charged; one already running may "
            "be billed for its time so far (UNCONFIRMED: Replicate's dashboard says)",
        )

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        response = self._send("GET", url, what)
        if response.status_code != 200:
            raise ProviderUnavailableError(
                PROVIDER, f"{what}: {response.status_code} (ask again)", http_status=response.status_code
            )
        answer = json_or_text(response)
        if not isinstance(answer, dict):
            raise ProviderUnavailableError(PROVIDER, f"{what}: an answer that is not a JSON object")
        return answer

    def _send(self, method: str, url: str, what: str) -> httpx.Response:
        try:
            with within(self.timeout_s):
                return self._http.request(method, url)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailableError(PROVIDER, f"{what}: {type(exc).__name__}", request_sent=False) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(PROVIDER, redact(f"{what}: {type(exc).__name__}: {exc}", url)) from exc


def _endpoint_of(prediction: Mapping[str, Any]) -> str:
    model = prediction.get("model")
    return model if isinstance(model, str) else ""


def _detail(answer: Any, limit: int = 500) -> str:
    if isinstance(answer, Mapping):
        text = answer.get("detail") or answer.get("title") or answer
        return str(text)[:limit]
    return str(answer)[:limit]
