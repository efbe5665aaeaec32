"""The AceData simulator's state: tasks, outcomes, callbacks and counters behind one lock; a scheduler thread
ends tasks and a callback thread delivers (and loses, repeats, and lies: callbacks are unsigned).

A task's life: `processing` for its generation time / speed, then `succeed` (a video on the media host)
or `failed` (`failure_rate`). A create without `callback_url` (and without `async: true`) is answered
only when the task ends, as AceData's synchronous mode holds the connection.
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

from kling_local.acedata_sim.config import AceDataSimConfig

log = logging.getLogger("kling_local.acedata_sim")
COUNTED = (
    "creates",
    "sync_creates",
    "answers_lost",
    "api_errors",
    "too_many_requests",
    "account_errors",
    "unauthorized",
    "retrieves",
    "batch_retrieves",
    "batch_ids_asked",
    "batch_ids_missing",
    "succeeded",
    "failed",
    "callbacks_sent",
    "callbacks_delivered",
    "callbacks_failed",
    "callbacks_lost",
    "callbacks_duplicated",
    "callbacks_early",
    "callbacks_wrong_url",
)


def callback_key(url: str) -> str:
    """A callback URL without its query (our token): one key per job."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


@dataclass
class Task:
    id: str
    request: dict[str, Any]
    callback_url: str | None
    created: float  # wall epoch
    created_mono: float
    generation_s: float
    state: str = "processing"
    ended: float | None = None
    ended_wall: float | None = None
    video_id: str = ""
    video_url: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def response(self) -> dict[str, Any] | None:
        """The task's answer, as a retrieve shows it (None while it runs)."""
        if self.state == "processing":
            return None
        if self.state == "failed":
            return {
                "success": False,
                "task_id": self.id,
                "state": "failed",
                "error": {"code": "generation_failed", "message": "Kling could not make this video (simulated)"},
            }
        return {
            "success": True,
            "task_id": self.id,
            "video_id": self.video_id,
            "video_url": self.video_url,
            "duration": self.request.get("duration", 5),
            "state": "succeed",
        }

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "created_at": self.created, "request": self.request}
        if self.ended_wall is not None:
            item["finished_at"] = self.ended_wall
        response = self.response()
        if response is not None:
            item["response"] = response
        return item


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=1, compare=False)


class AceDataState:
    """Everything the simulator knows, behind `lock`."""

    def __init__(self, config: AceDataSimConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self._rng = random.Random(config.seed)
        self._faults = random.Random(None if config.seed is None else f"{config.seed}/faults")
        self.base_url = ""
        self.media_base_url = ""
        self._stopping = threading.Event()
        self._wake = threading.Condition(self.lock)
        self._threads: list[threading.Thread] = []
        self._http = httpx.Client(timeout=5.0)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.tasks: dict[str, Task] = {}
            self.counts: Counter[str] = Counter()
            self.creates_by_callback: Counter[str] = Counter()
            self._deliveries: list[_Delivery] = []
            self._seq = 0

    def start(self) -> None:
        for name, target in (("acedata-sim-scheduler", self._schedule), ("acedata-sim-callbacks", self._deliver)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with self.lock:
            self._wake.notify_all()
            for task in self.tasks.values():
                task.done.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._http.close()

    def configure(self, knobs: Mapping[str, Any]) -> AceDataSimConfig:
        with self.lock:
            self.config = self.config.with_changes(dict(knobs))
            if "seed" in knobs:
                self._rng = random.Random(self.config.seed)
                self._faults = random.Random(None if self.config.seed is None else f"{self.config.seed}/faults")
            self._wake.notify_all()
            return self.config

    def chance(self, probability: float) -> bool:
        return probability > 0 and self._faults.random() < probability

    def refusal(self) -> tuple[int, str] | None:
        """The error every call meets now, if any: an account error, a 429 (nothing done)."""
        with self.lock:
            if self.config.account_error:
                self.counts["account_errors"] += 1
                code = self.config.account_error
                return (401 if code == "invalid_token" else 400), code
            if self.chance(self.config.too_many_requests_rate):
                self.counts["too_many_requests"] += 1
                return 429, "too_many_requests"
            return None

    def api_error(self) -> bool:
        with self.lock:
            if self.chance(self.config.api_error_rate):
                self.counts["api_errors"] += 1
                return True
            return False

    # -- the API ----------------------------------------------------------------------------------

    def create(self, request: dict[str, Any]) -> tuple[Task, str | None]:
        """A new task and how its answer goes wrong ("lost"; None: it does not)."""
        with self.lock:
            config = self.config
            low, high = sorted((config.generation_min_s, config.generation_max_s))
            callback = request.get("callback_url") if isinstance(request.get("callback_url"), str) else None
            task = Task(
                id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                request={k: v for k, v in request.items() if k != "callback_url"},
                callback_url=callback,
                created=time.time(),
                created_mono=time.monotonic(),
                generation_s=self._rng.uniform(low, high) / config.speed,
            )
            self.tasks[task.id] = task
            self.counts["creates"] += 1
            if callback:
                self.creates_by_callback[callback_key(callback)] += 1
            elif request.get("async") is not True:
                self.counts["sync_creates"] += 1
            if callback and self.chance(config.early_callback_rate):
                # A lie: "succeed" while the task still runs, its URL not served yet.
                self.counts["callbacks_early"] += 1
                self._queue(task.callback_url or "", self._callback_body(task, lie=True))
            fault = None
            if self.chance(config.create_answer_loss_rate):
                fault = "lost"
                self.counts["answers_lost"] += 1
            self._wake.notify_all()
            return task, fault

    def retrieve(self, task_id: str) -> dict[str, Any] | None:
        with self.lock:
            self.counts["retrieves"] += 1
            task = self.tasks.get(task_id)
            return None if task is None else task.item()

    def retrieve_batch(self, ids: list[str]) -> dict[str, Any]:
        with self.lock:
            self.counts["batch_retrieves"] += 1
            self.counts["batch_ids_asked"] += len(ids)
            items = []
            for task_id in ids:
                task = self.tasks.get(task_id)
                if task is None or self.chance(self.config.batch_missing_rate):
                    self.counts["batch_ids_missing"] += 1
                    continue
                items.append(task.item())
            return {"items": items, "count": len(items)}

    def media(self, task_id: str) -> Task | None:
        with self.lock:
            task = self.tasks.get(task_id)
            return task if task is not None and task.state == "succeed" else None

    # -- the scheduler and callbacks --------------------------------------------------------------

    def _schedule(self) -> None:
        with self.lock:
            while not self._stopping.is_set():
                now = time.monotonic()
                for task in self.tasks.values():
                    if task.state == "processing" and now >= task.created_mono + task.generation_s:
                        self._end(task)
                self._wake.wait(timeout=0.01)

    def _end(self, task: Task) -> None:
        failed = self.chance(self.config.failure_rate)
        task.state = "failed" if failed else "succeed"
        task.ended, task.ended_wall = time.monotonic(), time.time()
        self.counts["failed" if failed else "succeeded"] += 1
        if not failed:
            task.video_id = uuid.UUID(int=self._rng.getrandbits(128)).hex[:16]
            task.video_url = f"{self.media_base_url}/files/{task.id}/output.mp4"
        task.done.set()
        if task.callback_url:
            if self.chance(self.config.callback_loss_rate):
                self.counts["callbacks_lost"] += 1
                return
            wrong = not failed and self.chance(self.config.wrong_url_rate)
            if wrong:
                self.counts["callbacks_wrong_url"] += 1
            body = self._callback_body(task, wrong_url=wrong)
            copies = 2 if self.chance(self.config.callback_duplicate_rate) else 1
            if copies == 2:
                self.counts["callbacks_duplicated"] += 1
            for copy in range(copies):
                self._queue(task.callback_url, body, copy * 0.02)

    def _callback_body(self, task: Task, *, lie: bool = False, wrong_url: bool = False) -> bytes:
        if lie:
            body: dict[str, Any] = {
                "success": True,
                "task_id": task.id,
                "video_id": "early",
                "video_url": f"{self.media_base_url}/files/{task.id}/output.mp4",
                "duration": task.request.get("duration", 5),
                "state": "succeed",
            }
        else:
            body = task.response() or {}
        if wrong_url:
            body["video_url"] = f"{self.media_base_url}/files/{uuid.uuid4()}/output.mp4"
        return json.dumps(body).encode()

    def _queue(self, url: str, body: bytes, later: float = 0.0) -> None:
        self._seq += 1
        due = time.monotonic() + self.config.callback_delay_s + later
        heapq.heappush(self._deliveries, _Delivery(due, self._seq, url, body))
        self._wake.notify_all()

    def _deliver(self) -> None:
        while not self._stopping.is_set():
            with self.lock:
                item = None
                if self._deliveries and self._deliveries[0].due <= time.monotonic():
                    item = heapq.heappop(self._deliveries)
                if item is None:
                    wait = self._deliveries[0].due - time.monotonic() if self._deliveries else 0.5
                    self._wake.wait(timeout=min(max(wait, 0.001), 0.05))
                    continue
                attempts = self.config.callback_attempts
            delivered = self._post(item)
            with self.lock:
                self.counts["callbacks_sent"] += 1
                if delivered:
                    self.counts["callbacks_delivered"] += 1
                elif item.attempt < attempts:
                    item.attempt += 1
                    item.due = time.monotonic() + 0.05 * 2**item.attempt
                    heapq.heappush(self._deliveries, item)
                else:
                    self.counts["callbacks_failed"] += 1

    def _post(self, item: _Delivery) -> bool:
        try:
            response = self._http.post(item.url, content=item.body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            log.debug("callback to %s failed: %s", callback_key(item.url), type(exc).__name__)
            return False
        return 200 <= response.status_code < 300

    def outcomes_by_callback(self) -> dict[str, list[dict[str, Any]]]:
        """Callback key (the job's path) -> each task made under it: its id, state, and whether it made a
        video (succeed). What a chaos row holds each job's end against."""
        with self.lock:
            made: dict[str, list[dict[str, Any]]] = {}
            for task in sorted(self.tasks.values(), key=lambda t: t.created_mono):
                if task.callback_url:
                    made.setdefault(callback_key(task.callback_url), []).append(
                        {"id": task.id, "status": task.state, "video": task.state == "succeed"}
                    )
            return made

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                **{key: self.counts.get(key, 0) for key in COUNTED},
                "tasks": len(self.tasks),
                "processing": sum(1 for t in self.tasks.values() if t.state == "processing"),
                "creates_by_callback": dict(self.creates_by_callback),
                "max_creates_per_callback": max(self.creates_by_callback.values(), default=0),
                "pending_callbacks": len(self._deliveries),
            }
