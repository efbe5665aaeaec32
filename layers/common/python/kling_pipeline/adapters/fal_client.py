"""fal.ai's queue API: the one module that talks to fal (create, status, result, cancel), and fal's door
as a `providers.Provider`.

Our own httpx calls rather than the `fal-client` package: every call here needs what the Kling client
has (adapters/kling_client.py): a total deadline per exchange (adapters/deadlines.py, through the
deadline transport), error text with query values hidden (the webhook URL carries the job's token), and
no retry we did not decide on. `fal-client` retries and polls on its own, which for a create without an
idempotency key is how a lost answer becomes a second charge, and it would add its import to the
cold start of every function that builds this client.

Rules this module keeps (docs/fal-contract.md, "Queue: create, status, result, cancel"):
- **Create** `POST <queue base>/<model id>?fal_webhook=<url>`, `Authorization: Key <FAL_KEY>`, with the
  retention header `X-Fal-Object-Lifecycle-Preference` (results kept `result_retention_s`). Its answer's
  `request_id`, `status_url`, `response_url` and `cancel_url` are kept and reused as given, and only when
  they are on the queue's own origin (our key is sent to them). An answer that does not prove whether
  fal made the request (a timeout or cut connection after sending, a 5xx, an answer we cannot read)
  raises ProviderCreateUnsettledError, which is never retried here or by the caller: fal has no
  idempotency key and no look-up by our id, so a second create could be a second charge.
- **No `x-fal-no-retry`** by default: fal's own retries (503/504/429, connection errors, up to 10 times)
  happen inside the one request fal already holds, and 5xx answers are not billed, so they raise the
  share of jobs that end well without ever creating twice. `fal_retries=False` sends the header.
- **Status** `GET status_url`: IN_QUEUE, IN_PROGRESS, COMPLETED. COMPLETED is not success: the result
  fetch decides, where 200 is the video, 422 a refusal (failed, with fal's detail) and a 5xx or 504 is
  transient (ProviderUnavailableError: ask again, never a failure).
- **Cancel** `PUT cancel_url`: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED, 404 NOT_FOUND.
"""

from __future__ import annotations

import json
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
from kling_pipeline.providers.fal import (
    DASHBOARD_URL,
    DEFAULT_RESULT_RETENTION_S,
    PROVIDER,
    QUEUE_BASE_URL,
    detail_text,
    read_webhook_body,
    refusal_of,
    result_of,
    status_of,
    webhook_task,
)
from kling_pipeline.providers.fal_prices import PriceTable
from kling_pipeline.redaction import redact

RETENTION_HEADER = "X-Fal-Object-Lifecycle-Preference"
NO_RETRY_HEADER = "x-fal-no-retry"
HANDLE_URLS = ("status_url", "response_url", "cancel_url")

Verify = Callable[[bytes, Mapping[str, str], float | None], str]


class FalClient:
    """fal's door: one instance per container (its connection pool reused while warm)."""

    name = PROVIDER

    def __init__(
        self,
        key: str,
        *,
        queue_base_url: str = QUEUE_BASE_URL,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        result_retention_s: int = DEFAULT_RESULT_RETENTION_S,
        fal_retries: bool = True,
        prices: PriceTable | None = None,
        verify: Verify | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key:
            raise ValueError("fal needs its API key (FAL_KEY, in the fal credentials secret)")
        self._base = queue_base_url.rstrip("/")
        self._origin = origin(self._base)
        self.timeout_s = timeout_s
        self.result_retention_s = result_retention_s
        self._fal_retries = fal_retries
        self._prices = prices or PriceTable({})
        self._verify = verify
        self._clock = clock
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Authorization": f"Key {key}", "User-Agent": "kling-pipeline/0.1"},
            transport=transport or deadline_transport(),
            follow_redirects=False,
        )

    # -- create ---------------------------------------------------------------------------------

    def create(self, endpoint: str, arguments: Mapping[str, Any], *, webhook_url: str) -> TaskRef:
        """Queue one request on `endpoint` (a fal model id); its reference, to be stored before anything else.
        Raises ProviderRefusedError / ProviderAccountError (nothing made), ProviderUnavailableError with
        `request_sent=False` or a 429 (nothing made: may be sent again), ProviderCreateUnsettledError."""
        headers = {RETENTION_HEADER: json.dumps({"expiration_duration_seconds": self.result_retention_s})}
        if not self._fal_retries:
            headers[NO_RETRY_HEADER] = "1"
        at = self._clock()
        where = f"POST {endpoint}"
        try:
            with within(self.timeout_s):
                response = self._http.post(
                    f"{self._base}/{endpoint.strip('/')}",
                    params={"fal_webhook": webhook_url},
                    json=dict(arguments),
                    headers=headers,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the request never left, so fal cannot have it.
            raise ProviderUnavailableError(PROVIDER, f"{where}: {type(exc).__name__}", request_sent=False) from exc
        except httpx.HTTPError as exc:
            raise self._unsettled(f"no answer to the create ({type(exc).__name__})", at, endpoint) from exc
        status = response.status_code
        if status in REFUSED:
            detail = json_or_text(response)
            raise ProviderRefusedError(
                PROVIDER, f"{where} refused ({status}): {detail_text(detail)}", http_status=status, detail=detail
            )
        if status in ACCOUNT:
            raise ProviderAccountError(
                PROVIDER,
                f"{where}: {status}, fal refused our key (check the fal credentials secret)",
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

    def _ref(self, answer: Any, endpoint: str, at: float) -> TaskRef:
        if not isinstance(answer, Mapping) or not isinstance(answer.get("request_id"), str) or not answer["request_id"]:
            raise ValueError("no request_id")
        urls = {}
        for name in HANDLE_URLS:
            url = answer.get(name)
            if not isinstance(url, str) or origin(url) != self._origin:
                # Our key goes to these URLs: only to fal's queue itself.
                raise ValueError(f"{name} missing or not on {self._origin}")
            urls[name] = url
        position = answer.get("queue_position")
        return TaskRef(
            provider=PROVIDER,
            id=answer["request_id"],
            endpoint=endpoint,
            urls=urls,
            queue_position=position if isinstance(position, int) and not isinstance(position, bool) else None,
            created_at=at,
        )

    def _unsettled(self, what: str, at: float, endpoint: str) -> ProviderCreateUnsettledError:
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return ProviderCreateUnsettledError(
            PROVIDER,
            f"{what}: fal may have queued the request and may bill it, so it is not sent again (fal has no "
            f"idempotency key). Its webhook names the job if it was made; otherwise look for a request to "
            f"{endpoint} at {when} in {DASHBOARD_URL}",
            at=at,
            endpoint=endpoint,
            dashboard=DASHBOARD_URL,
        )

    # -- look-ups -------------------------------------------------------------------------------

    def status(self, ref: TaskRef) -> ProviderTask | None:
        """`GET status_url` in our words; None for COMPLETED (read the result)."""
        answer = self._get_json(ref.urls["status_url"], "status")
        return status_of(answer, ref.id)

    def result(self, ref: TaskRef) -> ProviderTask:
        """`GET response_url`: succeeded (the video), failed (422, with fal's detail, or no video), or
        ProviderUnavailableError (5xx, 504, 429, no answer: transient, ask again)."""
        response = self._send("GET", ref.urls["response_url"], "result")
        if response.status_code == 422:
            return refusal_of(json_or_text(response), ref.id)
        if response.status_code != 200:
            raise ProviderUnavailableError(
                PROVIDER, f"result of {ref.id}: {response.status_code} (ask again)", http_status=response.status_code
            )
        expires = None if ref.created_at is None else ref.created_at + self.result_retention_s
        return result_of(json_or_text(response), ref.id, expires_at=expires)

    def look_up(self, ref: TaskRef) -> ProviderTask:
        """The request now: its status, and its result once fal says COMPLETED."""
        return self.status(ref) or self.result(ref)

    # -- cancel ---------------------------------------------------------------------------------

    def cancel(self, ref: TaskRef) -> CancelOutcome:
        """`PUT cancel_url`; what fal answered and what it will bill."""
        response = self._send("PUT", ref.urls["cancel_url"], "cancel")
        if response.status_code == 202:
            return CancelOutcome(
                "cancel_requested",
                "fal will not run a request still in its queue, and bills nothing for it; one already running "
                "may still finish and be billed",
            )
        if response.status_code == 400:
            return CancelOutcome("already_completed", "fal has finished the request: it is billed as made")
        if response.status_code == 404:
            return CancelOutcome("not_found", "fal does not know the request: nothing to cancel, nothing billed for it")
        raise ProviderUnavailableError(
            PROVIDER, f"cancel of {ref.id}: {response.status_code} (ask again)", http_status=response.status_code
        )

    # -- callbacks and money --------------------------------------------------------------------

    def read_callback(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> CallbackEvent:
        """fal's webhook verified (adapters/fal_signatures.py) and read; the caller de-duplicates on
        `dedup_key` (the request_id, the same over fal's repeated deliveries)."""
        if self._verify is None:
            raise ProviderSignatureError(PROVIDER, "no fal webhook verifier is configured: refusing unsigned trust")
        request_id = self._verify(body, headers, now)
        try:
            hook = read_webhook_body(body)
        except ValueError as exc:
            raise ProviderSignatureError(PROVIDER, f"a signed body that is not fal's webhook ({exc})") from None
        if hook.request_id != request_id:
            raise ProviderSignatureError(PROVIDER, "the body's request_id is not the one signed")
        return CallbackEvent(PROVIDER, request_id, webhook_task(hook, expires_at=None), signed=True)

    def charge(self, ref: TaskRef, arguments: Mapping[str, Any], task: ProviderTask) -> Charge | None:
        """A finished video's seconds x the endpoint's price, in USD. None for a request that did not end
        with a video (a 422 may still be charged by fal: its dashboard says; no figure is guessed)."""
        if task.status != "succeeded":
            return None
        try:
            seconds = float(task.duration_s or arguments.get("duration") or 0)
        except (TypeError, ValueError):
            return None
        return self._prices.charge(ref.endpoint, seconds, audio=bool(arguments.get("generate_audio")))

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _get_json(self, url: str, what: str) -> Any:
        response = self._send("GET", url, what)
        if response.status_code != 200:
            raise ProviderUnavailableError(
                PROVIDER, f"{what}: {response.status_code} (ask again)", http_status=response.status_code
            )
        answer = json_or_text(response)
        if not isinstance(answer, Mapping):
            raise ProviderUnavailableError(PROVIDER, f"{what}: an answer that is not a JSON object")
        return answer

    def _send(self, method: str, url: str, what: str) -> httpx.Response:
        if origin(url) != self._origin:
            raise ProviderUnavailableError(
                PROVIDER, f"{what}: the stored URL is not on {self._origin}", request_sent=False
            )
        try:
            with within(self.timeout_s):
                return self._http.request(method, url)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailableError(PROVIDER, f"{what}: {type(exc).__name__}", request_sent=False) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(PROVIDER, redact(f"{what}: {type(exc).__name__}: {exc}", url)) from exc
