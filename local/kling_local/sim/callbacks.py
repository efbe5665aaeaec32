"""Callback delivery: background workers POST bare task objects, with loss, duplication,
reordering and delay knobs, and never let a slow or dead receiver touch the API or the task.

Each task's callbacks go to one worker (hash of the task id) and leave in due-time order, so with
every knob at zero a receiver sees submitted, processing, then the final status. Reordering holds
a non-final callback back until the task's next one has been queued.

Signed callbacks (Kling, 2026: Standard Webhooks, when the account has a webhook secret): each event
has one `webhook-id`, the same on every copy (a duplicate is a re-delivery of the same event); each
delivery is signed when it leaves, with a fresh `webhook-timestamp`, by every secret given (the
current and, in a rotation window, the previous: signatures space-separated).
"""

from __future__ import annotations

import heapq
import http.client
import logging
import random
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from kling_local.sim.config import SimConfig

log = logging.getLogger("kling_local.sim.callbacks")

USER_AGENT = "Kling-Callback/1.0 (kling_local simulator)"


@dataclass(frozen=True)
class Message:
    """One callback event: where it goes, its body, and how it is signed (no secrets: unsigned)."""

    url: str
    body: bytes
    webhook_id: str = ""
    secrets: tuple[str, ...] = ()


def signature_headers(message: Message, now: float | None = None) -> dict[str, str]:
    """Standard Webhooks headers for one delivery of `message` (none when it has no secret)."""
    if not message.secrets:
        return {}
    stamp = datetime.fromtimestamp(int(time.time() if now is None else now), tz=UTC)
    signatures = " ".join(Webhook(secret).sign(message.webhook_id, stamp, message.body) for secret in message.secrets)
    return {
        "webhook-id": message.webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signatures,
    }


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    message: Message = field(compare=False)
    task_id: str = field(compare=False)


class CallbackDispatcher:
    """Queues callbacks per worker and delivers them when due; counts everything it does."""

    def __init__(self, workers: int = 4) -> None:
        self._lock = threading.Lock()
        self._workers = max(1, workers)
        self._heaps: list[list[_Delivery]] = [[] for _ in range(self._workers)]
        self._conds = [threading.Condition(self._lock) for _ in range(self._workers)]
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self._last_due: dict[str, float] = {}
        self._held: dict[str, list[tuple[Message, int]]] = {}
        self._timeout_s = 5.0
        self._stopping = False
        self.counts: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, args=(index,), name=f"kling-sim-callback-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            for cond in self._conds:
                cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads.clear()

    def reset(self) -> None:
        """Forget queued callbacks and counters (POST /_sim/reset)."""
        with self._lock:
            for heap in self._heaps:
                heap.clear()
            self._last_due.clear()
            self._held.clear()
            self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            keys = (
                "events",
                "sent",
                "delivered",
                "failed",
                "dropped",
                "duplicated",
                "reordered",
                "delayed",
                "signed",
                "unsigned",
            )
            data = {key: self.counts.get(key, 0) for key in keys}
            data["pending"] = sum(len(h) for h in self._heaps) + sum(len(v) for v in self._held.values())
            return data

    # -- queueing --------------------------------------------------------------------------------

    def submit(self, task_id: str, message: Message, *, final: bool, config: SimConfig, rng: random.Random) -> None:
        """Queue one status-change callback, applying the loss/dup/reorder/delay knobs."""
        with self._lock:
            self._timeout_s = config.callback_timeout_s
            self.counts["events"] += 1
            self.counts["signed" if message.secrets else "unsigned"] += 1
            copies = 1
            if rng.random() < config.callback_dup_rate:
                copies = 2
                self.counts["duplicated"] += 1
            if rng.random() < config.callback_loss_rate:
                self.counts["dropped"] += 1
                copies = 0
            now = time.monotonic()
            low, high = config.callback_min_delay_s, max(config.callback_max_delay_s, config.callback_min_delay_s)
            delay = rng.uniform(low, high) if config.callback_max_delay_s > 0 else low
            if delay > 0 and copies:
                self.counts["delayed"] += 1
            hold = copies > 0 and not final and rng.random() < config.callback_reorder_rate
            if hold:
                self.counts["reordered"] += 1
                self._held.setdefault(task_id, []).append((message, copies))
            else:
                due = max(now + delay, self._last_due.get(task_id, 0.0))
                for _ in range(copies):
                    self._push(due, message, task_id)
                if copies or final:
                    for held, held_copies in self._held.pop(task_id, []):
                        for _ in range(held_copies):
                            self._push(due, held, task_id)
                self._last_due[task_id] = due
            if final:
                self._last_due.pop(task_id, None)
                self._held.pop(task_id, None)

    def _push(self, due: float, message: Message, task_id: str) -> None:
        self._seq += 1
        index = zlib.crc32(task_id.encode()) % self._workers
        heapq.heappush(self._heaps[index], _Delivery(due, self._seq, message, task_id))
        self._conds[index].notify()

    # -- delivery --------------------------------------------------------------------------------

    def _run(self, index: int) -> None:
        heap = self._heaps[index]
        cond = self._conds[index]
        while True:
            with self._lock:
                while not self._stopping:
                    now = time.monotonic()
                    if heap and heap[0].due <= now:
                        break
                    cond.wait(timeout=min(heap[0].due - now, 1.0) if heap else 1.0)
                if self._stopping:
                    return
                item = heapq.heappop(heap)
                timeout_s = self._timeout_s
                self.counts["sent"] += 1
            ok = self._deliver(item, timeout_s)
            with self._lock:
                self.counts["delivered" if ok else "failed"] += 1

    @staticmethod
    def _deliver(item: _Delivery, timeout_s: float) -> bool:
        """POST the body once; any failure is counted, logged at debug level and forgotten."""
        parts = urlsplit(item.message.url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn: http.client.HTTPConnection
        try:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout_s)
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=timeout_s)
            try:
                headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
                headers.update(signature_headers(item.message))
                conn.request("POST", path, body=item.message.body, headers=headers)
                response = conn.getresponse()
                response.read(65536)
                ok = 200 <= response.status < 300
                if not ok:
                    log.debug("callback for task %s answered HTTP %s", item.task_id, response.status)
                return ok
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            log.debug("callback for task %s failed: %s", item.task_id, type(exc).__name__)
            return False
