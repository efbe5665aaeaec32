"""The Replicate simulator's state: predictions, the account's slots, outcomes, webhooks and counters, behind
one lock; a scheduler thread moves predictions along (and deletes outputs after the simulated hour) and a
webhook thread delivers (and loses, and repeats with the same webhook-id).

A prediction's life: `starting` (a cold boot, or waiting for a slot under `concurrency_limit`) ->
`processing` (its generation time) -> `succeeded` (one output URL on the media host) or `failed`
(`failure_rate`). `Cancel-After` (divided by `speed`) aborts one still `starting` (not billed) and
cancels one `processing`; a cancel does the same by hand. `output_lifetime_s` (divided by `speed`) after
it ends, its input and output are deleted (`data_removed`), and the media host answers 404.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from kling_local.replicate_sim.config import ReplicateSimConfig

log = logging.getLogger("kling_local.replicate_sim")
ENDED = ("succeeded", "failed", "canceled", "aborted")
COUNTED = (
    "creates",
    "answers_lost",
    "answers_500",
    "refused",
    "gets",
    "list_pages",
    "cancels",
    "throttled",
    "unauthorized",
    "secret_reads",
    "succeeded",
    "failed",
    "canceled",
    "aborted",
    "billed",
    "outputs_deleted",
    "media_gone",
    "webhooks_sent",
    "webhooks_delivered",
    "webhooks_failed",
    "webhooks_lost",
    "webhooks_duplicated",
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_cancel_after(value: str | None) -> float | None:
    """`Cancel-After` ("3600s", "1h30m", "90") in seconds; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def webhook_key(url: str) -> str:
    """A webhook URL without its query (our token): one key per job."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


@dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    webhook: str | None
    events_filter: list[str]
    created: float  # wall epoch (created_at)
    created_mono: float
    start_s: float  # the cold boot, wall seconds
    generation_s: float
    deadline: float | None  # monotonic, from Cancel-After
    seq: int
    status: str = "starting"
    started: float | None = None  # monotonic
    started_wall: float | None = None
    ended: float | None = None  # monotonic
    ended_wall: float | None = None
    output: str | None = None
    error: str | None = None
    data_removed: bool = False
    billed: bool = False

    def doc(self, base_url: str) -> dict[str, Any]:
        """The prediction as Replicate's API shows it."""
        urls = {
            "get": f"{base_url}/v1/predictions/{self.id}",
            "cancel": f"{base_url}/v1/predictions/{self.id}/cancel",
            "web": f"https://replicate.com/p/{self.id}",
        }
        return {
            "id": self.id,
            "model": self.model,
            "version": "hidden",
            "input": {} if self.data_removed else self.input,
            "output": self.output,
            "error": self.error,
            "logs": "",
            "status": self.status,
            "source": "api",
            "data_removed": self.data_removed,
            "created_at": iso(self.created),
            "started_at": iso(self.started_wall),
            "completed_at": iso(self.ended_wall),
            "urls": urls,
            "webhook": self.webhook,
            "webhook_events_filter": self.events_filter,
            "metrics": {
                "predict_time": None if self.ended is None or self.started is None else self.ended - self.started
            },
        }


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    webhook_id: str = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=1, compare=False)


class ReplicateState:
    """Everything the simulator knows, behind `lock`."""

    def __init__(self, config: ReplicateSimConfig) -> None:
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
            self.predictions: dict[str, Prediction] = {}
            self.counts: Counter[str] = Counter()
            self.creates_by_webhook: Counter[str] = Counter()
            self._deliveries: list[_Delivery] = []
            self._seq = 0

    def start(self) -> None:
        for name, target in (("replicate-sim-scheduler", self._schedule), ("replicate-sim-webhooks", self._deliver)):
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

    def configure(self, knobs: Mapping[str, Any]) -> ReplicateSimConfig:
        with self.lock:
            self.config = self.config.with_changes(dict(knobs))
            if "seed" in knobs:
                self._rng = random.Random(self.config.seed)
                self._faults = random.Random(None if self.config.seed is None else f"{self.config.seed}/faults")
            self._wake.notify_all()
            return self.config

    def chance(self, probability: float) -> bool:
        return probability > 0 and self._faults.random() < probability

    def throttled(self) -> bool:
        with self.lock:
            if self.chance(self.config.throttle_rate):
                self.counts["throttled"] += 1
                return True
            return False

    # -- the API ----------------------------------------------------------------------------------

    def create(
        self, model: str, body: Mapping[str, Any], cancel_after_s: float | None
    ) -> tuple[Prediction, str | None]:
        """A new prediction and how its answer goes wrong ("lost", "500"; None: it does not)."""
        with self.lock:
            config = self.config
            self._seq += 1
            low, high = sorted((config.generation_min_s, config.generation_max_s))
            start_low, start_high = sorted((config.start_min_s, config.start_max_s))
            now = time.monotonic()
            webhook = body.get("webhook") if isinstance(body.get("webhook"), str) else None
            events = body.get("webhook_events_filter")
            prediction = Prediction(
                id=uuid.UUID(int=self._rng.getrandbits(128)).hex[:26],
                model=model,
                input=dict(body.get("input") or {}),
                webhook=webhook,
                events_filter=list(events) if isinstance(events, list) else ["start", "output", "logs", "completed"],
                created=time.time(),
                created_mono=now,
                start_s=self._rng.uniform(start_low, start_high) / config.speed,
                generation_s=self._rng.uniform(low, high) / config.speed,
                deadline=None
                if cancel_after_s is None
                else now + cancel_after_s / (1.0 if config.cancel_after_wall_clock else config.speed),
                seq=self._seq,
            )
            self.predictions[prediction.id] = prediction
            self.counts["creates"] += 1
            if webhook:
                self.creates_by_webhook[webhook_key(webhook)] += 1
            fault = None
            if self.chance(config.create_answer_loss_rate):
                fault = "lost"
                self.counts["answers_lost"] += 1
            elif self.chance(config.create_5xx_rate):
                fault = "500"
                self.counts["answers_500"] += 1
            self._wake.notify_all()
            return prediction, fault

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self.lock:
            self.counts["gets"] += 1
            prediction = self.predictions.get(prediction_id)
            return None if prediction is None else prediction.doc(self.base_url)

    def page(self, cursor: int | None) -> dict[str, Any]:
        """One page of the list, newest first; the cursor is the last seq shown."""
        with self.lock:
            self.counts["list_pages"] += 1
            ordered = sorted(self.predictions.values(), key=lambda p: p.seq, reverse=True)
            if cursor is not None:
                ordered = [p for p in ordered if p.seq < cursor]
            shown = ordered[: self.config.page_size]
            more = len(ordered) > len(shown)
            following = f"{self.base_url}/v1/predictions?cursor={shown[-1].seq}" if more and shown else None
            return {"previous": None, "next": following, "results": [p.doc(self.base_url) for p in shown]}

    def cancel(self, prediction_id: str) -> dict[str, Any] | None:
        with self.lock:
            self.counts["cancels"] += 1
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return None
            if prediction.status == "starting":
                self._end(prediction, "canceled", billed=False)
            elif prediction.status == "processing":
                self._end(prediction, "canceled", billed=True)  # the unkind reading: its time so far is billed
            return prediction.doc(self.base_url)

    def media(self, prediction_id: str) -> Prediction | None:
        with self.lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None or prediction.output is None:
                self.counts["media_gone"] += 1
                return None
            return prediction

    def secret(self) -> str:
        with self.lock:
            self.counts["secret_reads"] += 1
            return self.config.webhook_secret

    # -- the scheduler ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        with self.lock:
            while not self._stopping.is_set():
                self._tick(time.monotonic())
                self._wake.wait(timeout=0.01)

    def _tick(self, now: float) -> None:
        config = self.config
        running = sum(1 for p in self.predictions.values() if p.status == "processing")
        for prediction in sorted(self.predictions.values(), key=lambda p: p.seq):
            if prediction.status == "starting":
                if prediction.deadline is not None and now >= prediction.deadline:
                    self._end(prediction, "aborted", billed=False)
                elif now >= prediction.created_mono + prediction.start_s and (
                    config.concurrency_limit == 0 or running < config.concurrency_limit
                ):
                    prediction.status = "processing"
                    prediction.started, prediction.started_wall = now, time.time()
                    running += 1
            elif prediction.status == "processing":
                assert prediction.started is not None
                if prediction.deadline is not None and now >= prediction.deadline:
                    self._end(prediction, "canceled", billed=True)
                    running -= 1
                elif now >= prediction.started + prediction.generation_s:
                    failed = self.chance(config.failure_rate)
                    self._end(prediction, "failed" if failed else "succeeded", billed=not failed)
                    running -= 1
            elif (
                not prediction.data_removed
                and prediction.ended is not None
                and now >= prediction.ended + config.output_lifetime_s / config.speed
            ):
                prediction.data_removed = True
                prediction.output = None
                self.counts["outputs_deleted"] += 1

    def _end(self, prediction: Prediction, status: str, *, billed: bool) -> None:
        prediction.status = status
        prediction.ended, prediction.ended_wall = time.monotonic(), time.time()
        if status == "succeeded":
            prediction.output = f"{self.media_base_url}/files/{prediction.id}/output.mp4"
        elif status == "failed":
            prediction.error = "E6716: the model could not make this video (simulated)"
        prediction.billed = billed
        self.counts[status] += 1
        if billed:
            self.counts["billed"] += 1
        if prediction.webhook and "completed" in prediction.events_filter:
            self._send_webhook(prediction)
        self._wake.notify_all()

    # -- webhooks ---------------------------------------------------------------------------------

    def _send_webhook(self, prediction: Prediction) -> None:
        assert prediction.webhook is not None
        if self.chance(self.config.webhook_loss_rate):
            self.counts["webhooks_lost"] += 1
            return
        copies = 2 if self.chance(self.config.webhook_duplicate_rate) else 1
        if copies == 2:
            self.counts["webhooks_duplicated"] += 1
        body = json.dumps(prediction.doc(self.base_url)).encode()
        webhook_id = f"msg_{uuid.UUID(int=self._rng.getrandbits(128)).hex}"
        for copy in range(copies):
            self._seq += 1
            due = time.monotonic() + self.config.webhook_delay_s + copy * 0.02
            heapq.heappush(self._deliveries, _Delivery(due, self._seq, webhook_id, prediction.webhook, body))

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
                signer = Webhook(self.config.webhook_secret)
                attempts = self.config.webhook_attempts
            at = datetime.now(UTC)
            headers = {
                "webhook-id": item.webhook_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signer.sign(item.webhook_id, at, item.body),
                "Content-Type": "application/json",
            }
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
            # Replicate does not follow redirects: a 3xx loses the webhook (it is not 2xx).
            response = self._http.post(item.url, content=item.body, headers=headers)
        except httpx.HTTPError as exc:
            log.debug("webhook to %s failed: %s", webhook_key(item.url), type(exc).__name__)
            return False
        return 200 <= response.status_code < 300

    def outcomes_by_webhook(self) -> dict[str, list[dict[str, Any]]]:
        """Webhook key (the job's path) -> each prediction made under it: its id, status, and whether it made a
        video (succeeded). What a chaos row holds each job's end against."""
        with self.lock:
            made: dict[str, list[dict[str, Any]]] = {}
            for prediction in sorted(self.predictions.values(), key=lambda p: p.seq):
                if prediction.webhook:
                    made.setdefault(webhook_key(prediction.webhook), []).append(
                        {"id": prediction.id, "status": prediction.status, "video": prediction.status == "succeeded"}
                    )
            return made

    def stats(self) -> dict[str, Any]:
        with self.lock:
            by_status = Counter(p.status for p in self.predictions.values())
            return {
                **{key: self.counts.get(key, 0) for key in COUNTED},
                "predictions": len(self.predictions),
                "starting": by_status.get("starting", 0),
                "processing": by_status.get("processing", 0),
                "creates_by_webhook": dict(self.creates_by_webhook),
                "max_creates_per_webhook": max(self.creates_by_webhook.values(), default=0),
                "pending_webhooks": len(self._deliveries),
            }
