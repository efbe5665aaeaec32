"""Kling API client: API-key or JWT auth, both API designs, typed errors by business code, one pooled
httpx connection per container.

Kling's two designs (docs/kling-contract.md, "The newer API design") differ in paths, bodies and answers;
a task's model says which design serves it (capabilities.design_of), and the calls about a task take
that model (`model=`). Answers of both designs are read into the one KlingTask (kling_task.py). An API
key, when the deployment has one, signs every call; without it the JWT of the access and secret keys
signs the legacy design's calls, and a newer-design call is refused here, before it is sent
(KlingApiKeyNeededError: nothing was created, nothing spent).

A create is the one call that costs money, so its outcome is classified by what the answer proves:
only answers that prove no task was made (throttling, validation, policy, billing, auth, a request
that never left) are raised as such; anything else raises KlingCreateUnsettledError, and the caller
reconciles before creating again (docs/architecture.md, "Exactly once where money is spent").

Decisions are made on Kling's business `code`, never on the HTTP status alone: HTTP 429 covers
both retryable throttling (1302, 1303) and the account's errors (1100-1102 billing, 1304 IP allow-list).

Each request ends within KLING_TIMEOUT_S in all (connect, sending, the whole answer), or by the
invocation's deadline if sooner (adapters/deadlines.py): httpx's own timeouts are per read only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import jwt
from pydantic import ValidationError

from kling_pipeline.adapters import on_reset
from kling_pipeline.adapters.deadlines import within
from kling_pipeline.adapters.pinned_http import deadline_transport
from kling_pipeline.adapters.secrets import KlingCredentials
from kling_pipeline.capabilities import NEW_DESIGN_TASKS_PATH, NEW_PRODUCTS, design_of, endpoint_path, new_design_path
from kling_pipeline.errors import (
    KlingAccountError,
    KlingApiError,
    KlingApiKeyNeededError,
    KlingCreateUnsettledError,
    KlingFinalError,
    KlingRetryableError,
    KlingShapeError,
    KlingUnavailableError,
)
from kling_pipeline.kling_task import KlingTask, ResourcePack
from kling_pipeline.observability import logger

# Too fast, or over the pack's concurrency: try again later; a refused create made no task.
THROTTLE_CODES = frozenset({1302, 1303})
# Kling's own faults: try again later; a create answered this way may still have made a task.
KLING_FAULT_CODES = frozenset({5000, 5001, 5002})
RETRYABLE_CODES = THROTTLE_CODES | KLING_FAULT_CODES
# Final for the request: access to the model, validation, content policy. Trying again changes nothing.
FINAL_CODES = frozenset({1103, 1200, 1201, 1202, 1203, 1300, 1301})
# Our account's fault (keys, clock, IP allow-list; 1100-1102 the account, arrears, a resource pack used
# up or expired): refused before anything was made, and no job is at fault.
ACCOUNT_CODES = frozenset({1000, 1001, 1002, 1003, 1004, 1100, 1101, 1102, 1304})
# Answers to a create that prove no task exists; every other answer leaves the create unsettled.
NO_TASK_CODES = THROTTLE_CODES | FINAL_CODES | ACCOUNT_CODES
TOKEN_TIME_CODES = frozenset({1003, 1004})
TASK_NOT_FOUND = 1203
LIST_PAGE_SIZE = 500
LIST_MAX_PAGES = 10  # without a time budget; with one, the scan goes on while the invocation has time
TOKEN_LIFETIME_S = 1800
# Kinds some newer-design model serves: a job of one whose model is not known may have a task in /tasks.
NEW_DESIGN_KINDS = frozenset(NEW_PRODUCTS)
TOKEN_REFRESH_MARGIN_S = 300


def classify_error(code: int, message: str, http_status: int, request_id: str | None = None) -> KlingApiError:
    """Map a Kling error envelope to retryable or final, by business code."""
    if code in RETRYABLE_CODES or (code == 0 and http_status >= 500):
        return KlingRetryableError(code, message, http_status, request_id)
    if code in FINAL_CODES:
        return KlingFinalError(code, message, http_status, request_id)
    return KlingAccountError(code, message, http_status, request_id)


class KlingTokenSigner:
    """Signs Kling's HS256 JWT and caches it until shortly before it expires."""

    def __init__(self, access_key: str, secret_key: str, lifetime_s: int = TOKEN_LIFETIME_S) -> None:
        if not access_key or not secret_key:
            raise ValueError("Kling access key and secret key must both be set (see KlingCredentials secret)")
        self._access_key = access_key
        self._secret_key = secret_key
        self._lifetime_s = lifetime_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def token(self, *, now: float | None = None) -> str:
        now = time.time() if now is None else now
        with self._lock:
            if self._token is None or now >= self._expires_at - TOKEN_REFRESH_MARGIN_S:
                self._token = self.sign(now=now)
                self._expires_at = now + self._lifetime_s
            return self._token

    def sign(self, *, now: float | None = None) -> str:
        now = int(time.time() if now is None else now)
        claims = {"iss": self._access_key, "exp": now + self._lifetime_s, "nbf": now - 5}
        return jwt.encode(claims, self._secret_key, algorithm="HS256", headers={"typ": "JWT"})

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


class KlingClient:
    """The few Kling calls the pipeline makes. One instance per Lambda container (warm reuse)."""

    def __init__(
        self,
        base_url: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        *,
        api_key: str | None = None,
    ) -> None:
        if not api_key and not (access_key and secret_key):
            raise ValueError("Kling needs an API key, or an access key and a secret key (see KlingCredentials secret)")
        self._api_key = api_key or None
        self._signer = KlingTokenSigner(access_key, secret_key) if access_key and secret_key else None
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Content-Type": "application/json", "User-Agent": "kling-pipeline/0.1"},
            transport=transport or deadline_transport(),
        )

    @classmethod
    def of(
        cls,
        base_url: str,
        credentials: KlingCredentials,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> KlingClient:
        return cls(
            base_url,
            credentials.access_key,
            credentials.secret_key,
            timeout_s,
            transport,
            api_key=credentials.api_key,
        )

    @property
    def serves_new_design(self) -> bool:
        """Whether calls of Kling's newer design can be made: only an API key signs them."""
        return self._api_key is not None

    def require_new_design(self, model: str) -> None:
        """Raise KlingApiKeyNeededError (nothing sent, nothing spent) when `model` needs an API key we lack."""
        if design_of(model) == "new" and not self.serves_new_design:
            raise KlingApiKeyNeededError(
                f"{model} is served by Kling's newer API design, which takes an API key only, and this deployment "
                """has access and secret keys alone: add "api_key" beside them in the Kling credentials secret """
                "(README, 'Deploy'), or use a legacy model such as kling-v2-6"
            )

    # -- the calls ----------------------------------------------------------------------------

    def create_task(self, kind: str, body: dict[str, Any], *, model: str | None = None) -> KlingTask:
        """Create a task (on the newer design's path when `model` is one of its models). Raises
        KlingCreateUnsettledError unless the answer proves what happened."""
        if model is not None and design_of(model) == "new":
            self.require_new_design(model)
            path = new_design_path(kind, model)
        else:
            path = endpoint_path(kind)
        try:
            data = self._request("POST", path, json=body)
        except KlingApiError as exc:
            if exc.code in NO_TASK_CODES:
                raise
            raise KlingCreateUnsettledError(
                f"Kling answered the create with {exc.code}: {exc.message}",
                transient=isinstance(exc, KlingRetryableError),
            ) from exc
        except KlingUnavailableError as exc:
            if not exc.request_sent:
                raise
            raise KlingCreateUnsettledError(f"no answer to the create: {exc}") from exc
        except KlingShapeError as exc:
            raise KlingCreateUnsettledError(f"an answer to the create we cannot read: {exc}", transient=False) from exc
        try:
            return KlingTask.model_validate(data)
        except ValidationError as exc:
            raise KlingCreateUnsettledError(
                f"Kling answered the create in a shape we do not know ({_fields(exc)})", transient=False
            ) from exc

    def get_task(self, kind: str, task_id: str, *, model: str | None = None) -> KlingTask:
        """One task; a newer-design task (by its model) through `GET /tasks?task_ids=`, where one that is
        not found is Kling's "task not found" (KlingFinalError 1203), as the legacy look-up answers."""
        if model is not None and design_of(model) == "new":
            self.require_new_design(model)
            for task in self.tasks_by_ids([task_id]):
                if task.task_id == task_id:
                    return task
            raise KlingFinalError(TASK_NOT_FOUND, f"task {task_id} is not among the tasks Kling answered", 200)
        return _task(self._request("GET", f"{endpoint_path(kind)}/{task_id}"))

    def tasks_by_ids(self, task_ids: Sequence[str]) -> list[KlingTask]:
        """The newer-design tasks of these ids that Kling knows (`GET /tasks?task_ids=a,b`): one call for
        all of them (the caller keeps a batch within what Kling takes); an id Kling does not know is
        simply absent from the answer."""
        return self._tasks("task_ids", task_ids)

    def tasks_by_external_ids(self, external_task_ids: Sequence[str]) -> list[KlingTask]:
        """The newer-design tasks under these external ids (`GET /tasks?external_task_ids=x,y`)."""
        return self._tasks("external_task_ids", external_task_ids)

    def _tasks(self, by: str, ids: Sequence[str]) -> list[KlingTask]:
        if not ids:
            return []
        if not self.serves_new_design:
            raise KlingApiKeyNeededError("Kling's /tasks look-ups take an API key: add api_key to the Kling secret")
        if any("," in i for i in ids):
            raise ValueError(f"{by}: an id with a comma cannot be asked for in a comma-separated list")
        data = self._request("GET", NEW_DESIGN_TASKS_PATH, params={by: ",".join(ids)})
        # `data` is the list (documented); a sweep-like {result: [...]} is read too.
        items = data.get("result", data.get("tasks")) if isinstance(data, dict) else data
        if not isinstance(items, list | type(None)):
            raise KlingShapeError(f"Kling's /tasks answer is a {type(items).__name__}, not a list")
        return [_task(item) for item in (items or [])]

    def find_by_external_id(self, kind: str, external_task_id: str, *, model: str | None = None) -> KlingTask | None:
        """Look a task up by our own id; None only when Kling says "task not found" (1203) or, for a
        newer-design model, `/tasks` answers without it. A bare 404 (a gateway, a route Kling does not
        serve) proves nothing and raises KlingUnavailableError."""
        if model is not None and design_of(model) == "new":
            self.require_new_design(model)
            found = self.tasks_by_external_ids([external_task_id])
            return next((t for t in found if t.task_info.external_task_id == external_task_id), None)
        try:
            data = self._request("GET", endpoint_path(kind), params={"external_task_id": external_task_id})
        except KlingFinalError as exc:
            if exc.code == TASK_NOT_FOUND:
                return None
            raise
        # The documented form is unconfirmed: accept one task object or a list of them. In a list (Kling
        # may have ignored the filter) only an exact match is ours; a lone object without the id echoed
        # back is trusted, since it answered this query alone.
        if isinstance(data, dict) and data:
            task = _task(data)
            return task if task.task_info.external_task_id in (None, external_task_id) else None
        for item in data if isinstance(data, list) else []:
            task = _task(item)
            if task.task_info.external_task_id == external_task_id:
                return task
        return None

    def find_in_recent_list(
        self,
        kind: str,
        external_task_id: str,
        *,
        created_since_ms: int,
        time_left_s: Callable[[], float] | None = None,
    ) -> KlingTask | None:
        """Scan the task list (newest first) back to `created_since_ms` for our external id. None only
        when every task created since then was seen; otherwise KlingUnavailableError (not proof).

        `time_left_s`: what the invocation has left for the scan (its caller keeps what it needs after);
        a page is asked for only while a whole request fits. Without it, LIST_MAX_PAGES pages at most."""
        page = 0
        while True:
            if time_left_s is None and page >= LIST_MAX_PAGES:
                raise KlingUnavailableError(f"the list scan stopped after {page} pages, {unseen(page)}")
            if time_left_s is not None and time_left_s() < self.timeout_s:
                raise KlingUnavailableError(f"the list scan ran out of time after {page} pages, {unseen(page)}")
            page += 1
            items = self.list_tasks(kind, page_num=page, page_size=LIST_PAGE_SIZE)
            for task in items:
                if task.task_info.external_task_id == external_task_id:
                    return task
            if len(items) < LIST_PAGE_SIZE or min((t.created_at or 0) for t in items) < created_since_ms:
                return None

    def locate(
        self,
        kind: str,
        external_task_id: str,
        *,
        created_since_ms: int,
        accept: Callable[[KlingTask], bool] | None = None,
        time_left_s: Callable[[], float] | None = None,
        model: str | None = None,
    ) -> KlingTask | None:
        """A task of ours by external id, asked directly and then through the list (Kling's look-up by
        external id is not documented firmly, and a lag may hide a new task from it); None only when the
        list scan, which is the proof, reaches back to `created_since_ms` without finding it. A look-up
        answer `accept` refuses (not the job's task: lifecycle.Job.owns_task) is no answer.

        A newer-design model's task is looked for in `/tasks` by external id, its one documented look-up,
        whose None is the answer. A job whose model is not known here (the deployment's default) is looked
        for there first when we have an API key, then the legacy way."""
        if model is not None and design_of(model) == "new":
            found = self.find_by_external_id(kind, external_task_id, model=model)
            return found if found is None or accept is None or accept(found) else None
        if model is None and self.serves_new_design and kind in NEW_DESIGN_KINDS:
            try:
                found = next(
                    (t for t in self.tasks_by_external_ids([external_task_id]) if accept is None or accept(t)), None
                )
            except (KlingUnavailableError, KlingFinalError, KlingShapeError) as exc:
                logger.info("look-up in /tasks gave no answer", extra={"reason": str(exc)})
                found = None
            if found is not None and found.task_info.external_task_id == external_task_id:
                return found
        try:
            found = self.find_by_external_id(kind, external_task_id)
        except (KlingUnavailableError, KlingFinalError, KlingShapeError) as exc:
            # The look-up route gave no usable answer (a bare 404, say): it proves nothing either way.
            logger.info("look-up by external_task_id gave no answer; scanning the list", extra={"reason": str(exc)})
            found = None
        if found is not None and accept is not None and not accept(found):
            found = None
        return found or self.find_in_recent_list(
            kind, external_task_id, created_since_ms=created_since_ms, time_left_s=time_left_s
        )

    def list_tasks(self, kind: str, page_num: int = 1, page_size: int = 30) -> list[KlingTask]:
        data = self._request("GET", endpoint_path(kind), params={"pageNum": page_num, "pageSize": page_size})
        if not isinstance(data, list | type(None)):
            raise KlingShapeError(f"Kling's task list is a {type(data).__name__}, not a list")
        return [_task(item) for item in (data or [])]

    def resource_packs(self, *, since_ms: int, until_ms: int) -> list[ResourcePack]:
        """The account's resource packs in force between the two times (`GET /account/costs`); Kling asks
        for at most one such call a second."""
        data = self._request("GET", "/account/costs", params={"start_time": since_ms, "end_time": until_ms})
        packs = data.get("resource_pack_subscribe_infos") if isinstance(data, dict) else None
        if not isinstance(packs, list):
            raise KlingShapeError("Kling's account costs have no resource_pack_subscribe_infos list")
        try:
            return [ResourcePack.model_validate(pack) for pack in packs]
        except ValidationError as exc:
            raise KlingShapeError(f"a resource pack in an unknown shape: {exc.errors()[0]['msg']}") from None

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send once; on 1003/1004 (clock skew, expiry) re-sign the token and send once more."""
        for attempt in (1, 2):
            try:
                with within(self.timeout_s):
                    response = self._http.request(
                        method, path, headers={"Authorization": self._authorization()}, **kwargs
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # No connection was made: the request never left, so it cannot have landed.
                raise KlingUnavailableError(f"{method} {path}: {type(exc).__name__}", request_sent=False) from exc
            except httpx.HTTPError as exc:
                raise KlingUnavailableError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            envelope = _parse_envelope(response, method, path)
            try:
                code = int(envelope.get("code", -1))
            except (TypeError, ValueError):
                raise KlingShapeError(f"{method} {path}: Kling's answer has a code that is not a number") from None
            if code == 0:
                return envelope.get("data")
            error = classify_error(
                code, str(envelope.get("message", "")), response.status_code, envelope.get("request_id")
            )
            if code in TOKEN_TIME_CODES and attempt == 1 and self._api_key is None and self._signer is not None:
                self._signer.invalidate()
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def _authorization(self) -> str:
        """The API key when there is one (it serves both designs); else the JWT (legacy design only)."""
        if self._api_key is not None:
            return f"Bearer {self._api_key}"
        assert self._signer is not None, "a client without an API key has a signer (__init__)"
        return f"Bearer {self._signer.token()}"


def unseen(pages: int) -> str:
    return f"{pages * LIST_PAGE_SIZE} tasks seen and older ones since the create not yet (not proof)"


def _task(data: Any) -> KlingTask:
    try:
        return KlingTask.model_validate(data)
    except ValidationError as exc:
        raise KlingShapeError(f"Kling answered a task in a shape we do not know ({_fields(exc)})") from exc


def _fields(exc: ValidationError) -> str:
    """Which fields were wrong, without the values (an answer may hold signed URLs)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors())


def _parse_envelope(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or "code" not in envelope:
        if response.status_code >= 500 or response.status_code == 429:
            raise KlingRetryableError(0, f"HTTP {response.status_code} without a Kling envelope", response.status_code)
        raise KlingUnavailableError(
            f"{method} {path}: HTTP {response.status_code} with a body that is not Kling's JSON envelope"
        )
    return envelope


_shared_lock = threading.Lock()
_shared: dict[tuple[str, KlingCredentials, float], KlingClient] = {}


def shared_client(base_url: str, credentials: KlingCredentials, *, timeout_s: float) -> KlingClient:
    """One client per container, reused while warm (its connection pool too); rebuilt, and the old one
    closed, when the keys change (a rotated secret is picked up without a redeploy)."""
    key = (base_url, credentials, timeout_s)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            for old in _shared.values():
                old.close()
            _shared.clear()
            client = _shared[key] = KlingClient.of(base_url, credentials, timeout_s=timeout_s)
        return client


def close_shared_clients() -> None:
    with _shared_lock:
        for client in _shared.values():
            client.close()
        _shared.clear()


on_reset(close_shared_clients)
