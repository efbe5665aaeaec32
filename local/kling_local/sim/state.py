"""The simulated Kling account(s): tasks, their scheduled lifecycle, limits, charges and stats; the CDN
(cdn.py) and the fault dice (faults.py) sit behind this facade and its one lock.

One lock guards everything; every public method first moves due tasks forward (`_advance`), so
answers stay right even when the scheduler thread lags on a loaded machine.
"""

from __future__ import annotations

import builtins
import hashlib
import heapq
import json
import random
import re
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from kling_local.sim.callbacks import CallbackDispatcher, Message
from kling_local.sim.cdn import Cdn, CdnObject, base_url
from kling_local.sim.config import SimConfig
from kling_local.sim.errors import SimApiError, invalid
from kling_local.sim.faults import FaultDice
from kling_local.sim.fetch import describe_fetch
from kling_local.sim.media import ClipSpec, clip_mp4, iter_video
from kling_local.sim.slot_use import Span, slot_use
from kling_local.sim.tasks import (
    NEW_STATUS,
    Account,
    Billing,
    Task,
    Video,
    _ms,
    new_design_create_dict,
    new_design_dict,
)
from kling_local.sim.validation import (
    EXTENDABLE_MODELS,
    FIVE_OR_TEN_MODELS,
    TaskSpec,
    validate_create,
    validate_new_create,
)

MAX_EXTENDED_DURATION_S = 180.0
EXTEND_ADDS_S = 4.6
_ALNUM = string.ascii_letters + string.digits


# Called after a create made its task and before the answer is sent: (the answer's data, the client's
# address). The chaos suite kills the caller here ("a function killed between the create and its write").
CreateHook = Callable[[dict[str, Any], tuple[str, int]], None]

# The pack an account without a unit_budget has: large enough never to run out in a run.
UNLIMITED_PACK_UNITS = 1_000_000.0


def _sweep_key(task_id: str) -> str:
    """The order of POST /tasks pages: stable, and neither creation order nor status."""
    return hashlib.sha256(f"sweep/{task_id}".encode()).hexdigest()[:16] + task_id


class SimState:
    """Tasks, accounts and counters of one simulator; thread-safe."""

    def __init__(self, config: SimConfig) -> None:
        self._lock = threading.RLock()
        self._started_wall = time.time()
        self._cond = threading.Condition(self._lock)
        self._config = config
        self._dice = FaultDice(config.seed, self._started_wall)
        self._seed_rngs(config.seed)
        self._cdn = Cdn(secrets.token_bytes(32))
        self._events: list[tuple[float, int, str]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.cdn_address: tuple[str, int] = ("127.0.0.1", 0)
        self.callbacks = CallbackDispatcher(config.callback_workers)
        self.create_hooks: list[CreateHook] = []
        self._clear()

    def _clear(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._videos: dict[str, str] = {}  # video id -> task id
        self._accounts: dict[str, Account] = {}
        self._events.clear()
        self._calls: Counter[str] = Counter()
        self._queries = 0
        self._gets_per_task: Counter[str] = Counter()
        self._create_attempts_by_ext: Counter[str] = Counter()
        self._tasks_by_ext: Counter[str] = Counter()
        self._creates_accepted = 0
        self._creates_refused: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._units_charged = 0.0
        self._cdn.clear()
        self._dice.counts.clear()
        self._image_fetches: Counter[str] = Counter()
        self._recent_image_fetches: list[dict[str, Any]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.callbacks.start()
        self._thread = threading.Thread(target=self._run, name="kling-sim-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.callbacks.stop()

    def reset(self) -> None:
        with self._lock:
            self._clear()
        self.callbacks.reset()

    def _run(self) -> None:
        with self._cond:
            while not self._stopping:
                self._advance(time.monotonic())
                wait = 1.0
                if self._events:
                    wait = min(wait, max(0.0, self._events[0][0] - time.monotonic()))
                self._cond.wait(timeout=wait)

    # -- configuration ---------------------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        return self._config

    def configure(self, knobs: dict[str, Any]) -> SimConfig:
        """Apply a partial update atomically (raises SimConfigError naming a bad knob)."""
        with self._lock:
            self._config = self._config.updated(knobs)
            if "outage_s" in knobs:
                self._dice.start_outage(self._config)
            if "seed" in knobs:
                self._seed_rngs(self._config.seed)
            self._cond.notify_all()
            return self._config

    def _seed_rngs(self, seed: int | None) -> None:
        """Separate streams, so that (say) a callback decision or a finishing task in between
        never shifts the task ids and outcomes that sequential creates get from a seed."""
        self._rng = random.Random(seed)
        self._dice.seed(seed)
        self._callback_rng = random.Random(None if seed is None else f"{seed}/callbacks")

    def chance(self, probability: float) -> bool:
        """A seeded coin flip, for faults the server decides."""
        with self._lock:
            return self._dice.chance(probability)

    def down(self) -> bool:
        """Whether Kling is in an outage (`outage_s`) right now."""
        with self._lock:
            return self._dice.down()

    def in_error_burst(self) -> bool:
        """Whether a periodic 5xxx burst (`error_burst_every_s`, `error_burst_s`) is on right now."""
        with self._lock:
            return self._dice.in_error_burst(self._config)

    def run_create_hooks(self, data: dict[str, Any], client: tuple[str, int]) -> None:
        for hook in list(self.create_hooks):
            hook(data, client)

    def pick(self, options: tuple[int, ...]) -> int:
        with self._lock:
            return self._dice.pick(options)

    # -- accounting of requests ------------------------------------------------------------------

    def record_call(self, endpoint: str, task_id: str | None = None, *, query: bool = False) -> None:
        """Count a request; `query`: it asks about tasks (a single look-up of either design, a batch, a sweep
        page or a legacy list page), what `kling_queries` sums."""
        with self._lock:
            self._calls[endpoint] += 1
            self._queries += int(query)
            if task_id is not None:
                self._gets_per_task[task_id] += 1

    def record_error(self, code: int) -> None:
        with self._lock:
            self._errors[str(code)] += 1

    def record_fault(self, name: str) -> None:
        with self._lock:
            self._dice.record(name)

    def cut_first(self, video: str, first: int) -> bool:
        """Whether this GET of the video is one of its first `first` (cdn_cut_first), counting it."""
        with self._lock:
            return self._cdn.cut_first(video, first)

    def record_cdn(self, event: str, amount: int = 1) -> None:
        with self._lock:
            self._cdn.record(event, amount)

    def record_image_fetch(self, url: str, *, ok: bool) -> None:
        with self._lock:
            self._image_fetches["ok" if ok else "failed"] += 1
            self._recent_image_fetches = [*self._recent_image_fetches[-19:], describe_fetch(url) | {"ok": ok}]

    def record_refused_create(self, code: int) -> None:
        """A create refused before it reached the state (an image URL that could not be fetched)."""
        with self._lock:
            self._creates_refused[str(code)] += 1

    def check_rate(self, account: str) -> None:
        """Token bucket per account: `rate_limit_per_s` tokens a second, burst of the same size."""
        with self._lock:
            limit = self._config.rate_limit_per_s
            if limit <= 0:
                return
            acct = self._account(account)
            now = time.monotonic()
            capacity = max(1.0, limit)
            if acct.tokens_at == 0.0:
                acct.tokens = capacity
            else:
                acct.tokens = min(capacity, acct.tokens + (now - acct.tokens_at) * limit)
            acct.tokens_at = now
            if acct.tokens < 1.0:
                raise SimApiError(1302)
            acct.tokens -= 1.0

    def resource_packs(self, account: str) -> list[dict[str, Any]]:
        """The account's one resource pack, as `GET /account/costs` lists it: `unit_budget` units (or
        UNLIMITED_PACK_UNITS without one), less what its tasks hold (running ones included, as Kling
        deducts at the create and gives a failed task's units back)."""
        with self._lock:
            acct = self._account(account)
            budget = self._config.unit_budget
            total = UNLIMITED_PACK_UNITS if budget is None else budget
            remaining = max(0.0, total - acct.units_committed)
            started = _ms(self._started_wall)
            return [
                {
                    "resource_pack_name": "simulator video pack",
                    "resource_pack_id": f"sim-{account[:8]}",
                    "resource_pack_type": "decreasing_total",
                    "total_quantity": total,
                    "remaining_quantity": remaining,
                    "purchase_time": started,
                    "effective_time": started,
                    "invalid_time": started + 365 * 86_400_000,
                    "status": "online" if remaining > 0 else "runOut",
                }
            ]

    def _account(self, account: str) -> Account:
        acct = self._accounts.get(account)
        if acct is None:
            acct = self._accounts[account] = Account()
        return acct

    # -- creates ---------------------------------------------------------------------------------

    def create(
        self,
        account: str,
        kind: str,
        body: Any,
        fetched: dict[str, tuple[int, int]] | None = None,
        *,
        route: str | None = None,
    ) -> dict[str, Any]:
        """Validate and accept a create, or raise SimApiError; returns the answer's `data`. `fetched`:
        the sizes of its image URLs, fetched before (sim.fetch). `route`: a newer-design create
        (`<product>/<model>`), which one task engine serves beside the legacy kinds."""
        with self._cond:
            holder = body.get("options") if route is not None and isinstance(body, dict) else body
            external = holder.get("external_task_id") if isinstance(holder, dict) else None
            if isinstance(external, str) and external:
                self._create_attempts_by_ext[external] += 1
            try:
                task = self._create(account, kind, body, fetched, route)
            except SimApiError as exc:
                self._creates_refused[str(exc.code)] += 1
                raise
            self._creates_accepted += 1
            if task.spec.external_task_id is not None:
                self._tasks_by_ext[task.spec.external_task_id] += 1
            self._cond.notify_all()
            return new_design_create_dict(task) if task.new_design else task.create_dict()

    def _create(
        self, account: str, kind: str, body: Any, fetched: dict[str, tuple[int, int]] | None, route: str | None
    ) -> Task:
        config = self._config
        now = time.monotonic()
        self._advance(now)
        if route is not None:
            spec = validate_new_create(route, body, config, fetched)
        else:
            spec = validate_create(kind, body, config, fetched)
        if config.force_create_errors:
            code, *rest = config.force_create_errors
            self._config = config.updated({"force_create_errors": rest})
            self._dice.record("forced_create_error")
            raise SimApiError(code)
        marker = config.reject_marker
        if marker and (marker in spec.prompt or marker in spec.negative_prompt):
            raise SimApiError(1301)
        acct = self._account(account)
        if spec.external_task_id is not None and spec.external_task_id in acct.by_external_id:
            if config.refuse_reused_external_id:
                raise invalid(
                    config.reused_external_id_message
                    or f"external_task_id {spec.external_task_id!r} already exists in this account"
                )
            self._dice.record("external_task_id_reused")  # Kling's contract allows a second, billed task
        parent = self._source_video(account, spec, now)
        # Per account and model version (an extend's is its source video's), as Kling counts them.
        source = self._tasks[self._videos[parent["id"]]] if parent is not None else None
        pool = model_version(spec.model_name) if spec.model_name else (source.pool if source else "default")
        if config.concurrency_limit and acct.active_by_model.get(pool, 0) >= config.concurrency_limit:
            raise SimApiError(1303)
        units = self._units(spec, config)
        if config.unit_budget is not None and acct.units_committed + units > config.unit_budget + 1e-9:
            raise SimApiError(1102)

        generation = self._rng.uniform(config.generation_min_s, config.generation_max_s) / config.speed
        task = Task(
            task_id=self._new_task_id(),
            account=account,
            spec=spec,
            created_wall=time.time(),
            created_mono=now,
            processing_at=now + generation * config.submitted_fraction,
            done_at=now + generation,
            will_fail=self._rng.random() < config.fail_rate
            or bool(config.fail_marker and config.fail_marker in spec.prompt),
            fail_message=self._rng.choice(config.fail_messages),
            units=units,
            bucket=self._rng.randint(100, 999),
            result_duration_s=self._result_duration(spec, parent),
        )
        task.updated_wall = task.created_wall
        if parent is not None:
            task.parent_video = parent
            source = self._tasks[self._videos[parent["id"]]]
            task.source_model = source.spec.model_name or source.source_model
            task.source_aspect = source.source_aspect or source.spec.aspect_ratio
        self._tasks[task.task_id] = task
        acct.tasks.append(task.task_id)
        if spec.external_task_id is not None:
            acct.by_external_id.setdefault(spec.external_task_id, []).append(task.task_id)
        task.pool = pool
        acct.active += 1
        acct.active_by_model[pool] = acct.active_by_model.get(pool, 0) + 1
        acct.high_water = max(acct.high_water, acct.active_by_model[pool])
        acct.units_committed += units
        self._schedule(task.processing_at, task.task_id)
        self._callback(task)
        return task

    def _source_video(self, account: str, spec: TaskSpec, now: float) -> dict[str, str] | None:
        """video-extend / lip-sync: the source must be a live video of a succeeded task of this account."""
        if spec.source_video_id is None:
            return None
        field_name = "video_id" if spec.kind == "video-extend" else "input.video_id"
        task_id = self._videos.get(spec.source_video_id)
        source = self._tasks.get(task_id) if task_id else None
        if source is None or source.account != account or source.status != "succeed":
            raise invalid(f"{field_name} {spec.source_video_id[:64]!r} is not a video of a succeeded task")
        if source.expires_wall is not None and time.time() >= source.expires_wall:
            raise invalid(f"{field_name} {spec.source_video_id[:64]!r} has expired (videos are kept 30 days)")
        made_by = source.spec.model_name or source.source_model
        if (
            spec.kind == "video-extend"
            and made_by is not None
            and made_by not in EXTENDABLE_MODELS
            and (made_by in FIVE_OR_TEN_MODELS or made_by.startswith(("kling-v3", "kling-video")))
        ):
            raise invalid(f"video_id {spec.source_video_id[:64]!r}: only videos of kling-v1/v1-5/v1-6 extend")
        video = next(v for v in source.videos if v.id == spec.source_video_id)
        if spec.kind == "video-extend" and float(video.duration) + EXTEND_ADDS_S > MAX_EXTENDED_DURATION_S:
            raise invalid(f"video_id {video.id!r}: an extended video can be at most 3 minutes long")
        return {"id": video.id, "url": video.url, "duration": video.duration}

    @staticmethod
    def _units(spec: TaskSpec, config: SimConfig) -> float:
        units = config.units_std_5s * int(spec.duration) / 5  # 10 s doubles it
        if spec.mode == "pro":
            units *= 2
        return units

    @staticmethod
    def _result_duration(spec: TaskSpec, parent: dict[str, str] | None) -> float:
        if spec.kind == "video-extend" and parent is not None:
            return round(float(parent["duration"]) + EXTEND_ADDS_S, 1)
        if spec.kind == "lip-sync" and parent is not None:
            return float(parent["duration"])
        return int(spec.duration) + 0.1

    def _new_task_id(self) -> str:
        while True:
            if self._rng.random() < 0.5:
                task_id = str(self._rng.randint(7 * 10**17, 9 * 10**17 - 1))
            else:
                task_id = "".join(self._rng.choice(_ALNUM) for _ in range(22))
            if task_id not in self._tasks:
                return task_id

    # -- the lifecycle ---------------------------------------------------------------------------

    def _schedule(self, due: float, task_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._events, (due, self._seq, task_id))

    def _advance(self, now: float) -> None:
        """Apply every status change due by `now` (called with the lock held)."""
        while self._events and self._events[0][0] <= now:
            due, _, task_id = heapq.heappop(self._events)
            task = self._tasks.get(task_id)
            if task is None or task.terminal:
                continue
            if task.status == "submitted":
                task.status = "processing"
                task.updated_wall = task.wall_at(due)
                self._schedule(task.done_at, task.task_id)
            else:
                self._finish(task, due)
            self._callback(task)

    def _finish(self, task: Task, due: float) -> None:
        config = self._config
        acct = self._account(task.account)
        acct.active -= 1
        acct.active_by_model[task.pool] -= 1
        task.updated_wall = task.ended_wall = task.wall_at(due)
        if task.will_fail:
            task.status = "failed"
            task.status_msg = task.fail_message
            acct.units_committed -= task.units
            return
        task.status = "succeed"
        task.expires_wall = task.ended_wall + config.url_lifetime_s / config.speed
        if config.video_size_bytes is None:
            task.clip = ClipSpec(
                task_id=task.task_id,
                kind=task.kind,
                model=task.spec.model_name or task.source_model or "kling",
                prompt=task.spec.prompt,
                seconds=task.result_duration_s,
                aspect_ratio=task.source_aspect or task.spec.aspect_ratio,
                sound=task.spec.sound,
            )
        else:
            task.video_size = config.video_size_bytes
        video_id = hashlib.sha256(f"{self._config.seed}/{task.task_id}/video".encode()).hexdigest()
        video_id = f"{video_id[:8]}-{video_id[8:12]}-{video_id[12:16]}-{video_id[16:20]}-{video_id[20:]}"
        url = self._cdn.video_url(task, self._config.result_url_base or self.cdn_base_url())
        watermark = url.replace("_raw_video_1.mp4", "_raw_video_1_wm.mp4") if task.spec.watermark else None
        task.videos = [Video(video_id, url, f"{task.result_duration_s:.1f}", watermark)]
        self._videos[video_id] = task.task_id
        self._units_charged += task.units

    def _callback(self, task: Task) -> None:
        if task.spec.callback_url is None:
            return
        if self._dice.down():
            self._dice.record("callback_lost_in_outage")
            return
        data = new_design_dict(task, self._billing()) if task.new_design else task.to_dict()
        body = json.dumps(data, separators=(",", ":")).encode()
        secrets_ = self._config.webhook_secrets()
        if (
            secrets_
            and self._config.unsigned_callback_rate
            and self._callback_rng.random() < (self._config.unsigned_callback_rate)
        ):
            secrets_ = ()  # a console without a secret: this event goes unsigned
        # One id per event (this task reaching this status): every copy of it carries the same webhook-id.
        event = hashlib.sha256(f"{self._config.seed}/{task.task_id}/{task.status}".encode()).hexdigest()
        message = Message(task.spec.callback_url, body, str(int(event[:15], 16)), secrets_)
        self.callbacks.submit(task.task_id, message, final=task.terminal, config=self._config, rng=self._callback_rng)

    def _billing(self) -> Billing:
        return Billing(self._config.billing_currency, self._config.cash_per_unit)

    # -- queries ---------------------------------------------------------------------------------

    def _visible(self, task: Task, now: float) -> bool:
        """Queries do not see a task for `query_lag_s` after its create (eventual consistency)."""
        lag = self._config.query_lag_s
        if lag > 0 and now - task.created_mono < lag:
            self._dice.record("query_lag_hidden")
            return False
        return True

    def get(self, account: str, kind: str, task_id: str) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            self._advance(now)
            task = self._tasks.get(task_id)
            if (
                task is None
                or task.account != account
                or task.kind != kind
                or task.new_design  # the legacy paths know legacy tasks only (not documented: the worst case)
                or not self._visible(task, now)
            ):
                raise SimApiError(1203, f"task {task_id[:64]!r} does not exist")
            return task.to_dict()

    def find_external(self, account: str, kind: str, external_task_id: str) -> dict[str, Any]:
        """The oldest visible task with this external id (a reused id hides the later ones)."""
        with self._lock:
            now = time.monotonic()
            self._advance(now)
            config = self._config
            if config.force_lookup_errors:
                code, *rest = config.force_lookup_errors
                self._config = config.updated({"force_lookup_errors": rest})
                self._dice.record("forced_lookup_error")
                raise SimApiError(code)
            for task_id in self._account(account).by_external_id.get(external_task_id, []):
                task = self._tasks[task_id]
                if task.kind == kind and not task.new_design and self._visible(task, now):
                    return task.to_dict()
            raise SimApiError(1203, f"no task with external_task_id {external_task_id[:64]!r}")

    def list(self, account: str, kind: str, page_num: int, page_size: int) -> list[dict[str, Any]]:
        """Visible tasks of one kind, newest first, one page."""
        with self._lock:
            now = time.monotonic()
            self._advance(now)
            ids = [
                t
                for t in reversed(self._account(account).tasks)
                if self._tasks[t].kind == kind and not self._tasks[t].new_design and self._visible(self._tasks[t], now)
            ]
            start = (page_num - 1) * page_size
            return [self._tasks[t].to_dict() for t in ids[start : start + page_size]]

    def _in_tasks_api(self, task: Task, account: str, now: float) -> bool:
        """Whether /tasks shows this task: the account's, visible yet, and newer-design unless
        `tasks_include_legacy` (whether legacy tasks appear there is not documented)."""
        return (
            task.account == account
            and (task.new_design or self._config.tasks_include_legacy)
            and self._visible(task, now)
        )

    def tasks_by_ids(self, account: str, ids: Sequence[str], *, external: bool) -> builtins.list[dict[str, Any]]:
        """GET /tasks?task_ids= | external_task_ids=: the tasks found, in the order asked; a missing id is
        simply absent, and a reused external id answers every task made with it."""
        with self._lock:
            now = time.monotonic()
            self._advance(now)
            config = self._config
            if external and config.force_lookup_errors:
                code, *rest = config.force_lookup_errors
                self._config = config.updated({"force_lookup_errors": rest})
                self._dice.record("forced_lookup_error")
                raise SimApiError(code)
            acct = self._account(account)
            found: builtins.list[Task] = []
            for wanted in ids:
                candidates = acct.by_external_id.get(wanted, []) if external else [wanted]
                for task_id in candidates:
                    task = self._tasks.get(task_id)
                    if task is not None and self._in_tasks_api(task, account, now) and task not in found:
                        found.append(task)
            billing = self._billing()
            return [new_design_dict(task, billing) for task in found]

    def sweep(
        self,
        account: str,
        start_ms: int,
        end_ms: int,
        after: str | None,
        limit: int,
        statuses: set[str] | None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """POST /tasks: tasks created in [start_ms, end_ms], `limit` a page, in an order Kling does not
        promise (here: by a hash of the task id, so neither creation nor status order). `after`: the last
        key of the previous page (the cursor's), so a task created mid-sweep never shifts a page.
        Returns the page and the last key when more follow."""
        with self._lock:
            now = time.monotonic()
            self._advance(now)
            billing = self._billing()
            keyed = []
            for task_id in self._account(account).tasks:
                task = self._tasks[task_id]
                if not self._in_tasks_api(task, account, now):
                    continue
                if not start_ms <= _ms(task.created_wall) <= end_ms:
                    continue
                if statuses is not None and NEW_STATUS[task.status] not in statuses:
                    continue
                key = _sweep_key(task_id)
                if after is None or key > after:
                    keyed.append((key, task))
            keyed.sort(key=lambda pair: pair[0])
            page = keyed[:limit]
            more = len(keyed) > limit
            return [new_design_dict(task, billing) for _, task in page], page[-1][0] if more else None

    # -- the CDN ---------------------------------------------------------------------------------

    def callback_url(self, task_id: str) -> str | None:
        """The callback URL a task was created with (what Kling holds: the chaos suite forges with it)."""
        with self._lock:
            task = self._tasks.get(task_id)
            return task.spec.callback_url if task is not None else None

    def task_object(self, task_id: str) -> dict[str, Any] | None:
        """A task as queries answer it, without counting a call (the chaos suite replays such bodies)."""
        with self._lock:
            self._advance(time.monotonic())
            task = self._tasks.get(task_id)
            return task.to_dict() if task is not None else None

    def video_sha256(self, task_id: str) -> str | None:
        """SHA-256 of the video a succeeded task's URL serves: what a copy of it in S3 must hash to."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.status != "succeed":
                return None
            clip, seed, size = task.clip, task.task_id, task.video_size
        digest = hashlib.sha256()
        if clip is not None:
            digest.update(clip_mp4(clip))
        else:
            for chunk in iter_video(seed, size):
                digest.update(chunk)
        return digest.hexdigest()

    def cdn_base_url(self) -> str:
        """Base of result URLs: the CDN port, on `cdn_host` when configured."""
        host, port = self.cdn_address
        return base_url(self._config.cdn_host or host, port)

    def resolve_cdn(self, path: str, query: str) -> CdnObject:
        """The video behind a result URL, or CdnRefusal: 404 unknown/expired, 403 bad or missing pkey."""
        with self._lock:
            self._advance(time.monotonic())
            return self._cdn.resolve(path, query, self._tasks, self._config, self._dice)

    # -- inspection ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Everything tests and benchmarks count; the body of GET /_sim/stats."""
        with self._lock:
            self._advance(time.monotonic())
            by_status = Counter(t.status for t in self._tasks.values())
            limit = self._config.concurrency_limit
            return {
                "calls": dict(self._calls),
                "calls_total": sum(self._calls.values()),
                # Every query call, whatever its design or width: single look-ups, batches, sweep and list pages.
                "kling_queries": self._queries,
                "gets_per_task": dict(self._gets_per_task),
                "create_attempts_by_external_task_id": dict(self._create_attempts_by_ext),
                "tasks_by_external_task_id": dict(self._tasks_by_ext),
                # External ids with more than one task: each extra task was paid for twice.
                "double_charged_external_ids": sum(1 for n in self._tasks_by_ext.values() if n > 1),
                "creates": {
                    "accepted": self._creates_accepted,
                    "refused": sum(self._creates_refused.values()),
                    "refused_by_code": dict(self._creates_refused),
                },
                "errors_by_code": dict(self._errors),
                "faults": dict(self._dice.counts),
                "image_fetches": {
                    "ok": self._image_fetches["ok"],
                    "failed": self._image_fetches["failed"],
                    "recent": list(self._recent_image_fetches),
                },
                "callbacks": self.callbacks.snapshot(),
                "units_charged_total": self._units_charged,
                "concurrency": {
                    "limit": limit,
                    "current": sum(a.active for a in self._accounts.values()),
                    "high_water": max((a.high_water for a in self._accounts.values()), default=0),
                },
                # How busy the client kept the slots (busy share, idle gap after each end: slot_use.py).
                "slots": self._slot_use(limit),
                "accounts": {
                    key: {
                        "active": a.active,
                        "high_water": a.high_water,
                        "units_committed": a.units_committed,
                        "tasks": len(a.tasks),
                    }
                    for key, a in self._accounts.items()
                },
                "tasks_total": len(self._tasks),
                "tasks_by_status": {s: by_status.get(s, 0) for s in ("submitted", "processing", "succeed", "failed")},
                "cdn": self._cdn.counts(),
            }

    def _slot_use(self, limit: int | None) -> dict[str, Any]:
        """Every task's create and end per account and pool (called with the lock held)."""
        pools: dict[tuple[str, str], list[Span]] = {}
        for task in self._tasks.values():
            pools.setdefault((task.account, task.pool), []).append((task.created_wall, task.ended_wall))
        use = slot_use({f"{a}/{p}": spans for (a, p), spans in pools.items()}, limit, now=time.time())
        return {
            "busy_share": use.busy_share,
            "busy_share_backlog": use.busy_share_backlog,
            "idle_gap_s": use.gap_percentiles(),
        }


def model_version(model: str) -> str:
    """The model version a model name counts concurrency in, the same for both API designs' names:
    `kling-v2-6` and `kling-2.6` are 2.6, `kling-v3` and `kling-3.0` are 3, `kling-3.0-omni` is 3-omni."""
    version = re.sub(r"^kling-(v(?=\d))?", "", model.lower())
    version = re.sub(r"(?<=\d)-(?=\d)", ".", version)
    return re.sub(r"\.0(?=$|-)", "", version)
