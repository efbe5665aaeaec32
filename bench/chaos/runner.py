"""One row: a batch of jobs through one fault on the shared stack, every figure read from the simulator,
S3 and the DLQ, and the row's invariants judged (`judge`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from bench.chaos.faults import (
    BASE_KNOBS,
    DLQ_REASON,
    DOOR_REQUESTS,
    TERMINAL,
    Fault,
    external_ids,
    poison_messages,
    shaped_batch,
)
from bench.chaos.saboteurs import Drips, Killer, Trap


@dataclass
class RowResult:
    row: str
    what: str
    jobs: int
    completed: int
    failed: int
    timed_out: int
    lost: int
    kling_tasks: int
    expected_tasks: int  # one per job, one per step of a chain
    creates_per_job: float
    double_creates: int
    s3_objects: int
    s3_verified: int  # completed jobs with exactly one object whose bytes hash to the job's and Kling's checksum
    s3_objects_per_completed: float | None
    outcome_not_klings: int  # jobs whose end disagrees with what Kling did to their task
    kling_gets: int
    kling_gets_per_job: float
    poison_sent: int = 0
    poison_in_dlq_with_reason: int = 0
    forged_sent: int = 0
    forged_refused: int = 0
    hostile_sent: int = 0
    hostile_refused: int = 0
    kills: int = 0
    changed_after_end: int = 0  # terminal jobs whose record changed after the row ended (late events)
    ends_without_event: int = 0  # (announcement rows) ended jobs no event of their end arrived for
    callers_not_told_once: int = 0  # (announcement rows) waiting callers not resumed exactly once
    ends_still_marked: int = 0  # (announcement rows) ended jobs still marked announce_pending
    failure_codes: dict[str, int] = field(default_factory=dict)
    # (door rows) The door the jobs went through; jobs ended PROVIDER_UNSETTLED (a create whose answer was lost,
    # no webhook within the window), and of those, jobs whose task the provider made a video for (paid, not
    # stored: counted in outcome_not_klings too). For door rows kling_tasks, kling_gets and outcome_not_klings
    # are the door's: its tasks, its look-ups (status, result, list and batch reads), its outcomes.
    provider: str = "kling"
    unsettled: int = 0
    unsettled_paid: int = 0
    fault_counts: dict[str, int] = field(default_factory=dict)  # what the simulator did (its own counters)
    seconds: float = 0.0
    ok: bool = False
    problems: list[str] = field(default_factory=list)


class ChaosRun:
    """The stack, the simulator's create hook, the trap, and the rows' bookkeeping."""

    def __init__(self, stack: Any, trap: Trap, run_id: str, drips: Drips | None = None) -> None:
        from kling_local.demo import connection_of

        self.drips = drips
        self.drip_images: set[str] = set()
        self.stack = stack
        self.sim = stack.simulator
        self.trap = trap
        self.run_id = run_id
        self.connection = connection_of(stack)
        self.store = self.connection.store()
        self.sqs = self.connection.client("sqs")
        self.s3 = self.connection.client("s3")
        self.killer = Killer(self.sim.port)
        self.sim.on_create(self.killer)
        self.ended_versions: dict[str, tuple[str, int]] = {}
        self.row_job_ids: list[str] = []
        self.row_externals: dict[str, list[str]] = {}  # job id -> each step's external_task_id
        self.inconclusive = 0  # forgeries not counted: Kling's task changed status while one was checked
        self.http = httpx.Client(timeout=30.0)
        self._watch: AnnouncementWatch | None = None
        # The doors' simulators (fal.ai, Replicate, AceData), and each one's knobs as the stack started it.
        self.doors: dict[str, Any] = {
            name: sim
            for name, sim in (
                ("fal", stack.fal_simulator),
                ("replicate", stack.replicate_simulator),
                ("acedata", stack.acedata_simulator),
            )
            if sim is not None
        }
        self.door_defaults = {name: sim.state.config.model_dump() for name, sim in self.doors.items()}

    def close(self) -> None:
        self.http.close()

    # -- driving -------------------------------------------------------------------------------

    def run_row(self, index: int, fault: Fault, jobs: int, log: Callable[[str], None]) -> RowResult:
        started = time.monotonic()
        prefix = f"chaos-{self.run_id}-{index:02d}"
        faults_before = Counter(self.sim.stats()["faults"])
        self._gets_before = _gets(self.sim.stats())
        door = self._door(fault)
        door_before = door.stats() if door is not None else {}
        knobs = {k: v for k, v in fault.knobs.items() if k != "outage_s"}
        (door or self.sim).configure(**knobs)
        self._aws_faults(fault)
        if fault.shaped_ids:
            bodies = shaped_batch(prefix, jobs)
        else:
            bodies = [{"job_id": f"{prefix}-{i:03d}", "prompt": f"chaos {fault.name} {i}"} for i in range(jobs)]
        if fault.drip:
            bodies = self._dripping(bodies)
        bodies = [body | DOOR_REQUESTS.get(fault.provider, {}) | fault.request for body in bodies]
        job_ids = [str(body["job_id"]) for body in bodies]
        self.row_job_ids = job_ids
        self.row_externals = {str(body["job_id"]): external_ids(body) for body in bodies}
        self.killer.targets = set(job_ids[: round(jobs * fault.kill_share)])
        self.killer.until = time.monotonic() + 5.0
        messages = [json.dumps(body) for body in bodies for _ in range(fault.copies)]
        poison = poison_messages(prefix) if fault.poison else []
        messages += [body for body, _ in poison]
        callers: dict[str, str] = {}
        if fault.announcements:
            self._watch = self._watch or AnnouncementWatch(self.connection)
            callers = self._watch.send_by_callers(bodies)
            messages = [m for m in messages if m not in {json.dumps(b) for b in bodies}]
        restore = self._environments(fault.deployed, fault.redeployed)
        self._deploy(fault.deployed)
        api: tuple[dict[str, int], list[str]] = ({}, [])
        if fault.api_batch:
            api = self._post_batches(bodies, fault.api_batch)
        else:
            self._send(messages)
        redeploy = self._redeploy_when_created(bodies, fault.redeployed) if fault.redeployed else None
        outage_timer = None
        if fault.outage_after_s is not None:
            outage_s = float(fault.knobs["outage_s"])
            outage_timer = threading.Timer(fault.outage_after_s, lambda: self.sim.configure(outage_s=outage_s))
            outage_timer.start()
        forged: tuple[int, int] = (0, 0)
        if fault.forge:
            forged = self._forge(job_ids, log)
        finished = self._wait(job_ids, fault.timeout_s)
        if outage_timer is not None:
            outage_timer.join()
        redeployed: dict[str, int] = {}
        if redeploy is not None:
            redeployed = redeploy.finish()
        if fault.forge:
            sent, refused = self._replay(job_ids)
            forged = (forged[0] + sent, forged[1] + refused)
        self._settle(20.0)
        announced = self._watch.measure(job_ids, callers) if self._watch is not None and callers else None
        if door is not None:
            door.configure(**{k: self.door_defaults[fault.provider][k] for k in fault.knobs})
        else:
            self.sim.configure(**{k: BASE_DEFAULTS[k] for k in fault.knobs})
        aws_counts = self._aws_faults(None)
        self._deploy(restore)
        if door is not None:
            result = self._measure_door(fault, prefix, job_ids, finished, door, door_before)
        else:
            result = self._measure(fault, prefix, job_ids, finished, poison, forged, faults_before)
        if fault.api_batch or fault.redeployed:
            self._judge_half_done(fault, result, job_ids, api, redeployed)
        if announced is not None:
            result.ends_without_event, result.callers_not_told_once, result.ends_still_marked = announced
            result.ok = judge(result, fault)
        result.fault_counts |= {f"aws {kind}": n for kind, n in aws_counts.items()}
        result.seconds = round(time.monotonic() - started, 1)
        for job in self.store.get_many(job_ids).values():
            if job.state.value in TERMINAL:
                self.ended_versions[job.job_id] = (job.state.value, job.version)
        log(
            f"{fault.name}: {result.jobs} jobs in {result.seconds} s, "
            f"lost {result.lost}, double {result.double_creates}"
        )
        return result

    def _door(self, fault: Fault) -> Any:
        """The simulator of the row's door (None: Kling's own API, the Kling simulator)."""
        if fault.provider == "kling":
            return None
        if fault.provider not in self.doors:
            raise ValueError(f"{fault.name}: no {fault.provider} simulator in this stack")
        return self.doors[fault.provider]

    def _dripping(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every third job's image drips, every third's webhook; each sent among plain batch-mates."""
        assert self.drips is not None, "the drip row needs the drip servers"
        changed = []
        for i, body in enumerate(bodies):
            job_id = body["job_id"]
            if i % 3 == 0:
                body = body | {"kind": "image2video", "image": f"{self.drips.image.url}/{job_id}.png"}
                self.drip_images.add(job_id)
            elif i % 3 == 1:
                body = body | {"webhook_url": f"{self.drips.webhook.url}/hook/{job_id}?token=chaos-{job_id}"}
            changed.append(body)
        return changed

    def _aws_faults(self, fault: Fault | None) -> dict[str, int]:
        """Turn the row's AWS faults on (or off with None); returns what was answered so far."""
        from kling_local.aws_faults import AWS_FAULTS, AwsFaults

        counts = AWS_FAULTS.stats()
        plan = None
        if fault is not None and fault.aws_faults:
            plan = AwsFaults(rate=fault.aws_rate, seed=15, faults=frozenset(fault.aws_faults))
        AWS_FAULTS.configure(plan)
        return counts

    def _send(self, messages: list[str]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            small = [m for m in chunk if len(m.encode()) < 200_000]
            if small:
                self.sqs.send_message_batch(
                    QueueUrl=self.connection.queue_url,
                    Entries=[{"Id": str(i), "MessageBody": m} for i, m in enumerate(small)],
                )
            for message in chunk:
                if len(message.encode()) >= 200_000:
                    self.sqs.send_message(QueueUrl=self.connection.queue_url, MessageBody=message)

    def _wait(self, job_ids: list[str], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        jobs: dict[str, Any] = {}
        while time.monotonic() < deadline:
            jobs = self.store.get_many(job_ids)
            if len(jobs) == len(job_ids) and all(job.state.value in TERMINAL for job in jobs.values()):
                break
            time.sleep(1.0)
        return jobs

    def _settle(self, timeout_s: float) -> None:
        """Until Kling has nothing running or left to call back, and the job queue is empty, so that late
        callbacks land in their own row (the poller runs every second here: the stack is never idle)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stats = self.sim.stats()
            running = stats["tasks_by_status"]["submitted"] + stats["tasks_by_status"]["processing"]
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.connection.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            doors_busy = any(_door_busy(sim.stats()) for sim in self.doors.values())
            if (
                not running
                and not stats["callbacks"]["pending"]
                and not doors_busy
                and not any(int(v) for v in attributes.values())
            ):
                time.sleep(1.0)  # callbacks sent just now are being answered
                return
            time.sleep(0.5)

    # -- forged callbacks ----------------------------------------------------------------------

    def _callback_urls(self, job_ids: list[str], timeout_s: float = 60.0) -> dict[str, tuple[str, str]]:
        """job id -> (its callback URL as Kling holds it, its token), once each job's task runs."""
        deadline = time.monotonic() + timeout_s
        urls: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline and len(urls) < len(job_ids):
            for job_id, job in self.store.get_many(job_ids).items():
                if job.task_id and job.state.value == "PROCESSING" and job_id not in urls:
                    url = self.sim.callback_url(job.task_id)
                    if url:
                        urls[job_id] = (url, parse_qs(urlsplit(url).query)["token"][0])
            time.sleep(0.3)
        return urls

    def _post(self, url: str, token: str | None, body: dict[str, Any]) -> int:
        base = url.split("?", 1)[0]
        params = {"token": token} if token is not None else {}
        return self.http.post(base, params=params, json=body).status_code

    def _unchanged(self, job_id: str, before: Any) -> bool:
        after = self.store.get(job_id)
        return (after.state, after.version, after.video_url, after.task_id) == (
            before.state,
            before.version,
            before.video_url,
            before.task_id,
        )

    def _forge(self, job_ids: list[str], log: Callable[[str], None]) -> tuple[int, int]:
        """While the jobs' tasks run: a bad token, another job's token, and lying bodies (succeed with a
        hostile URL, failed) with the right token. Refused = the job's record did not change."""
        urls = self._callback_urls(job_ids)
        if len(urls) < len(job_ids):
            log(f"forged callbacks: only {len(urls)} of {len(job_ids)} jobs were seen running")
        self._replays: dict[str, dict[str, Any]] = {}
        sent = refused = 0
        ordered = sorted(urls)
        for n, job_id in enumerate(ordered):
            url, token = urls[job_id]
            other_token = urls[ordered[(n + 1) % len(ordered)]][1]
            before = self.store.get(job_id)
            assert before.task_id is not None
            genuine = self.sim.task_object(before.task_id) or {}
            self._replays[job_id] = genuine
            lie_succeed = genuine | {
                "task_status": "succeed",
                "task_result": {
                    "videos": [{"id": "v", "url": "https://169.254.169.254/latest/meta-data/", "duration": "5"}]
                },
            }
            lie_failed = genuine | {"task_status": "failed", "task_status_msg": "forged"}
            attempts = [
                (secrets.token_hex(32), lie_succeed),  # a bad token
                (None, lie_succeed),  # no token
                (other_token if other_token != token else secrets.token_hex(32), lie_succeed),  # another job's token
                (token, lie_succeed),  # the right token, a lying body
                (token, lie_failed),
            ]
            for forged_token, body in attempts:
                self._post(url, forged_token, body)
                after = self.sim.task_object(before.task_id) or {}
                if after.get("task_status") != genuine.get("task_status"):
                    self.inconclusive += 1  # Kling's task moved meanwhile: a change would be genuine
                    continue
                sent += 1
                refused += self._unchanged(job_id, before)
        return sent, refused

    def _replay(self, job_ids: list[str]) -> tuple[int, int]:
        """After the jobs ended: bodies Kling really sent earlier (running), replayed with the right token."""
        sent = refused = 0
        for job_id, body in getattr(self, "_replays", {}).items():
            job = self.store.get(job_id)
            url = self.sim.callback_url(job.task_id) if job.task_id else None
            if not url or not job.is_terminal:
                continue
            token = parse_qs(urlsplit(url).query)["token"][0]
            final = self.sim.task_object(job.task_id) or {}
            for replayed in (body, final):
                self._post(url, token, replayed)
                sent += 1
                refused += self._unchanged(job_id, job)
        return sent, refused

    # -- half-done writes and redeploys (issue 21, items 9 and 3) -----------------------------

    def _environments(self, *plans: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """The variables the plans name, as each function has them now (to deploy it back as it was)."""
        assert self.stack.runtime is not None
        was: dict[str, dict[str, str]] = {}
        for plan in plans:
            for function, env in plan.items():
                current = self.stack.runtime.pools[function].env
                was.setdefault(function, {}).update({name: current.get(name, "") for name in env})
        return was

    def _deploy(self, plan: dict[str, dict[str, str]]) -> None:
        """Redeploy each function of `plan` with its variables (LocalStack.redeploy)."""
        for function, env in plan.items():
            self.stack.redeploy(function, **env)

    def _redeploy_when_created(self, bodies: list[dict[str, Any]], plan: dict[str, dict[str, str]]) -> Redeploy:
        """Redeploy with `plan` once every job's create has reached Kling (each has its task there)."""
        return Redeploy(self, bodies, plan).start()

    def _post_batches(self, bodies: list[dict[str, Any]], size: int) -> tuple[dict[str, int], list[str]]:
        """The jobs posted to the jobs API `size` at a time. Each batch's first post has its middle job's
        DynamoDB put throttled until botocore gives up (the API answers 503 with the jobs before it
        recorded and not queued); the same batch is then posted again, as a client told 503 does."""
        from kling_local.aws_faults import AWS_FAULTS

        url = self.stack.endpoints["jobs_api_url"].rstrip("/") + "/jobs"
        counts: Counter[str] = Counter()
        problems: list[str] = []
        for start in range(0, len(bodies), size):
            batch = bodies[start : start + size]
            ids = [str(body["job_id"]) for body in batch]
            middle = ids[len(ids) // 2]
            rule = AWS_FAULTS.inject(
                "ThrottlingException", "dynamodb", operation="PutItem", contains=json.dumps(middle), times=None
            )
            try:
                first = self.http.post(url, json={"jobs": batch}, timeout=120.0)
            finally:
                AWS_FAULTS.remove(rule)
            counts["puts throttled"] += rule.fired
            if first.status_code == 503:
                counts["posts answered 503"] += 1
            else:
                problems.append(f"batch {ids[0]}..: the failing post was answered {first.status_code}, not 503")
            recorded = self.store.get_many(ids)
            counts["recorded, not queued, after a 503"] += sum(1 for job in recorded.values() if job.awaiting_message)
            again = self.http.post(url, json={"jobs": batch}, timeout=120.0)
            outcomes = Counter(
                str(item.get("outcome")) for item in (again.json().get("jobs") or [] if again.is_success else [])
            )
            counts |= {
                f"posted again: {outcome}": counts[f"posted again: {outcome}"] + n for outcome, n in outcomes.items()
            }
            if not again.is_success or set(outcomes) - {"accepted", "existing"} or sum(outcomes.values()) != len(ids):
                problems.append(f"batch {ids[0]}..: posted again, answered {again.status_code} {dict(outcomes)}")
        return dict(counts), problems

    def _taken_as_recorded(self, job_ids: list[str]) -> int:
        """The row's jobs whose message the submit function took as its record holds it (today's rules
        refused it), from the function's log."""
        wanted = set(job_ids)
        found: set[str] = set()
        log = Path(self.stack.endpoints["log_dir"]) / "SubmitFunction.log"
        with contextlib.suppress(OSError), log.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if "taken as its record holds it" not in line:
                    continue
                with contextlib.suppress(ValueError, AttributeError):
                    job_id = json.loads(line).get("job_id")
                    if job_id in wanted:
                        found.add(job_id)
        return len(found)

    def _judge_half_done(
        self,
        fault: Fault,
        result: RowResult,
        job_ids: list[str],
        api: tuple[dict[str, int], list[str]],
        redeployed: dict[str, int],
    ) -> None:
        """Besides every row's invariants: every job completed (nothing here fails one), none of their
        messages in the DLQ, and proof the fault met what it was for."""
        counts, problems = api
        result.fault_counts |= counts | redeployed
        result.problems += problems
        if result.completed != result.jobs:
            result.problems.append(f"{result.completed} of {result.jobs} jobs completed")
        wanted = set(job_ids)
        parked = [
            m
            for m in self._dlq()
            if m.get("MessageAttributes", {}).get("job_id", {}).get("StringValue") in wanted
            or any(job_id in m["Body"] for job_id in wanted)
        ]
        result.fault_counts["messages in the DLQ"] = len(parked)
        for message in parked[:5]:
            reason = message.get("MessageAttributes", {}).get(DLQ_REASON, {}).get("StringValue")
            result.problems.append(f"dead-lettered: {message['Body'][:60]!r} ({reason})")
        if fault.api_batch and not counts.get("recorded, not queued, after a 503"):
            result.problems.append("no failing post left a job recorded and not queued: the batch never failed midway")
        if fault.redeployed:
            taken = self._taken_as_recorded(job_ids)
            result.fault_counts["re-sent messages taken as recorded"] = taken
            if not redeployed.get("redeployed"):
                result.problems.append("the redeploy never happened (not every create reached Kling)")
            elif not taken:
                result.problems.append("no re-sent message met the new rules: the row tried nothing")
        result.ok = judge(result, fault)

    # -- measuring -----------------------------------------------------------------------------

    def _dlq(self) -> list[dict[str, Any]]:
        """Every message in the DLQ (read with a short visibility timeout; nothing is deleted)."""
        seen: dict[str, dict[str, Any]] = {}
        quiet = 0
        while quiet < 3:
            got = self.sqs.receive_message(
                QueueUrl=self.connection.dead_letter_queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=20,
            ).get("Messages", [])
            new = [m for m in got if m["MessageId"] not in seen]
            seen.update({m["MessageId"]: m for m in new})
            quiet = 0 if new else quiet + 1
        for message in seen.values():  # visible again for the next reader
            with contextlib.suppress(Exception):
                self.sqs.change_message_visibility(
                    QueueUrl=self.connection.dead_letter_queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
        return list(seen.values())

    def _objects(self, prefix: str) -> dict[str, list[str]]:
        """job id -> the keys of the video bucket that name it."""
        keys: dict[str, list[str]] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.connection.bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                if prefix in key:
                    # videos/<job_id>.mp4, or a chain's videos/<job_id>/step-<n>.mp4
                    parts = key.split("/")
                    job_id = parts[1].removesuffix(".mp4") if len(parts) >= 2 else key
                    keys.setdefault(job_id, []).append(key)
        return keys

    def _measure(
        self,
        fault: Fault,
        prefix: str,
        job_ids: list[str],
        jobs: dict[str, Any],
        poison: list[tuple[str, str | None]],
        forged: tuple[int, int],
        faults_before: Counter[str],
    ) -> RowResult:
        from kling_pipeline.extend_chain import video_key

        stats = self.sim.stats()
        tasks_by_ext: dict[str, int] = stats["tasks_by_external_task_id"]
        objects = self._objects(prefix)
        states = Counter(job.state.value for job in jobs.values())
        problems: list[str] = []
        lost = sum(1 for job_id in job_ids if job_id not in jobs or jobs[job_id].state.value not in TERMINAL)
        # Each step of a chain is a task of its own, under its own external id.
        externals = {job_id: self.row_externals.get(job_id, [job_id]) for job_id in job_ids}
        tasks = sum(tasks_by_ext.get(ext, 0) for job_id in job_ids for ext in externals[job_id])
        double = sum(1 for job_id in job_ids if any(tasks_by_ext.get(ext, 0) > 1 for ext in externals[job_id]))
        verified = 0
        wrong = 0
        gets = _gets(stats) - self._gets_before  # every GET of the row: by id, by external id, list pages
        hostile_refused = 0
        for job_id in job_ids:
            job = jobs.get(job_id)
            if job is None:
                continue
            kling = self.sim.task_object(job.task_id) if job.task_id else None
            kling_status = (kling or {}).get("task_status")
            keys = objects.get(job_id, [])
            carried = ((kling or {}).get("task_info") or {}).get("external_task_id")
            if kling is not None and carried != job.external_task_id:
                problems.append(f"{job_id}: holds the task of external id {carried!r}, not its own")
            if job.state.value == "COMPLETED":
                expected = self.sim.video_sha256(job.task_id) if job.task_id else None
                recorded = job.sha256
                last = video_key(job)  # the job's video: a chain's last step
                if (
                    len(keys) == job.total_steps
                    and last in keys
                    and expected
                    and recorded == expected == self._sha256(last)
                ):
                    verified += 1
                else:
                    problems.append(f"{job_id}: COMPLETED but {len(keys)} object(s) / checksum mismatch")
            elif keys:
                problems.append(f"{job_id}: {job.state.value} yet has an object in S3")
            if fault.expect_refusal:
                if job.state.value == "FAILED" and not keys:
                    hostile_refused += 1
                else:
                    wrong += 1
            elif (job.state.value, kling_status == "succeed") in (
                ("COMPLETED", False),
                ("FAILED", True),
                ("TIMED_OUT", True),  # Kling made (and billed) the video, and the job gave up on it
            ):
                wrong += 1
        if fault.hostile:
            hostile_refused = hostile_refused if self.trap.hits == 0 else 0
        drip_sent = [job_id for job_id in job_ids if job_id in self.drip_images] if fault.drip else []
        for job_id in drip_sent:
            job = jobs.get(job_id)
            if (
                job is not None
                and job.state.value == "FAILED"
                and "did not answer within" in (job.error_message or "")
                and not tasks_by_ext.get(job_id)
            ):
                hostile_refused += 1
            else:
                problems.append(f"{job_id}: its dripping image was not refused in time ({job and job.state.value})")
        in_dlq = 0
        if poison:
            dlq = self._dlq()
            for body, job_id in poison:
                found = [
                    m
                    for m in dlq
                    # A body that is not JSON cannot name its job: its job is its SQS message id.
                    if m["Body"] == body
                    or (job_id and m.get("MessageAttributes", {}).get("job_id", {}).get("StringValue") == job_id)
                ]
                if found and found[0].get("MessageAttributes", {}).get(DLQ_REASON, {}).get("StringValue"):
                    in_dlq += 1
                else:
                    problems.append(f"poison {body[:40]!r} not in the DLQ with a reason")
                if job_id and tasks_by_ext.get(job_id, 0):
                    problems.append(f"poison {job_id} reached Kling")
        completed = states.get("COMPLETED", 0)
        faults_now = Counter(stats["faults"])
        result = RowResult(
            row=fault.name,
            what=fault.what,
            jobs=len(job_ids),
            completed=completed,
            failed=states.get("FAILED", 0),
            timed_out=states.get("TIMED_OUT", 0),
            lost=lost,
            kling_tasks=tasks,
            expected_tasks=sum(len(externals[job_id]) for job_id in job_ids),
            creates_per_job=round(tasks / len(job_ids), 3) if job_ids else 0.0,
            double_creates=double,
            s3_objects=sum(len(objects.get(job_id, [])) for job_id in job_ids),
            s3_verified=verified,
            s3_objects_per_completed=round(
                sum(
                    len(objects.get(j, []))
                    for j in job_ids
                    if jobs.get(j) is not None and jobs[j].state.value == "COMPLETED"
                )
                / completed,
                3,
            )
            if completed
            else None,
            outcome_not_klings=wrong,
            kling_gets=gets,
            kling_gets_per_job=round(gets / len(job_ids), 2) if job_ids else 0.0,
            poison_sent=len(poison),
            poison_in_dlq_with_reason=in_dlq,
            forged_sent=forged[0],
            forged_refused=forged[1],
            hostile_sent=len(job_ids) if fault.expect_refusal else len(drip_sent),
            hostile_refused=hostile_refused if fault.expect_refusal or fault.drip else 0,
            kills=sum(self.killer.killed[j] for j in job_ids),
            failure_codes=dict(Counter(job.error_code or "?" for job in jobs.values() if job.state.value == "FAILED")),
            fault_counts={k: v - faults_before.get(k, 0) for k, v in faults_now.items() if v - faults_before.get(k, 0)},
            problems=problems,
        )
        if fault.drip and self.drips is not None:
            result.fault_counts |= {
                "image drips": self.drips.image.connections,
                "webhook drips": self.drips.webhook.connections,
            }
            if not self.drips.webhook.connections:
                result.problems.append("no webhook delivery met the dripping receiver")
        result.ok = judge(result, fault)
        return result

    def _measure_door(
        self,
        fault: Fault,
        prefix: str,
        job_ids: list[str],
        jobs: dict[str, Any],
        door: Any,
        before: dict[str, Any],
    ) -> RowResult:
        """A door row's figures, from the door's simulator: the tasks it made under each job's webhook URL (which
        names the job), whether each made a video (paid), the checksum of that video, and S3. A job that ended
        without its video while the provider made one (PROVIDER_UNSETTLED, an expired output, ...) is a paid
        video lost, whatever the job's record says."""
        from kling_pipeline.doors import PROVIDER_UNSETTLED

        stats = door.stats()
        outcomes = door.outcomes_by_callback() if fault.provider == "acedata" else door.outcomes_by_webhook()
        made: dict[str, list[dict[str, Any]]] = {}
        for key, tasks in outcomes.items():
            # <host>/<stage>/callbacks/<job id>/<provider>: the URL Door.callback_url hands the provider
            named, _, provider = key.rpartition("/callbacks/")[2].rpartition("/")
            if provider == fault.provider:
                made.setdefault(unquote(named), []).extend(tasks)
        objects = self._objects(prefix)
        states = Counter(job.state.value for job in jobs.values())
        problems: list[str] = []
        lost = sum(1 for job_id in job_ids if job_id not in jobs or jobs[job_id].state.value not in TERMINAL)
        tasks = sum(len(made.get(job_id, [])) for job_id in job_ids)
        double = sum(1 for job_id in job_ids if len(made.get(job_id, [])) > 1)
        verified = wrong = unsettled = unsettled_paid = 0
        for job_id in job_ids:
            job = jobs.get(job_id)
            if job is None:
                continue
            own = made.get(job_id, [])
            videos = [task for task in own if task["video"]]
            keys = objects.get(job_id, [])
            for task in own:
                if task["status"] in ("canceled", "aborted"):  # nothing in a door row cancels: a deadline cut it
                    problems.append(f"{job_id}: its {fault.provider} task {task['id']} ended {task['status']}")
            if job.task_id and job.task_id not in {task["id"] for task in own}:
                problems.append(f"{job_id}: holds {fault.provider} task {job.task_id}, not one made for it")
            if job.state.value == "COMPLETED":
                expected = door.video_sha256(job.task_id) if job.task_id else None
                if len(keys) == 1 and expected and job.sha256 == expected == self._sha256(keys[0]):
                    verified += 1
                else:
                    problems.append(f"{job_id}: COMPLETED but {len(keys)} object(s) / checksum mismatch")
                wrong += not videos
            else:
                if keys:
                    problems.append(f"{job_id}: {job.state.value} yet has an object in S3")
                # FAILED or TIMED_OUT while the provider made (and billed) its video: a paid video not stored.
                wrong += bool(videos)
            if job.error_code == PROVIDER_UNSETTLED:
                unsettled += 1
                unsettled_paid += bool(videos)
        completed = states.get("COMPLETED", 0)
        counted = [k for k, v in stats.items() if isinstance(v, int) and k in before and k not in _DOOR_GAUGES]
        lookups = sum(stats[k] - before.get(k, 0) for k in _DOOR_LOOKUPS[fault.provider])
        result = RowResult(
            row=fault.name,
            what=fault.what,
            jobs=len(job_ids),
            completed=completed,
            failed=states.get("FAILED", 0),
            timed_out=states.get("TIMED_OUT", 0),
            lost=lost,
            kling_tasks=tasks,
            expected_tasks=len(job_ids),
            creates_per_job=round(tasks / len(job_ids), 3) if job_ids else 0.0,
            double_creates=double,
            s3_objects=sum(len(objects.get(job_id, [])) for job_id in job_ids),
            s3_verified=verified,
            s3_objects_per_completed=round(
                sum(len(objects.get(j, [])) for j in job_ids if j in jobs and jobs[j].state.value == "COMPLETED")
                / completed,
                3,
            )
            if completed
            else None,
            outcome_not_klings=wrong,
            kling_gets=lookups,
            kling_gets_per_job=round(lookups / len(job_ids), 2) if job_ids else 0.0,
            failure_codes=dict(Counter(job.error_code or "?" for job in jobs.values() if job.state.value == "FAILED")),
            fault_counts={k: stats[k] - before[k] for k in counted if stats[k] - before[k]},
            problems=problems,
            provider=fault.provider,
            unsettled=unsettled,
            unsettled_paid=unsettled_paid,
        )
        result.ok = judge(result, fault)
        return result

    def _sha256(self, key: str) -> str:
        body = self.s3.get_object(Bucket=self.connection.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 16), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def recheck(self, results: list[RowResult], rows_jobs: list[list[str]]) -> None:
        """At the end: a terminal job whose record changed after its row ended took a late or forged event."""
        for result, job_ids in zip(results, rows_jobs, strict=True):
            now = self.store.get_many(job_ids)
            changed = [
                job_id
                for job_id in job_ids
                if job_id in self.ended_versions
                and (now[job_id].state.value, now[job_id].version) != self.ended_versions[job_id]
            ]
            result.changed_after_end = len(changed)
            if changed:
                result.problems.append(f"changed after the row ended: {', '.join(changed[:5])}")
                result.ok = False


class AnnouncementWatch:
    """What every end was announced as: the pipeline's events on a queue of their own, and callers (Step
    Functions executions waiting with `sqs:sendMessage.waitForTaskToken`) that send the jobs."""

    CALLER = {
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": "QUEUE_URL",
                    "MessageBody": {"job_id.$": "$.job_id", "prompt.$": "$.prompt", "task_token.$": "$$.Task.Token"},
                },
                "End": True,
            }
        },
    }

    def __init__(self, connection: Any) -> None:
        self.sqs = connection.client("sqs")
        self.sfn = connection.client("stepfunctions")
        self.store = connection.store()
        suffix = secrets.token_hex(4)
        self.queue_url = self.sqs.create_queue(QueueName=f"chaos-ends-{suffix}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = connection.client("events")
        events.put_rule(Name=f"chaos-ends-{suffix}", EventPattern=json.dumps({"source": ["kling-pipeline"]}))
        events.put_targets(Rule=f"chaos-ends-{suffix}", Targets=[{"Id": "ends", "Arn": queue_arn}])
        definition = json.dumps(self.CALLER).replace("QUEUE_URL", connection.queue_url)
        self.machine = self.sfn.create_state_machine(
            name=f"chaos-caller-{suffix}", definition=definition, roleArn="arn:aws:iam::123456789012:role/caller"
        )["stateMachineArn"]
        self.events: Counter[str] = Counter()

    def send_by_callers(self, bodies: list[dict[str, Any]]) -> dict[str, str]:
        """Each job sent by a caller that waits for it with its task token: job id -> execution ARN."""
        callers = {}
        for body in bodies:
            name = body["job_id"][-60:]
            arn = self.sfn.start_execution(stateMachineArn=self.machine, name=name, input=json.dumps(body))
            callers[body["job_id"]] = arn["executionArn"]
        return callers

    def measure(self, job_ids: list[str], callers: dict[str, str], timeout_s: float = 120.0) -> tuple[int, int, int]:
        """(ended jobs with no event, callers not resumed exactly once, ends still marked), once every
        mark is cleared (the poller announces what its first announcer could not) or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            jobs = self.store.get_many(job_ids)
            if not any(job.announce_pending for job in jobs.values()):
                break
            time.sleep(1.0)
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for message in messages:
                event = json.loads(message["Body"])
                self.events[f"{event['detail']['job_id']}|{event['detail']['state']}"] += 1
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        ended = [job for job in jobs.values() if job.state.value in TERMINAL]
        without_event = sum(1 for job in ended if not self.events[f"{job.job_id}|{job.state.value}"])
        not_once = 0
        for job in ended:
            history = self.sfn.get_execution_history(executionArn=callers[job.job_id])["events"]
            resumes = [e for e in history if e["type"] in ("TaskSucceeded", "TaskFailed")]
            if len(resumes) != 1:
                not_once += 1
        return without_event, not_once, sum(1 for job in ended if job.announce_pending)


def judge(result: RowResult, fault: Fault) -> bool:
    """The row's invariants (the issue's), all at once."""
    checks = [
        result.lost == 0,
        result.double_creates == 0,
        result.s3_verified == result.completed,
        result.outcome_not_klings == 0,
        result.poison_in_dlq_with_reason == result.poison_sent,
        result.forged_refused == result.forged_sent,
        result.hostile_refused == result.hostile_sent,
        not result.problems,
        result.ends_without_event == 0,
        result.callers_not_told_once == 0,
        result.ends_still_marked == 0,
        result.unsettled_paid == 0,
    ]
    if fault.forge:
        checks.append(result.forged_sent > 0)
    if not fault.expect_refusal and not fault.knobs.get("fail_rate"):
        # exactly one task per job (per chain step); the drip row's refused images: none
        checks.append(result.kling_tasks == result.expected_tasks - (result.hostile_sent if fault.drip else 0))
    return all(checks)


BASE_DEFAULTS: dict[str, Any] = {}


def _gets(stats: dict[str, Any]) -> int:
    """Kling GETs so far (the account check excepted): by task id, by external id and list pages."""
    return sum(n for name, n in stats["calls"].items() if name.startswith("GET") and "account/" not in name)


# A door simulator's figures that are levels, not counts (the rest of its numbers count what it did).
_DOOR_GAUGES = frozenset(
    {
        "queued",
        "running",
        "max_running",
        "requests",
        "predictions",
        "starting",
        "processing",
        "tasks",
        "pending_webhooks",
        "pending_callbacks",
        "max_creates_per_webhook",
        "max_creates_per_callback",
    }
)
# Each door's look-ups, as its simulator counts them: status and result reads, list pages, (batch) retrieves.
_DOOR_LOOKUPS = {
    "fal": ("status_queries", "result_fetches"),
    "replicate": ("gets", "list_pages"),
    "acedata": ("retrieves", "batch_retrieves"),
}


def _door_busy(stats: dict[str, Any]) -> bool:
    """A door simulator with a task running or a webhook still to deliver."""
    busy = ("queued", "running", "starting", "processing", "pending_webhooks", "pending_callbacks")
    return any(stats.get(name) for name in busy)


def _defaults() -> dict[str, Any]:
    from kling_local.sim import SimConfig

    config = SimConfig(**BASE_KNOBS)
    return {name: getattr(config, name) for name in type(config).model_fields}


class Redeploy:
    """Redeploys the stack's functions mid-row, once every job's create has reached Kling (each job has
    its task there), so that only the pipeline's own re-sent messages meet the new configuration."""

    def __init__(self, run: ChaosRun, bodies: list[dict[str, Any]], plan: dict[str, dict[str, str]]) -> None:
        self.run = run
        self.bodies = {str(body["job_id"]): body for body in bodies}
        self.job_ids = list(self.bodies)
        self.plan = plan
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chaos-redeploy", daemon=True)

    def start(self) -> Redeploy:
        self._thread.start()
        return self

    def _watch(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            made = self.run.sim.stats()["tasks_by_external_task_id"]
            if all(made.get(job_id) for job_id in self.job_ids):
                jobs = self.run.store.get_many(self.job_ids).values()
                unsettled = [job.job_id for job in jobs if job.needs_reconcile and not job.is_terminal]
                self.counts["unsettled at the redeploy"] = len(unsettled)
                self.run._deploy(self.plan)
                self.counts["redeployed"] = 1
                # The pipeline's own re-sends name the job (its request is in its record); what still
                # carries the whole request is the original message delivered again (SQS's at-least-once).
                self.run._send([json.dumps(self.bodies[job_id]) for job_id in unsettled])
                self.counts["original messages delivered again after it"] = len(unsettled)
                self.counts["redeployed after (s)"] = round(time.monotonic() - started)
                return
            time.sleep(0.1)

    def finish(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.counts
