"""The fal simulator's state: queued requests, the account's slots, outcomes, webhooks and counters, behind
one lock; a scheduler thread moves requests along and a webhook thread delivers (and loses, and repeats).

A request's life: IN_QUEUE (while the account's `concurrency_limit` slots are taken; `queue_position`
0-based) -> IN_PROGRESS (a slot, for its generation time / speed) -> COMPLETED, whose result is the video,
or a 422 (`result_422_rate`, or input fal's Kling endpoint refuses), fetched after `result_504_first`
504s. A cancel of a queued request takes it out (202); of a running one is "requested" (202) and the
request still finishes and is billed (the unkind reading); of a finished one 400; `cancel_race_rate`
makes a queued request's cancel meet its completion (it completes with its video, the cancel 400).
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from kling_local.fal_sim.config import FalSimConfig
from kling_local.fal_sim.signing import SigningKey, jwks, webhook_headers

log = logging.getLogger("kling_local.fal_sim")
V3_DURATIONS = tuple(str(s) for s in range(3, 16))
COUNTED = (
    "creates",
    "answers_lost",
    "answers_500",
    "status_queries",
    "result_fetches",
    "results_504",
    "results_422",
    "cancels",
    "cancels_accepted",
    "cancel_races",
    "webhooks_sent",
    "webhooks_delivered",
    "webhooks_failed",
    "webhooks_lost",
    "webhooks_duplicated",
    "completed",
    "billed",
    "unauthorized",
)


@dataclass
class FalRequest:
    request_id: str
    app: str  # owner/app: where its status/response/cancel URLs live
    model_id: str
    arguments: dict[str, Any]
    webhook_url: str | None
    retention_s: int
    created: float  # monotonic
    generation_s: float  # wall seconds once started
    status: str = "IN_QUEUE"
    started: float | None = None
    ended: float | None = None
    refusal: list[dict[str, Any]] | None = None  # the 422's detail
    cancelled: bool = False
    billed: bool = False
    result_fetches: int = 0
    seq: int = 0


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    request_id: str = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(compare=False, default=1)


def webhook_key(url: str) -> str:
    """What names our job in a webhook URL: its path (the token in its query string is not a name)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


class FalState:
    def __init__(self, config: FalSimConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.keys = [SigningKey()]
        self.base_url = ""  # the API server's, set by the simulator once bound
        self.media_base_url = ""
        self._rng = random.Random(config.seed)
        self._faults = random.Random(None if config.seed is None else f"{config.seed}/faults")
        self._stopping = threading.Event()
        self._wake = threading.Condition(self.lock)
        self._threads: list[threading.Thread] = []
        self._http = httpx.Client(timeout=5.0)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: dict[str, FalRequest] = {}
            self.queue: list[str] = []
            self.counts: Counter[str] = Counter()
            self.creates_by_webhook: Counter[str] = Counter()
            self.max_running = 0
            self._deliveries: list[_Delivery] = []
            self._seq = 0

    # -- threads ---------------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (("fal-sim-scheduler", self._schedule), ("fal-sim-webhooks", self._deliver_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with self.lock:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._http.close()

    # -- knobs and keys ---------------------------------------------------------------------------

    def configure(self, knobs: Mapping[str, Any]) -> FalSimConfig:
        with self.lock:
            self.config = self.config.with_changes(dict(knobs))
            if "seed" in knobs:
                self._rng = random.Random(self.config.seed)
                self._faults = random.Random(None if self.config.seed is None else f"{self.config.seed}/faults")
            self._wake.notify_all()
            return self.config

    def rotate_keys(self, *, keep_previous: bool = False) -> SigningKey:
        """Sign with a new key from now on; the JWKS serves it (and the old one when `keep_previous`)."""
        with self.lock:
            key = SigningKey()
            self.keys = [key, *self.keys[:1]] if keep_previous else [key]
            return key

    def jwks(self) -> bytes:
        with self.lock:
            return jwks(self.keys)

    def chance(self, probability: float) -> bool:
        return probability > 0 and self._faults.random() < probability

    # -- the queue API ----------------------------------------------------------------------------

    def create(
        self, model_id: str, arguments: dict[str, Any], webhook_url: str | None, retention_s: int | None
    ) -> tuple[FalRequest, str | None]:
        """A new request, and how its answer goes wrong ("lost", "500"; None: it does not). The request
        stands either way."""
        with self.lock:
            config = self.config
            low, high = sorted((config.generation_min_s, config.generation_max_s))
            self._seq += 1
            request = FalRequest(
                request_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                app="/".join(model_id.split("/")[:2]),
                model_id=model_id,
                arguments=arguments,
                webhook_url=webhook_url,
                retention_s=retention_s or config.result_retention_s,
                created=time.monotonic(),
                generation_s=self._rng.uniform(low, high) / config.speed,
                refusal=_refusal(model_id, arguments),
                seq=self._seq,
            )
            self.requests[request.request_id] = request
            self.queue.append(request.request_id)
            self.counts["creates"] += 1
            if webhook_url:
                self.creates_by_webhook[webhook_key(webhook_url)] += 1
            fault = None
            if self.chance(config.create_answer_loss_rate):
                fault = "lost"
                self.counts["answers_lost"] += 1
            elif self.chance(config.create_5xx_rate):
                fault = "500"
                self.counts["answers_500"] += 1
            self._promote()
            self._wake.notify_all()
            return request, fault

    def handle(self, request: FalRequest) -> dict[str, Any]:
        base = f"{self.base_url}/{request.app}/requests/{request.request_id}"
        return {
            "request_id": request.request_id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "queue_position": self.queue_position(request),
        }

    def finish_running(self) -> int:
        """Every running request ends now (a test's clean-up, so no job waits on it); how many there were."""
        with self.lock:
            running = [r for r in self.requests.values() if r.status == "IN_PROGRESS"]
            for request in running:
                request.generation_s = 0.0
            self._wake.notify_all()
            return len(running)

    def queue_position(self, request: FalRequest) -> int | None:
        try:
            return self.queue.index(request.request_id)
        except ValueError:
            return None

    def find(self, app: str, request_id: str) -> FalRequest | None:
        with self.lock:
            request = self.requests.get(request_id)
            return request if request is not None and request.app == app else None

    def status(self, request: FalRequest) -> dict[str, Any]:
        with self.lock:
            self.counts["status_queries"] += 1
            answer: dict[str, Any] = {"status": request.status, "request_id": request.request_id}
            answer["response_url"] = f"{self.base_url}/{request.app}/requests/{request.request_id}"
            if request.status == "IN_QUEUE":
                answer["queue_position"] = self.queue_position(request)
            return answer

    def result(self, request: FalRequest) -> tuple[int, dict[str, Any]]:
        """What `GET response_url` answers: 400 before COMPLETED, the first 504s, a 422, or the video."""
        with self.lock:
            self.counts["result_fetches"] += 1
            if request.status != "COMPLETED":
                return 400, {"detail": "Request is still in progress"}
            if request.cancelled:
                return 400, {"detail": "Request was cancelled"}
            request.result_fetches += 1
            if request.result_fetches <= self.config.result_504_first:
                self.counts["results_504"] += 1
                return 504, {"detail": "Gateway Timeout"}
            if request.refusal is not None:
                return 422, {"detail": request.refusal}
            return 200, self._payload(request)

    def cancel(self, request: FalRequest) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.counts["cancels"] += 1
            if request.status == "IN_QUEUE" and self.chance(self.config.cancel_race_rate):
                # The cancel arrives as the request finishes: it completes (and is billed), the cancel is late.
                self.counts["cancel_races"] += 1
                self.queue.remove(request.request_id)
                request.started = time.monotonic()
                self._complete(request)
                return 400, {"status": "ALREADY_COMPLETED"}
            if request.status == "IN_QUEUE":
                self.queue.remove(request.request_id)
                request.status = "COMPLETED"
                request.cancelled = True
                request.ended = time.monotonic()
                self.counts["cancels_accepted"] += 1
                self._promote()
                return 202, {"status": "CANCELLATION_REQUESTED"}
            if request.status == "IN_PROGRESS":
                self.counts["cancels_accepted"] += 1
                return 202, {"status": "CANCELLATION_REQUESTED"}  # it runs on, and is billed
            return 400, {"status": "ALREADY_COMPLETED"}

    def media(self, request_id: str) -> FalRequest | None:
        with self.lock:
            request = self.requests.get(request_id)
            if request is None or request.status != "COMPLETED" or request.refusal or request.cancelled:
                return None
            assert request.ended is not None
            return request if time.monotonic() < request.ended + request.retention_s / self.config.speed else None

    # -- the scheduler ----------------------------------------------------------------------------

    def _running(self) -> int:
        return sum(1 for r in self.requests.values() if r.status == "IN_PROGRESS")

    def _promote(self) -> None:
        limit = self.config.concurrency_limit
        running = self._running()
        while self.queue and (limit == 0 or running < limit):
            request = self.requests[self.queue.pop(0)]
            request.status = "IN_PROGRESS"
            request.started = time.monotonic()
            running += 1
        self.max_running = max(self.max_running, running)

    def _schedule(self) -> None:
        with self.lock:
            while not self._stopping.is_set():
                now = time.monotonic()
                due = [
                    r
                    for r in self.requests.values()
                    if r.status == "IN_PROGRESS" and r.started is not None and now >= r.started + r.generation_s
                ]
                for request in due:
                    self._complete(request)
                if due:
                    self._promote()
                waits = [
                    r.started + r.generation_s - now
                    for r in self.requests.values()
                    if r.status == "IN_PROGRESS" and r.started is not None
                ]
                self._wake.wait(timeout=min([0.5, *[max(w, 0.001) for w in waits]]))

    def _complete(self, request: FalRequest) -> None:
        request.status = "COMPLETED"
        request.ended = time.monotonic()
        self.counts["completed"] += 1
        if request.refusal is None and self.chance(self.config.result_422_rate):
            request.refusal = [{"loc": ["body"], "msg": "Kling refused the request (content policy)", "type": "kling"}]
        if request.refusal is None:
            request.billed = True
            self.counts["billed"] += 1
        else:
            self.counts["results_422"] += 1
        if request.webhook_url:
            self._send_webhook(request)

    # -- webhooks ---------------------------------------------------------------------------------

    def _webhook_body(self, request: FalRequest) -> bytes:
        if request.refusal is None:
            body: dict[str, Any] = {"status": "OK", "payload": self._payload(request), "error": None}
        else:
            body = {"status": "ERROR", "payload": {"detail": request.refusal}, "error": "Unprocessable Entity"}
        body |= {"request_id": request.request_id, "gateway_request_id": request.request_id, "payload_error": None}
        return json.dumps(body).encode()

    def _send_webhook(self, request: FalRequest) -> None:
        assert request.webhook_url is not None
        if self.chance(self.config.webhook_loss_rate):
            self.counts["webhooks_lost"] += 1
            return
        copies = 2 if self.chance(self.config.webhook_duplicate_rate) else 1
        if copies == 2:
            self.counts["webhooks_duplicated"] += 1
        body = self._webhook_body(request)
        for copy in range(copies):
            self._seq += 1
            due = time.monotonic() + self.config.webhook_delay_s + copy * 0.01
            heapq.heappush(self._deliveries, _Delivery(due, self._seq, request.request_id, request.webhook_url, body))
        self._wake.notify_all()

    def _deliver_loop(self) -> None:
        while not self._stopping.is_set():
            with self.lock:
                item = None
                if self._deliveries and self._deliveries[0].due <= time.monotonic():
                    item = heapq.heappop(self._deliveries)
                if item is None:
                    wait = self._deliveries[0].due - time.monotonic() if self._deliveries else 0.5
                    self._wake.wait(timeout=min(max(wait, 0.001), 0.5))
                    continue
                headers = webhook_headers(self.keys[0], item.request_id, self.config.user_id, item.body)
                attempts = self.config.webhook_attempts
            delivered = self._post(item, headers)
            with self.lock:
                self.counts["webhooks_sent"] += 1
                if delivered:
                    self.counts["webhooks_delivered"] += 1
                elif item.attempt < attempts:
                    item.attempt += 1
                    item.due = time.monotonic() + 0.05 * 2**item.attempt
                    heapq.heappush(self._deliveries, item)
                else:
                    self.counts["webhooks_failed"] += 1

    def _post(self, item: _Delivery, headers: dict[str, str]) -> bool:
        try:
            response = self._http.post(
                item.url, content=item.body, headers={**headers, "Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            log.debug("webhook to %s failed: %s", webhook_key(item.url), type(exc).__name__)
            return False
        return 200 <= response.status_code < 300

    # -- results ----------------------------------------------------------------------------------

    def _payload(self, request: FalRequest) -> dict[str, Any]:
        size = self.config.video_size_bytes
        return {
            "video": {
                "url": f"{self.media_base_url}/files/{request.request_id}/output.mp4",
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": size or None,
            }
        }

    def stats(self) -> dict[str, Any]:
        with self.lock:
            by_status = Counter(r.status for r in self.requests.values())
            return {
                **{key: self.counts.get(key, 0) for key in COUNTED},
                "queued": len(self.queue),
                "running": by_status.get("IN_PROGRESS", 0),
                "max_running": self.max_running,
                "requests": len(self.requests),
                "creates_by_webhook": dict(self.creates_by_webhook),
                "max_creates_per_webhook": max(self.creates_by_webhook.values(), default=0),
                "pending_webhooks": len(self._deliveries),
            }

    def outcomes_by_webhook(self) -> dict[str, list[dict[str, Any]]]:
        """Webhook key (the job's path) -> each request made under it: its id, status, and whether it made a
        video (completed, not refused or cancelled: billed). What a chaos row holds each job's end against."""
        with self.lock:
            made: dict[str, list[dict[str, Any]]] = {}
            for request in sorted(self.requests.values(), key=lambda r: r.seq):
                if request.webhook_url:
                    made.setdefault(webhook_key(request.webhook_url), []).append(
                        {"id": request.request_id, "status": request.status, "video": request.billed}
                    )
            return made


def _refusal(model_id: str, arguments: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """What fal's Kling endpoint refuses, as its 422 detail (it accepts the request and fails its result)."""
    problems = []
    if not isinstance(arguments.get("prompt"), str) or not arguments["prompt"].strip():
        problems.append({"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"})
    durations = V3_DURATIONS if "/v3/" in model_id else ("5", "10")
    if str(arguments.get("duration", "5")) not in durations:
        problems.append(
            {"loc": ["body", "duration"], "msg": f"value is not one of {', '.join(durations)}", "type": "enum"}
        )
    if "image-to-video" in model_id and not (arguments.get("image_url") or arguments.get("start_image_url")):
        problems.append({"loc": ["body", "image_url"], "msg": "field required", "type": "value_error.missing"})
    return problems or None
