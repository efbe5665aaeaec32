"""This pipeline on the local stack against a naive 10 s polling worker (bench/baseline.py), same simulator settings.

Every figure is counted, not estimated: Kling calls from the simulator's own counters; "succeed ->
stored" from Kling's own `updated_at` of the succeeded task to the moment the video was in S3 (the
baseline: after its put_object returned; the pipeline: the download workflow's RecordOutcome, entered
only once the object is stored), both on this machine's wall clock; slot use from the simulator's
own create and end of every task (kling_local.sim.slot_use: busy share, idle gap after each end);
AWS requests from a counting layer in front of moto (requests made by
the functions, told apart by the `exec-env/AWS_Lambda_*` user agent Lambda's boto3 sends, and the SQS
event source's own receives and deletes), Lambda GB-seconds from the local runtime's invocation times
and the template's memory sizes.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

ROOT_SPEED = 5.0  # calls and latency runs: Kling's 30-120 s generations take 6-24 s
GENERATION = (30.0, 120.0)
# The backlog (issue 24): the local stack's own time per job (SQS, worker processes, moto; well under a
# second real) must be a small share of a generation, or it passes for idle slots: Kling's 60-120 s at 5x
# are 12-24 s real. The naive worker's 10 s sleep is 2 s real.
SLOT_SPEED = 5.0
SLOT_GENERATION = (60.0, 120.0)


# ------------------------------------------------------------------------------------ counting AWS


def classify(environ: dict[str, Any]) -> tuple[str, str]:
    """(service, action) of a request to moto, from its SigV4 scope and its target or path."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    service = "?"
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            service = scope[3]
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1]
    method = environ.get("REQUEST_METHOD", "GET")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if "Action" in query:
        return service, query["Action"][0]
    if service == "s3":
        path = environ.get("PATH_INFO", "/").strip("/")
        has_key = "/" in path
        if "uploads" in query:
            return service, "CreateMultipartUpload"
        if "uploadId" in query:
            return service, {
                "PUT": "UploadPart",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
            }.get(method, "ListParts")
        if method == "PUT":
            return service, "PutObjectTagging" if "tagging" in query else ("PutObject" if has_key else "CreateBucket")
        if method in ("GET", "HEAD"):
            return service, ("GetObject" if method == "GET" else "HeadObject") if has_key else "ListObjects"
        return service, f"{method} object"
    return service, method


class CountingApp:
    """WSGI middleware in front of moto: counts requests by who made them, service and action."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        agent = environ.get("HTTP_USER_AGENT", "")
        who = "lambda" if "exec-env/AWS_Lambda" in agent else ("bench" if "kling-bench" in agent else "stack")
        service, action = classify(environ)
        with self._lock:
            self.counts[(who, service, action)] += 1
        return self.app(environ, start_response)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


def count_requests(stack: Any) -> CountingApp:
    """Put the counter in front of the stack's moto (its werkzeug server's app)."""
    server = stack._moto._server._server  # MotoServer -> ThreadedMotoServer -> werkzeug server
    counter = CountingApp(server.app)
    server.app = counter
    return counter


class Durations:
    """Each function's invocation times, from the local runtime (for Lambda GB-seconds)."""

    def __init__(self, stack: Any) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.memory_mb: dict[str, int] = {}
        for logical_id, pool in stack.runtime.pools.items():
            self.memory_mb[logical_id] = int(pool.config.memory_mb)
            self.seconds[logical_id] = []
            original = pool.invoke

            def timed(event: Any, request_id: str | None = None, _o: Any = original, _l: str = logical_id) -> Any:
                invocation = _o(event, request_id)
                self.seconds[_l].append(invocation.duration_s)
                return invocation

            pool.invoke = timed


# ------------------------------------------------------------------------------------ the two systems


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    data = sorted(values)
    if not data:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    q = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
    return {"p50": round(q[49], 2), "p95": round(q[94], 2), "max": round(data[-1], 2), "n": len(data)}


@dataclass
class SystemRun:
    system: str
    callback_loss: float
    jobs: int
    completed: int
    creates: int
    gets: int
    succeed_to_stored_s: list[float]
    speed: float
    duration_s: float
    queries: int = 0  # every query call Kling counted: single look-ups, batches, list pages (the sim's kling_queries)
    signed: bool = False  # Kling signed its callbacks (the stack holds the webhook secret)
    slot_busy_share: float | None = None
    throughput_per_kling_hour: float | None = None
    slot_busy_share_backlog: float | None = None  # first create to last create (slot_use.py)
    idle_gap_real_s: dict[str, Any] | None = None  # a task's end to the create that took its slot
    kling_1303: int | None = None  # creates Kling refused for the account's concurrency
    aws: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        per = max(1, self.completed)
        real = percentiles(self.succeed_to_stored_s)
        return {
            "system": self.system,
            "callback_loss": self.callback_loss,
            "jobs": self.jobs,
            "completed": self.completed,
            "creates_per_completed": round(self.creates / per, 2),
            "gets_per_completed": round(self.gets / per, 2),
            "kling_queries": self.queries,
            "queries_per_completed": round(self.queries / per, 2),
            "signed_callbacks": self.signed,
            "succeed_to_stored_real_s": real,
            "succeed_to_stored_kling_s": {
                k: (round(v * self.speed, 1) if isinstance(v, float) and k != "n" else v) for k, v in real.items()
            },
            "speed": self.speed,
            "duration_s": round(self.duration_s, 1),
            "slot_busy_share": self.slot_busy_share,
            "throughput_per_kling_hour": self.throughput_per_kling_hour,
            "slot_busy_share_backlog": self.slot_busy_share_backlog,
            "idle_gap_real_s": self.idle_gap_real_s,
            "kling_1303": self.kling_1303,
            "kling_1303_per_completed": None if self.kling_1303 is None else round(self.kling_1303 / per, 3),
            "aws": self.aws,
        }


def sim_config(
    speed: float,
    concurrency: int,
    loss: float,
    seed: int,
    webhook_secret: str | None = None,
    generation: tuple[float, float] = GENERATION,
) -> Any:
    import secrets

    from kling_local.sim import SimConfig

    return SimConfig(
        webhook_secret=webhook_secret,
        access_key=f"bench-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        speed=speed,
        concurrency_limit=concurrency,
        callback_loss_rate=loss,
        generation_min_s=generation[0],
        generation_max_s=generation[1],
        video_size_bytes=2 * 1024 * 1024,
        seed=seed,
        fetch_image_urls=True,
    )


def bench_client(connection_or_target: Any, service: str) -> Any:
    """The benchmark's own AWS clients carry `kling-bench` in their user agent: their requests are not
    the pipeline's and are not counted."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=connection_or_target["moto_endpoint"],
        region_name=connection_or_target["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(user_agent_extra="kling-bench"),
    )


def run_pipeline(
    jobs: int,
    loss: float,
    *,
    speed: float,
    concurrency: int,
    seed: int,
    slots: bool = False,
    signed: bool = False,
) -> SystemRun:
    """One batch through the local stack; the stack's clock and the pipeline's Kling durations follow `speed`.
    `signed`: Kling signs its callbacks, and the stack holds the secret (acted on without a query)."""
    from kling_local.stack import LocalStack, StackOptions
    from kling_local.stack.stack import generate_kling_webhook_secret
    from kling_pipeline.lifecycle import Job
    from tests.support.template import ROOT

    secret = generate_kling_webhook_secret() if signed else None
    options = StackOptions(
        kling_webhook_secret=secret,
        template_path=ROOT / "template.yaml",
        project_root=ROOT,
        sim_config=sim_config(speed, concurrency, loss, seed, secret, SLOT_GENERATION if slots else GENERATION),
        # The pipeline knows the account's C (issue 24): it takes a slot before each create.
        parameter_overrides={"KlingConcurrency": concurrency},
        clock_speed=speed,
        time_scale=speed,
        max_concurrency=2,
        write_state_file=False,
    )
    stack = LocalStack(options).start()
    try:
        counter = count_requests(stack)
        durations = Durations(stack)
        sim = stack.simulator
        assert sim is not None
        endpoints = stack.endpoints
        sqs = bench_client(endpoints, "sqs")
        dynamodb = bench_client(endpoints, "dynamodb")
        run_tag = f"{int(time.time())}-{int(loss * 100)}"
        job_ids = [f"bench-{run_tag}-{i:03d}" for i in range(jobs)]
        callbacks_before = int(sim.stats()["callbacks"]["delivered"])
        queries_before = int(sim.stats()["kling_queries"])
        counter.reset()
        started = time.monotonic()
        for start in range(0, jobs, 10):
            sqs.send_message_batch(
                QueueUrl=endpoints["jobs_queue_url"],
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps({"job_id": job_id, "prompt": f"bench {job_id}"}),
                    }
                    for i, job_id in enumerate(job_ids[start : start + 10])
                ],
            )
        records: dict[str, Job] = {}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            records = read_jobs(dynamodb, endpoints["jobs_table"], job_ids)
            if len(records) == jobs and all(job.is_terminal for job in records.values()):
                break
            time.sleep(1.0)
        duration = time.monotonic() - started
        time.sleep(2.0)  # the last workflows' Announce and the counters settle
        stats = sim.stats()
        per_task: dict[str, int] = stats["gets_per_task"]
        delays = []
        for job in records.values():
            if job.state.value != "COMPLETED" or not job.task_id:
                continue
            task = sim.task_object(job.task_id) or {}
            completed_at = next((h.at for h in job.history if h.state.value == "COMPLETED"), None)
            if completed_at and task.get("updated_at"):
                stored = _epoch(completed_at)
                delays.append(max(0.0, stored - int(task["updated_at"]) / 1000))
        gets = sum(per_task.get(job.task_id, 0) for job in records.values() if job.task_id)
        completed = sum(1 for job in records.values() if job.state.value == "COMPLETED")
        aws = aws_usage(stack, counter, durations, int(stats["callbacks"]["delivered"]) - callbacks_before, completed)
        sizes = [len(job.model_dump_json(exclude_none=True)) / 1024 for job in records.values()]
        aws["job_item_kb"] = round(statistics.fmean(sizes), 2) if sizes else 1.0
        run = SystemRun(
            system="pipeline",
            callback_loss=loss,
            jobs=jobs,
            completed=completed,
            creates=sum(int(stats["tasks_by_external_task_id"].get(j, 0)) for j in job_ids),
            gets=gets,
            succeed_to_stored_s=delays,
            speed=speed,
            duration_s=duration,
            aws=aws,
            queries=int(stats["kling_queries"]) - queries_before,
            signed=signed,
        )
        if slots:
            slot_figures(run, stats)
            run.throughput_per_kling_hour = round(completed / (duration * speed) * 3600, 1)
        return run
    finally:
        stack.stop()


def slot_figures(run: SystemRun, stats: dict[str, Any]) -> None:
    """The slots' use as the simulator counted it (kling_local.sim.slot_use), the same for both systems."""
    use = stats["slots"]
    run.slot_busy_share = use["busy_share"]
    run.slot_busy_share_backlog = use["busy_share_backlog"]
    run.idle_gap_real_s = use["idle_gap_s"]
    run.kling_1303 = int(stats["creates"]["refused_by_code"].get("1303", 0))


def read_jobs(dynamodb: Any, table: str, job_ids: list[str]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    from kling_pipeline.lifecycle import Job

    deserializer = TypeDeserializer()
    found: dict[str, Any] = {}
    for start in range(0, len(job_ids), 100):
        keys = [{"job_id": {"S": j}} for j in job_ids[start : start + 100]]
        request: dict[str, Any] = {table: {"Keys": keys}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(table, []):
                job = Job.model_validate({k: deserializer.deserialize(v) for k, v in item.items()})
                found[job.job_id] = job
            request = answer.get("UnprocessedKeys") or {}
    return found


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_baseline_system(
    jobs: int, loss: float, *, speed: float, concurrency: int, seed: int, slots: bool = False
) -> SystemRun:
    """The naive polling worker against a simulator with the same knobs, storing into a moto S3."""
    from bench.baseline import run_baseline
    from kling_local.sim import KlingSimulator
    from kling_local.stack.moto_server import MotoServer
    from kling_pipeline.adapters.kling_client import KlingClient

    config = sim_config(speed, concurrency, loss, seed, generation=SLOT_GENERATION if slots else GENERATION)
    moto = MotoServer(port=0)
    endpoint = moto.start()
    try:
        with KlingSimulator(config) as sim:
            s3 = bench_client({"moto_endpoint": endpoint, "region": "us-east-1"}, "s3")
            s3.create_bucket(Bucket="baseline-videos")
            kling = KlingClient(sim.base_url, config.access_key, config.secret_key)
            started = time.monotonic()
            result = run_baseline(
                kling,
                s3,
                "baseline-videos",
                [f"baseline {i}" for i in range(jobs)],
                concurrency=concurrency,
                speed=speed,
            )
            duration = time.monotonic() - started
            stats = sim.stats()
            run = SystemRun(
                system="baseline",
                callback_loss=loss,
                jobs=jobs,
                completed=result.completed,
                creates=int(stats["creates"]["accepted"]),
                gets=result.gets,
                queries=int(stats["kling_queries"]),
                succeed_to_stored_s=result.succeed_to_stored_s,
                speed=speed,
                duration_s=duration,
            )
            if slots:
                slot_figures(run, stats)
                run.throughput_per_kling_hour = round(result.completed / (duration * speed) * 3600, 1)
            return run
    finally:
        moto.stop()


# ------------------------------------------------------------------------------------ AWS usage


def aws_usage(stack: Any, counter: CountingApp, durations: Durations, callbacks: int, completed: int) -> dict[str, Any]:
    """What the run asked of AWS: requests by service and action (the functions' own, and the SQS event
    source's), Lambda invocations and GB-seconds per function, Step Functions state transitions (from
    each execution's history), API Gateway requests (Kling's callbacks, as the simulator delivered them)."""
    requests: Counter[str] = Counter()
    by_action: Counter[str] = Counter()
    for (who, service, action), n in counter.counts.items():
        if who == "lambda" or (
            who == "stack" and service == "sqs" and action.startswith(("ReceiveMessage", "DeleteMessage"))
        ):
            requests[service] += n
            by_action[f"{service}:{action}"] += n
    lambda_fns = {}
    for logical_id, seconds in durations.seconds.items():
        if not seconds:
            continue
        lambda_fns[logical_id] = {
            "invocations": len(seconds),
            "mean_s": round(statistics.fmean(seconds), 3),
            "gb_s": round(sum(seconds) * durations.memory_mb[logical_id] / 1024, 2),
            "memory_mb": durations.memory_mb[logical_id],
        }
    transitions = executions = 0
    sfn = stack.client("stepfunctions")
    for arn in stack.deployment.state_machines.values():
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for execution in page["executions"]:
                executions += 1
                history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
                transitions += sum(1 for e in history.get("events", []) if e["type"].endswith("StateEntered"))
    return {
        "completed": completed,
        "requests_by_service": dict(requests),
        "requests_by_action": dict(sorted(by_action.items())),
        "lambda": lambda_fns,
        "sfn_executions": executions,
        "sfn_transitions": transitions,
        "api_gateway_requests": callbacks,
    }
