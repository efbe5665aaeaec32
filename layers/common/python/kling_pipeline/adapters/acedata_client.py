"""AceData Cloud's Kling API: the one module that talks to AceData (create, retrieve, retrieve_batch), and
AceData's door as a `providers.Provider`.

Rules this module keeps (docs/acedata-contract.md):
- **Create** `POST /kling/videos`, `authorization: Bearer <token>`, **always with `callback_url`** (the
  job's callback URL, our token in it): without it (or `async: true`) AceData answers synchronously and
  holds the connection for minutes. The answer is `{"task_id"}`. AceData has no idempotency key and no
  look-up by our id, so an ambiguous create (a timeout or cut connection after sending, a 5xx, an
  `api_error`, an answer we cannot read) raises ProviderCreateUnsettledError and is never repeated
  automatically. (`api_error` is backpressure on a look-up; on a create it proves nothing about
  whether the task was made, so it is unsettled there.)
- **Look up one** `POST /kling/tasks {"action": "retrieve", "id"}`; **many** `{"action":
  "retrieve_batch", "ids": [...]}`, `batch_size` ids a call (AceData documents no maximum). An id missing
  from an answer is "not found in this answer" (`BatchAnswer.missing`: ask again), never a failure.
- **Errors** `{success: false, error: {code, message}}`: `invalid_token`, `token_mismatched`,
  `api_not_implemented` raise ProviderAccountError carrying the fix (the caller parks the job);
  `too_many_requests` and `api_error` raise ProviderUnavailableError (backpressure).
- **Callbacks are unsigned**: `read_callback` returns `signed=False`; the caller retrieves the task before
  acting on it. **No cancel**: `cancel` says not supported, without a call.
- **Charges**: AceData bills per call (UNCONFIRMED how much, in what): `charge` is None unless the
  deployment sets a figure (`usd_per_call`, the AceDataPricePerCall setting), then that figure in USD for
  each task that ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from kling_pipeline.adapters.deadlines import within
from kling_pipeline.adapters.pinned_http import deadline_transport
from kling_pipeline.adapters.provider_http import json_or_text
from kling_pipeline.errors import (
    ProviderAccountError,
    ProviderCreateUnsettledError,
    ProviderError,
    ProviderRefusedError,
    ProviderSignatureError,
    ProviderUnavailableError,
)
from kling_pipeline.providers import CallbackEvent, CancelOutcome, Charge, ProviderTask, TaskRef
from kling_pipeline.providers.acedata import (
    ACCOUNT_CODES,
    API_BASE_URL,
    DASHBOARD_URL,
    DEFAULT_BATCH_SIZE,
    PROVIDER,
    error_of,
    item_task,
    items_of,
    read_callback_body,
)
from kling_pipeline.redaction import redact


@dataclass(frozen=True)
class BatchAnswer:
    """What a batch look-up found: tasks by id, and the ids no answer held (ask again: never a failure)."""

    found: dict[str, ProviderTask] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


class AceDataClient:
    """AceData's door: one instance per container (its connection pool reused while warm)."""

    name = PROVIDER

    def __init__(
        self,
        token: str,
        *,
        base_url: str = API_BASE_URL,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        usd_per_call: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ValueError("AceData needs its token (in the AceData credentials secret)")
        if batch_size < 1:
            raise ValueError("batch_size: at least 1 id per retrieve_batch")
        self._base = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.usd_per_call = usd_per_call
        self._clock = clock
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"authorization": f"Bearer {token}", "User-Agent": "kling-pipeline/0.1"},
            transport=transport or deadline_transport(),
            follow_redirects=False,
        )

    # -- create ---------------------------------------------------------------------------------

    def create(self, endpoint: str, arguments: Mapping[str, Any], *, webhook_url: str) -> TaskRef:
        """One task (`endpoint`: AceData's model name, as providers/acedata.build_arguments gave it) with
        `callback_url` = `webhook_url`, always. Its reference, to be stored before anything else."""
        if not webhook_url:
            raise ValueError("an AceData create needs the job's callback URL: without it AceData holds the call open")
        body = {**dict(arguments), "callback_url": webhook_url}
        at = self._clock()
        where = f"POST /kling/videos ({endpoint})"
        try:
            with within(self.timeout_s):
                response = self._http.post(f"{self._base}/kling/videos", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailableError(PROVIDER, f"{where}: {type(exc).__name__}", request_sent=False) from exc
        except httpx.HTTPError as exc:
            raise self._unsettled(f"no answer to the create ({type(exc).__name__})", at, endpoint) from exc
        answer = json_or_text(response)
        error = error_of(answer)
        if error is not None and error[0] in ACCOUNT_CODES:
            raise self._account(where, error, response.status_code)
        if (error is not None and error[0] == "too_many_requests") or response.status_code == 429:
            raise ProviderUnavailableError(PROVIDER, f"{where}: too_many_requests", http_status=429)
        if error is not None and 400 <= response.status_code < 500:
            raise ProviderRefusedError(
                PROVIDER, f"{where} refused: {error[0]}: {error[1]}", http_status=response.status_code, detail=answer
            )
        if error is not None or not 200 <= response.status_code < 300:
            what = error[0] if error else str(response.status_code)
            raise self._unsettled(f"the create was answered {what}, which proves nothing", at, endpoint)
        task_id = answer.get("task_id") if isinstance(answer, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise self._unsettled("an answer to the create without a task_id", at, endpoint)
        return TaskRef(provider=PROVIDER, id=task_id, endpoint=endpoint, created_at=at)

    def _unsettled(self, what: str, at: float, endpoint: str) -> ProviderCreateUnsettledError:
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return ProviderCreateUnsettledError(
            PROVIDER,
            f"{what}: AceData may have made the task and may bill it, so it is not sent again (AceData has no "
            f"idempotency key and no look-up by our id). Its callback names the job if it was made; otherwise "
            f"look for a {endpoint} task at {when} in {DASHBOARD_URL}",
            at=at,
            endpoint=endpoint,
            dashboard=DASHBOARD_URL,
        )

    # -- look-ups -------------------------------------------------------------------------------

    def retrieve(self, task_id: str) -> ProviderTask:
        """`retrieve` one task: in our words; `unknown` when the answer does not hold it (ask again)."""
        answer = self._tasks({"action": "retrieve", "id": task_id}, f"retrieve {task_id}")
        for item in items_of(answer):
            task = item_task(item)
            if task is not None and task.id == task_id:
                return task
        return ProviderTask(PROVIDER, task_id, "unknown", error="AceData's answer does not hold the task (ask again)")

    def look_up(self, ref: TaskRef) -> ProviderTask:
        return self.retrieve(ref.id)

    def retrieve_batch(self, ids: Iterable[str]) -> BatchAnswer:
        """`retrieve_batch`, `batch_size` ids a call: what the answers held, and the ids none held."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, ProviderTask] = {}
        for start in range(0, len(wanted), self.batch_size):
            chunk = wanted[start : start + self.batch_size]
            answer = self._tasks({"action": "retrieve_batch", "ids": chunk}, f"retrieve_batch of {len(chunk)}")
            asked = set(chunk)
            for item in items_of(answer):
                task = item_task(item)
                if task is not None and task.id in asked:
                    found[task.id] = task
        return BatchAnswer(found, tuple(task_id for task_id in wanted if task_id not in found))

    def look_up_many(self, refs: Iterable[TaskRef]) -> BatchAnswer:
        return self.retrieve_batch(ref.id for ref in refs)

    def _tasks(self, body: Mapping[str, Any], what: str) -> Any:
        try:
            with within(self.timeout_s):
                response = self._http.post(f"{self._base}/kling/tasks", json=dict(body))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailableError(PROVIDER, f"{what}: {type(exc).__name__}", request_sent=False) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(PROVIDER, redact(f"{what}: {type(exc).__name__}")) from exc
        answer = json_or_text(response)
        error = error_of(answer)
        if error is not None:
            raise self._error(what, error, response.status_code)
        if response.status_code != 200 or not isinstance(answer, Mapping):
            raise ProviderUnavailableError(
                PROVIDER, f"{what}: {response.status_code} (ask again)", http_status=response.status_code
            )
        return answer

    def _error(self, what: str, error: tuple[str, str], status: int) -> ProviderError:
        code, message = error
        if code in ACCOUNT_CODES:
            return self._account(what, error, status)
        # too_many_requests and api_error (BACKPRESSURE_CODES), and any code this version does not know: ask again.
        return ProviderUnavailableError(PROVIDER, f"{what}: {code}: {message} (ask again later)", http_status=status)

    @staticmethod
    def _account(what: str, error: tuple[str, str], status: int) -> ProviderAccountError:
        code, message = error
        return ProviderAccountError(PROVIDER, f"{what}: {code} ({message}): {ACCOUNT_CODES[code]}", http_status=status)

    # -- cancel, callbacks, money ---------------------------------------------------------------

    def cancel(self, ref: TaskRef) -> CancelOutcome:
        """AceData has no cancel (none found): nothing is sent."""
        return CancelOutcome(
            "not_supported", "AceData offers no cancel: the task runs on and is billed as made (per call)"
        )

    def read_callback(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> CallbackEvent:
        """AceData's callback, read as an unsigned hint (`signed=False`): the caller checks the token in its
        URL and retrieves the task before acting. `dedup_key` is the task id."""
        try:
            callback = read_callback_body(body)
        except ValueError as exc:
            raise ProviderSignatureError(PROVIDER, f"not an AceData callback ({exc})") from None
        return CallbackEvent(PROVIDER, callback.task_id, callback.task, signed=False)

    def charge(self, ref: TaskRef, arguments: Mapping[str, Any], task: ProviderTask) -> Charge | None:
        """The deployment's per-call figure (AceDataPricePerCall) for a task that ended, else None: AceData's
        per-call price is UNCONFIRMED, and no figure is guessed."""
        if self.usd_per_call is None or not task.ended:
            return None
        return Charge(
            self.usd_per_call,
            "USD",
            f"one call at ${self.usd_per_call:g} (this deployment's AceDataPricePerCall; AceData's billing "
            "UNCONFIRMED)",
        )

    def close(self) -> None:
        self._http.close()
