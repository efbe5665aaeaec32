"""`kling-pipeline demo`: the project's main job on one machine.

Starts the local stack (template.yaml in moto, the functions, the Kling and fal simulators), sends a batch of
video requests, shows live progress, and ends with an honest summary: what completed, what failed
and why, what is still live (lost), how each job was settled (callback, poll, reconciliation, repair),
what Kling was asked and charged, and how long a finished video waited before it was in S3.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kling_local.acedata_sim import AceDataSimConfig
from kling_local.connection import PipelineConnection
from kling_local.cost_report import cost_report
from kling_local.fal_sim import FalSimConfig
from kling_local.jobs_files import read_jobs_file, send_jobs, validate_jobs
from kling_local.replicate_sim import ReplicateSimConfig
from kling_local.sim import SimConfig
from kling_local.sim.config import WORST_CASE
from kling_local.sim.media import sample_image
from kling_local.stack import LocalStack, StackOptions
from kling_local.stack.moto_server import DeployError
from kling_local.stack.serve import add_aws_faults_argument, aws_faults_from, kling_keys
from kling_local.stack.stack import STATE_DIR, StackError, generate_kling_webhook_secret
from kling_local.stack.template_loader import TemplateError
from kling_local.terminal import UsageError
from kling_pipeline.doors import DOORS as PROVIDER_DOORS
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.providers.acedata import MODELS as acedata_models
from kling_pipeline.requests import JobRequest
from kling_pipeline.submit import HELD_FOR_BUDGET

# The bundled jobs' s3:// images, put into the local stack's input bucket before the batch is sent:
# key -> (width, height, format).
SAMPLE_INPUTS = {
    "samples/phone-720x1280.png": (720, 1280, "png"),
    "samples/desk-1280x720.jpg": (1280, 720, "jpg"),
    "samples/window-800x800.png": (800, 800, "png"),
    "samples/peaks-1280x720.jpg": (1280, 720, "jpg"),
}

# `--kling-api`: the newer design's model for a bundled job's legacy one, where the job fits its rules.
# `mixed` moves the jobs that name one of these models and every second job of these kinds left to the
# default model; `new` every job that fits.
NEWER_MODELS = {"kling-v3": "kling-3.0", "kling-v2-6": "kling-2.6", "kling-v3-omni": "kling-3.0-omni"}
NEWER_DEFAULTS = {"text2video": "kling-2.6", "image2video": "kling-3.0"}

# `--provider fal`: a bundled job's fal variant goes through fal's queue on a model fal serves
# (providers/fal.py ENDPOINTS, pro mode): kling-v3 where the job asks for it or for a duration only v3
# takes, else kling-v2-6; what fal's endpoints cannot take (camera control, image lists, chains) is dropped.
FAL_MODE = "pro"
DOORS = PROVIDER_DOORS  # fal, replicate, acedata
ACEDATA_MODELS = frozenset(acedata_models)


@dataclass
class DemoSummary:
    jobs: int
    completed: int
    failed: int
    timed_out: int
    lost: int
    kling_creates: int | None
    double_charged: int | None  # jobs Kling made (and billed) more than one task for
    kling_gets: int | None
    kling_gets_per_job: float | None
    kling_gets_max: int | None  # the most GETs any one job's task had
    kling_queries: int | None  # every query call, either design: single look-ups, batches, sweep and list pages
    kling_calls_per_job: float | None
    s3_objects: int
    notice_p50_s: float | None
    notice_p95_s: float | None
    settle_p50_s: float | None  # Kling's "succeed" to the job DOWNLOADING (a callback or a poll noticed it)
    settle_p95_s: float | None
    units_charged: float | None  # Kling's own count (the simulator's)
    units_counted: float  # the pipeline's ledger for today: what `kling-pipeline cost` reports
    daily_budget_units: float  # 0: no budget
    held_for_budget: int  # jobs waiting in QUEUED for the next day's budget (not lost)
    duration_s: float
    bucket: str
    failures: list[dict[str, str]] = field(default_factory=list)
    lost_jobs: list[dict[str, str]] = field(default_factory=list)
    out_dir: str | None = None
    log_dir: str | None = None  # this run's function logs (its own, beside any `local up`'s)
    copied: list[str] = field(default_factory=list)  # this run's videos in out_dir (file names)
    index_file: str | None = None  # out_dir/demo-<run>.json: each job's file, kind, model, prompt, state
    function_cold_starts: dict[str, int] = field(default_factory=dict)
    # How each job's Kling task was settled: by its callback, by a poll, by the submit path's
    # reconciliation, or (its download) by the poller's repair.
    settled_by: dict[str, int] = field(default_factory=dict)
    # AWS faults moto answered the pipeline with (--aws-faults), by kind.
    aws_faults_injected: dict[str, int] = field(default_factory=dict)
    # fal's door (--provider fal|mixed): the jobs sent through it, and the creates fal's simulator counted
    # (total, and the most for any one job: above 1 is a job fal made, and billed, twice).
    fal_jobs: int = 0
    fal_creates: int | None = None
    fal_creates_max: int | None = None
    # Replicate's and AceData's doors (--provider replicate|acedata|mixed), counted the same way.
    replicate_jobs: int = 0
    replicate_creates: int | None = None
    replicate_creates_max: int | None = None
    acedata_jobs: int = 0
    acedata_creates: int | None = None
    acedata_creates_max: int | None = None
    # Kling's slots, as the simulator counted them (issue 24): the share of slot-time busy from the first
    # create to the last end, creates refused for the account's concurrency, and the real seconds from a
    # task's end to the next create in its pool.
    slot_busy_share: float | None = None
    kling_1303: int | None = None
    idle_gap_p50_s: float | None = None
    idle_gap_p95_s: float | None = None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a batch of videos end to end on the local stack (no AWS account, no Kling keys)"
    )
    parser.add_argument("--jobs-file", type=Path, help="JSONL or CSV of jobs (default: 21 bundled requests)")
    parser.add_argument("--count", type=int, default=None, help="send this many jobs (cycling the file)")
    parser.add_argument(
        "--out", type=Path, help="copy the finished videos into this folder (make demo: out/); any player opens them"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting after this many seconds")
    parser.add_argument(
        "--stall",
        type=float,
        default=20.0,
        help="stop early when nothing has moved for this long and Kling has nothing running",
    )
    knobs = parser.add_argument_group("the Kling simulator's faults and limits")
    knobs.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    knobs.add_argument(
        "--concurrency", type=int, default=5, help="Kling account concurrency limit per model version (1303 past it)"
    )
    knobs.add_argument("--fail-rate", type=float, default=0.0, help="share of tasks Kling fails")
    knobs.add_argument(
        "--callback-loss", type=float, default=0.0, help="share of callbacks (and fal's webhooks) never delivered"
    )
    knobs.add_argument(
        "--callback-dup", type=float, default=0.0, help="share of callbacks (and fal's webhooks) delivered twice"
    )
    knobs.add_argument("--callback-reorder", type=float, default=0.0, help="share of callbacks delivered late")
    knobs.add_argument("--error-rate", type=float, default=0.0, help="share of API calls answered 5000-5002")
    knobs.add_argument("--rate-limit", type=float, default=0.0, help="requests per second before 1302 (0 = none)")
    knobs.add_argument(
        "--video-size",
        type=int,
        default=None,
        help="make each video a synthetic body of this many bytes, for streaming tests "
        "(default: a real, playable clip showing prompt, model and task id)",
    )
    knobs.add_argument("--cdn-drop-rate", type=float, default=0.0, help="share of downloads cut mid-body")
    knobs.add_argument("--seed", type=int, default=None, help="make the simulator's randomness repeatable")
    knobs.add_argument(
        "--kling-api",
        choices=("legacy", "new", "mixed"),
        default="mixed",
        help="Kling's API designs the bundled batch uses: legacy (access and secret keys), new (an API key; every "
        "job a newer-design model serves), or both (default); with an API key either way but legacy",
    )
    knobs.add_argument(
        "--signed-callbacks",
        action="store_true",
        help="Kling signs its callbacks with a webhook secret the stack holds too: the pipeline acts on them "
        "without asking Kling again",
    )
    knobs.add_argument(
        "--worst-case",
        action="store_true",
        help="everything Kling's contract does not promise, at once: creates that succeed but answer 5000 or "
        "a bare 502, answers cut off, query lag, drifting answer shapes, 5xx, lost/duplicated/reordered "
        "callbacks, cut downloads (a reused external_task_id is a second task in any case)",
    )
    parser.add_argument(
        "--provider",
        choices=("kling", *DOORS, "mixed"),
        default="kling",
        help="the door the jobs go through: kling (Kling's own API), fal (fal.ai's queue), replicate (Replicate's "
        "kwaivgi models), acedata (AceData Cloud's Kling API), each through its simulator and each job on a model "
        "that door serves, or mixed (the jobs in turn through every door the stack enables)",
    )
    add_aws_faults_argument(parser.add_argument_group("AWS's faults (moto plays them)"))
    parser.add_argument(
        "--kling-url",
        help="a real (or other Kling-compatible) API instead of the simulator; "
        "keys from KLING_ACCESS_KEY / KLING_SECRET_KEY",
    )
    parser.add_argument(
        "--daily-budget-units",
        type=float,
        default=0.0,
        help="the stack's DailyBudgetUnits: jobs past it wait in QUEUED for the next day (0 = no budget)",
    )
    parser.add_argument("--project-root", type=Path, default=Path())
    parser.add_argument(
        "--workers", type=int, default=2, help="execution environments per function (2 suits a 2-core machine)"
    )
    parser.set_defaults(handler=run)


def sim_config_from(args: argparse.Namespace) -> SimConfig:
    config = _knobs_config(args)
    return config.updated(WORST_CASE) if args.worst_case else config


def replicate_sim_config_from(args: argparse.Namespace) -> ReplicateSimConfig:
    """The Replicate simulator's knobs from the demo's (its webhooks lost and repeated as Kling's callbacks)."""
    return ReplicateSimConfig(
        api_token=f"r8_demo_{secrets.token_hex(12)}",
        speed=args.speed,
        seed=args.seed,
        webhook_loss_rate=args.callback_loss,
        webhook_duplicate_rate=args.callback_dup,
        video_size_bytes=args.video_size or ReplicateSimConfig().video_size_bytes,
    )


def acedata_sim_config_from(args: argparse.Namespace) -> AceDataSimConfig:
    """The AceData simulator's knobs from the demo's (its callbacks lost and repeated as Kling's callbacks)."""
    return AceDataSimConfig(
        api_token=f"demo-acedata-{secrets.token_hex(12)}",
        speed=args.speed,
        seed=args.seed,
        callback_loss_rate=args.callback_loss,
        callback_duplicate_rate=args.callback_dup,
        video_size_bytes=args.video_size or AceDataSimConfig().video_size_bytes,
    )


def fal_sim_config_from(args: argparse.Namespace) -> FalSimConfig:
    """The fal simulator's knobs from the demo's: its speed, seed, concurrency and webhook faults are the
    Kling simulator's flags (--callback-loss drops fal's webhooks too)."""
    return FalSimConfig(
        api_key=f"demo-fal-{secrets.token_hex(12)}",
        speed=args.speed,
        seed=args.seed,
        concurrency_limit=args.concurrency,
        webhook_loss_rate=args.callback_loss,
        webhook_duplicate_rate=args.callback_dup,
        video_size_bytes=args.video_size or FalSimConfig().video_size_bytes,
    )


def _knobs_config(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        access_key=f"demo-{secrets.token_hex(6)}",
        secret_key=secrets.token_urlsafe(32),
        api_key=None if getattr(args, "kling_api", "legacy") == "legacy" else f"demo-key-{secrets.token_hex(12)}",
        webhook_secret=getattr(args, "webhook_secret", None),
        speed=args.speed,
        concurrency_limit=args.concurrency,
        fail_rate=args.fail_rate,
        callback_loss_rate=args.callback_loss,
        callback_dup_rate=args.callback_dup,
        callback_reorder_rate=args.callback_reorder,
        error_5xx_rate=args.error_rate,
        rate_limit_per_s=args.rate_limit,
        video_size_bytes=args.video_size,
        cdn_drop_rate=args.cdn_drop_rate,
        seed=args.seed,
        fetch_image_urls=True,  # as Kling does: the jobs' images are presigned URLs of the local stack
    )


def load_jobs(
    jobs_file: Path | None, count: int | None, run_id: str, kling_api: str = "legacy", provider: str = "kling"
) -> list[dict[str, Any]]:
    if jobs_file is None:
        bundled = resources.files("kling_local") / "data" / "demo_jobs.jsonl"
        jobs = [json.loads(line) for line in bundled.read_text(encoding="utf-8").splitlines() if line.strip()]
        jobs = [in_design(job, kling_api, number) for number, job in enumerate(jobs)]
        source = "bundled jobs"
    else:
        jobs = read_jobs_file(jobs_file)
        source = str(jobs_file)
    if provider != "kling":
        # After cycling (below) each copy keeps its original's door; a file's jobs naming a provider keep it.
        jobs = [through_door(job, provider, number) for number, job in enumerate(jobs)]
    if not jobs:
        raise UsageError(f"{source}: no jobs")
    if count is not None:
        # Copies beyond the file get their own ids: a repeated job_id would be one job, not a new video.
        jobs = [dict(jobs[i % len(jobs)]) | ({"job_id": None} if i >= len(jobs) else {}) for i in range(count)]
        jobs = [{k: v for k, v in job.items() if v is not None} for job in jobs]
    for number, job in enumerate(jobs, start=1):
        job.setdefault("job_id", f"demo-{run_id}-{number:03d}")
    return validate_jobs(jobs, source)


def through_door(job: dict[str, Any], provider: str, number: int) -> dict[str, Any]:
    """The job as `--provider` sends it: fal, replicate or acedata, every job through that door; mixed, the
    jobs in turn through Kling's own API and every other door (all enabled in the local stack). A job
    already naming its provider keeps it."""
    if job.get("provider"):
        return job
    if provider == "mixed":
        provider = ("kling", *DOORS)[number % (1 + len(DOORS))]
    if provider == "kling":
        return job
    return fal_variant(job) if provider == "fal" else door_variant(job, provider)


def door_variant(job: dict[str, Any], provider: str) -> dict[str, Any]:
    """The job on a model Replicate or AceData serves (Kling 2.5 turbo pro on Replicate; the job's own model
    on AceData when it serves it, else kling-v2-6), with what the door has no place for left out; a job that
    still does not fit becomes a plain 5 s text to video of its prompt."""
    kind = "image2video" if job.get("kind") == "image2video" and isinstance(job.get("image"), str) else "text2video"
    duration = str(job.get("duration", "5"))
    duration = duration if duration in ("5", "10") else "5"
    keep: tuple[str, ...]
    if provider == "replicate":
        model, keep = "kling-v2-5-turbo", ("job_id", "metadata", "negative_prompt", "priority")
    else:
        model = job["model"] if job.get("model") in ACEDATA_MODELS else "kling-v2-6"
        keep = ("job_id", "metadata", "negative_prompt", "cfg_scale", "sound", "priority")
    variant: dict[str, Any] = {
        "prompt": job["prompt"],
        "provider": provider,
        "model": model,
        "mode": "pro",
        "duration": duration,
        "kind": kind,
    }
    variant |= {key: job[key] for key in keep if key in job}
    if kind == "image2video":
        variant["image"] = job["image"]
    elif "aspect_ratio" in job:
        variant["aspect_ratio"] = job["aspect_ratio"]
    try:
        request = JobRequest.model_validate(variant)
        fits = not DOORS[provider].problems(request, model)
    except ValidationError:
        fits = False
    if not fits:
        plain = {"prompt": job["prompt"], "provider": provider, "model": "kling-v2-5-turbo", "mode": "pro"}
        if provider == "acedata":
            plain["model"] = "kling-v2-6"
        return plain | {"duration": "5"} | {key: job[key] for key in ("job_id", "metadata") if key in job}
    return variant


def fal_variant(job: dict[str, Any]) -> dict[str, Any]:
    """The job on a model and mode fal serves (providers/fal.py ENDPOINTS), with what fal's endpoints have no
    place for left out; a job that still does not fit becomes a plain 5 s text to video of its prompt."""
    kind = "image2video" if job.get("kind") == "image2video" and isinstance(job.get("image"), str) else "text2video"
    duration = str(job.get("duration", "5"))
    v3 = job.get("model") in ("kling-v3", "kling-3.0") or duration not in ("5", "10") or kind == "image2video"
    variant: dict[str, Any] = {
        "prompt": job["prompt"],
        "provider": "fal",
        "model": "kling-v3" if v3 else "kling-v2-6",
        "mode": FAL_MODE,
        "duration": duration,
        "kind": kind,
    }
    keep = ("job_id", "metadata", "negative_prompt", "cfg_scale", "sound", "priority")
    variant |= {key: job[key] for key in keep if key in job}
    if kind == "image2video":
        variant["image"] = job["image"]
    elif "aspect_ratio" in job:
        variant["aspect_ratio"] = job["aspect_ratio"]
    try:
        JobRequest.model_validate(variant)
    except ValidationError:
        plain = {"prompt": job["prompt"], "provider": "fal", "model": "kling-v3", "mode": FAL_MODE, "duration": "5"}
        return plain | {key: job[key] for key in ("job_id", "metadata") if key in job}
    return variant


def in_design(job: dict[str, Any], kling_api: str, number: int = 0) -> dict[str, Any]:
    """A bundled job on the models `--kling-api` asks for: legacy as written; mixed, the jobs naming a model
    the newer design serves too, and every second job of its kinds left to the default model; new, every
    job of its kinds. A job the newer rules refuse (camera control, a chain) stays as it is."""
    if kling_api == "legacy" or job.get("extend"):
        return job
    kind = job.get("kind", "text2video")
    default = "model" not in job and (kling_api == "new" or number % 2 == 1)
    model = NEWER_MODELS.get(job.get("model", "")) or (NEWER_DEFAULTS.get(kind) if default else None)
    if model is None:
        return job
    moved = job | {"model": model}
    if model == "kling-2.6":
        moved |= {"duration": "10" if str(job.get("duration")) == "10" else "5"}
        if job.get("sound"):
            moved["resolution"] = "1080p"  # the newer rules: native audio only at 1080p
    try:
        JobRequest.model_validate(moved)
    except ValidationError:
        return job
    return moved


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json)
    run_id = datetime.now().strftime("%H%M%S") + uuid.uuid4().hex[:4]
    if args.signed_callbacks and args.kling_url:
        console.print(
            "[red]error:[/red] --signed-callbacks is the simulator's: a real Kling's secret is set in its console"
        )
        return 2
    args.webhook_secret = generate_kling_webhook_secret() if args.signed_callbacks else None
    try:
        jobs = load_jobs(args.jobs_file, args.count, run_id, args.kling_api, args.provider)
    except UsageError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    options = StackOptions(
        project_root=args.project_root,
        template_path=args.project_root / "template.yaml",
        max_concurrency=args.workers,
        # The simulator compresses Kling's time by --speed: the schedules and the pipeline's expectations
        # of Kling (poll cadence, timeouts) follow, so the demo's minutes are Kling's hours.
        clock_speed=args.speed,
        time_scale=args.speed,
        # The pipeline is told the account's concurrency the simulator enforces (its slots: slots.py).
        parameter_overrides={"KlingConcurrency": args.concurrency}
        | ({"DailyBudgetUnits": args.daily_budget_units} if args.daily_budget_units else {}),
        aws_faults=aws_faults_from(args.aws_faults, args.seed),
        # The demo's stack is its own: it never writes the state file (a `local up` running from the same
        # folder keeps it, and the commands keep finding that stack) and logs into a folder of its run.
        write_state_file=False,
        log_dir=demo_log_dir(args.project_root, run_id),
        # The simulator signs its callbacks with it, and the stack's KlingWebhookSecret holds it.
        kling_webhook_secret=args.webhook_secret,
    )
    if args.daily_budget_units < 0:
        console.print("[red]error:[/red] --daily-budget-units must be 0 (no budget) or more")
        return 2
    if args.kling_url:
        options.kling_url = args.kling_url
        keys = kling_keys(args.kling_url, args.kling_keys_file)
        assert keys is not None  # with a kling_url
        options.kling_access_key, options.kling_secret_key = keys.access_key, keys.secret_key
        options.kling_api_key = keys.api_key
    else:
        options.sim_config = sim_config_from(args)
    options.fal_sim_config = fal_sim_config_from(args)
    options.replicate_sim_config = replicate_sim_config_from(args)
    options.acedata_sim_config = acedata_sim_config_from(args)
    try:
        with console.status("starting the local stack: template.yaml into moto, functions, Kling simulator..."):
            stack = LocalStack(options).start()
    except (StackError, TemplateError, DeployError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    try:
        summary = drive_batch(stack, jobs, args, console, run_id)
    finally:
        stack.stop()
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        print_summary(summary, console)
        if summary.out_dir:
            console.print(
                f"{len(summary.copied)} video(s) of this run copied to {Path(summary.out_dir).resolve()} "
                f"(open them with any player; {summary.index_file} says which job, kind and prompt each is)"
            )
    most = max(summary.fal_creates_max or 0, summary.replicate_creates_max or 0, summary.acedata_creates_max or 0)
    return 0 if summary.lost == 0 and not summary.double_charged and most <= 1 else 1


def demo_log_dir(project_root: Path, run_id: str) -> Path:
    """The function logs of one demo run, apart from `local up`'s (.kling-pipeline/logs)."""
    return project_root.resolve() / STATE_DIR / "demo-runs" / run_id / "logs"


def connection_of(stack: LocalStack) -> PipelineConnection:
    return PipelineConnection.of_local_stack(stack.endpoints)


def drive_batch(
    stack: LocalStack, jobs: list[dict[str, Any]], args: argparse.Namespace, console: Console, run_id: str | None = None
) -> DemoSummary:
    connection = connection_of(stack)
    store = connection.store()
    put_sample_inputs(stack)
    started = time.monotonic()
    job_ids = send_jobs(connection, jobs)
    current: dict[str, Job] = {}
    last_change = time.monotonic()
    with Progress(
        TextColumn("[bold]videos"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=args.json,
    ) as progress:
        bar = progress.add_task("videos", total=len(job_ids), states="", rate="")
        while True:
            seen = store.get_many(job_ids)
            if {k: v.version for k, v in seen.items()} != {k: v.version for k, v in current.items()}:
                last_change = time.monotonic()
            current = seen
            counts = Counter(job.state.value for job in current.values())
            finished = sum(1 for job in current.values() if job.is_terminal)
            held = sum(1 for job in current.values() if held_for_budget(job))
            elapsed = time.monotonic() - started
            progress.update(
                bar,
                completed=finished,
                states="  ".join(f"{state.lower()} {n}" for state, n in sorted(counts.items())),
                rate=f"{counts.get('COMPLETED', 0) / elapsed * 60:.1f}/min",
            )
            if finished + held == len(job_ids):
                break  # every job ended, or waits for the next day's budget
            if elapsed > args.timeout:
                break
            if time.monotonic() - last_change > args.stall and kling_idle(stack):
                break  # nothing moves and Kling has nothing running: the rest is lost (see summary)
            time.sleep(1.0)
    return summarize(
        stack,
        connection,
        current,
        job_ids,
        time.monotonic() - started,
        args.out,
        args.daily_budget_units,
        run_id=run_id,
    )


def put_sample_inputs(stack: LocalStack) -> None:
    """The bundled jobs' s3:// images, into the stack's input bucket (a user keeps theirs there)."""
    bucket = stack.endpoints.get("input_bucket")
    if not bucket:
        return
    s3 = stack.client("s3")
    for key, (width, height, image_format) in SAMPLE_INPUTS.items():
        s3.put_object(Bucket=bucket, Key=key, Body=sample_image(width, height, image_format))


def held_for_budget(job: Job) -> bool:
    return job.state is JobState.QUEUED and job.held_for == HELD_FOR_BUDGET


def kling_idle(stack: LocalStack) -> bool:
    """Neither simulator has anything generating (fal: queued or running either) and the stack is idle."""
    if stack.simulator is None:
        return False
    by_status = stack.simulator.stats()["tasks_by_status"]
    running = int(by_status.get("submitted", 0)) + int(by_status.get("processing", 0))
    if stack.fal_simulator is not None:
        fal = stack.fal_simulator.stats()
        running += int(fal["queued"]) + int(fal["running"])
    if stack.replicate_simulator is not None:
        replicate = stack.replicate_simulator.stats()
        running += int(replicate["starting"]) + int(replicate["processing"])
    if stack.acedata_simulator is not None:
        running += int(stack.acedata_simulator.stats()["processing"])
    return running == 0 and stack.wait_idle(timeout_s=1.0, settle_s=0.3)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def slot_figures(stats: dict[str, Any] | None) -> dict[str, Any]:
    """The summary's slot figures from the simulator's stats (kling_local.sim.slot_use)."""
    if stats is None:
        return {}
    gaps = stats["slots"]["idle_gap_s"]
    return {
        "slot_busy_share": stats["slots"]["busy_share"],
        "kling_1303": int(stats["creates"]["refused_by_code"].get("1303", 0)),
        "idle_gap_p50_s": gaps["p50"],
        "idle_gap_p95_s": gaps["p95"],
    }


def summarize(
    stack: LocalStack,
    connection: PipelineConnection,
    jobs: dict[str, Job],
    job_ids: list[str],
    duration_s: float,
    out_dir: Path | None,
    daily_budget_units: float = 0.0,
    run_id: str | None = None,
) -> DemoSummary:
    counts = Counter(job.state for job in jobs.values())
    today = datetime.now(UTC).date()
    notice: list[float] = []
    settle: list[float] = []
    for job in jobs.values():
        finished_ms = job.kling_finished_at
        completed_at = next((h.at for h in job.history if h.state is JobState.COMPLETED), None)
        if job.state is JobState.COMPLETED and finished_ms and completed_at:
            stored = datetime.fromisoformat(completed_at.replace("Z", "+00:00")).timestamp()
            notice.append(max(0.0, stored - float(finished_ms) / 1000))
        noticed_at = next((h.at for h in job.history if h.state is JobState.DOWNLOADING), None)
        if finished_ms and noticed_at:
            noticed = datetime.fromisoformat(noticed_at.replace("Z", "+00:00")).timestamp()
            settle.append(max(0.0, noticed - float(finished_ms) / 1000))
    stats = stack.simulator.stats() if stack.simulator else None
    creates = gets = double = gets_max = queries = None
    units = None
    if stats is not None:
        calls: dict[str, int] = stats["calls"]
        creates = int(stats["creates"]["accepted"])
        double = int(stats["double_charged_external_ids"])
        per_task: dict[str, int] = stats["gets_per_task"]
        gets_max = max((per_task.get(job.task_id, 0) for job in jobs.values() if job.task_id), default=0)
        gets = sum(n for name, n in calls.items() if name.startswith("GET") and "account/" not in name)
        queries = int(stats["kling_queries"])
        units = float(stats["units_charged_total"])
    fal_jobs = [job_id for job_id, job in jobs.items() if job.request.get("provider") == "fal"]
    fal_creates = fal_max = None
    if stack.fal_simulator is not None:
        fal_stats = stack.fal_simulator.stats()
        fal_creates = int(fal_stats["creates"])
        # fal's webhook URL names our job (…/callbacks/<job_id>/fal): its creates are counted per job.
        fal_max = int(fal_stats["max_creates_per_webhook"])
    doors = door_figures(stack, jobs)
    s3 = connection.client("s3")
    objects = s3.list_objects_v2(Bucket=connection.bucket, Prefix="videos/").get("KeyCount", 0)
    copied: list[str] = []
    index_file = None
    if out_dir is not None:
        copied, index_file = copy_out(s3, [jobs[job_id] for job_id in job_ids if job_id in jobs], out_dir, run_id)
    missing = [job_id for job_id in job_ids if job_id not in jobs]
    held = [job for job in jobs.values() if held_for_budget(job)]
    lost = [
        {"job_id": job.job_id, "state": job.state.value, "task_id": job.task_id or ""}
        for job in jobs.values()
        if not job.is_terminal and not held_for_budget(job)
    ] + [{"job_id": job_id, "state": "never recorded", "task_id": ""} for job_id in missing]
    return DemoSummary(
        jobs=len(job_ids),
        completed=counts.get(JobState.COMPLETED, 0),
        failed=counts.get(JobState.FAILED, 0),
        timed_out=counts.get(JobState.TIMED_OUT, 0),
        lost=len(lost),
        kling_creates=creates,
        double_charged=double,
        kling_gets=gets,
        kling_gets_per_job=round(gets / len(job_ids), 2) if gets is not None else None,
        kling_gets_max=gets_max,
        kling_queries=queries,
        kling_calls_per_job=round((creates + gets) / len(job_ids), 2)
        if creates is not None and gets is not None
        else None,
        s3_objects=int(objects),
        notice_p50_s=percentile(notice, 50),
        notice_p95_s=percentile(notice, 95),
        settle_p50_s=percentile(settle, 50),
        settle_p95_s=percentile(settle, 95),
        units_charged=units,
        units_counted=cost_report(connection, today, today, "day").units,
        daily_budget_units=daily_budget_units,
        held_for_budget=len(held),
        duration_s=round(duration_s, 2),
        bucket=connection.bucket,
        failures=[
            {"job_id": job.job_id, "error_code": job.error_code or "", "error_message": job.error_message or ""}
            for job in jobs.values()
            if job.state in (JobState.FAILED, JobState.TIMED_OUT)
        ],
        lost_jobs=lost,
        out_dir=str(out_dir) if out_dir else None,
        copied=copied,
        index_file=index_file,
        log_dir=stack.endpoints.get("log_dir"),
        function_cold_starts={name: s.get("cold_starts", 0) for name, s in stack.function_stats().items()},
        settled_by=dict(Counter(how for how in map(settled_by, jobs.values()) if how is not None)),
        aws_faults_injected=stack.aws_fault_stats(),
        fal_jobs=len(fal_jobs),
        fal_creates=fal_creates,
        fal_creates_max=fal_max,
        **doors,
        **slot_figures(stats),
    )


def door_figures(stack: LocalStack, jobs: Mapping[str, Job]) -> dict[str, Any]:
    """Replicate's and AceData's jobs and the creates their simulators counted (total, and the most for any
    one job: their webhook URLs name our jobs, so above 1 is a job made, and billed, twice)."""
    figures: dict[str, Any] = {}
    for name, simulator, most in (
        ("replicate", stack.replicate_simulator, "max_creates_per_webhook"),
        ("acedata", stack.acedata_simulator, "max_creates_per_callback"),
    ):
        figures[f"{name}_jobs"] = sum(1 for job in jobs.values() if job.request.get("provider") == name)
        stats = simulator.stats() if simulator is not None else None
        figures[f"{name}_creates"] = int(stats["creates"]) if stats is not None else None
        figures[f"{name}_creates_max"] = int(stats[most]) if stats is not None else None
    return figures


def copy_out(s3: Any, jobs: list[Job], out_dir: Path, run_id: str | None) -> tuple[list[str], str]:
    """This run's videos into `out_dir`, named `<job_id>-<kind>.mp4`, and an index of the run
    (`demo-<run>.json`: each job's file, kind, model, prompt, sound and end), so a file leads to its request."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    entries: list[dict[str, Any]] = []
    for job in jobs:
        name = None
        if job.state is JobState.COMPLETED and job.s3_uri:
            bucket, _, key = job.s3_uri.removeprefix("s3://").partition("/")
            name = f"{job.job_id}-{job.kind}.mp4"
            s3.download_file(bucket, key, str(out_dir / name))
            copied.append(name)
        request = job.request
        entries.append(
            {
                "job_id": job.job_id,
                "file": name,
                "kind": job.kind,
                "model": job.model_name or request.get("model"),
                "prompt": request.get("prompt", ""),
                "sound": request.get("sound"),
                "state": job.state.value,
                "error": job.error_message,
            }
        )
    index = out_dir / f"demo-{run_id or datetime.now().strftime('%H%M%S')}.json"
    index.write_text(json.dumps({"jobs": entries}, indent=2) + "\n", encoding="utf-8")
    return copied, str(index.resolve())


def settled_by(job: Job) -> str | None:
    """Who settled the job's Kling task (moved it on from Kling's answer), or repaired its download."""
    if any(h.by == "poller-repair" for h in job.history):
        return "repair"
    for entry in job.history:
        if entry.state in (JobState.DOWNLOADING, JobState.FAILED) and entry.by in ("callback", "poller", "submit"):
            return {"callback": "callback", "poller": "poll", "submit": "reconciliation"}[entry.by]
    return None


def print_summary(summary: DemoSummary, console: Console) -> None:
    table = Table(title=f"{summary.jobs} video requests in {summary.duration_s:.1f} s", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("completed", f"[green]{summary.completed}[/green]")
    table.add_row("failed", f"[red]{summary.failed}[/red]" if summary.failed else "0")
    table.add_row("timed out", str(summary.timed_out))
    if summary.settled_by:
        table.add_row("settled by", ", ".join(f"{how} {n}" for how, n in sorted(summary.settled_by.items())))
    if summary.aws_faults_injected:
        table.add_row(
            "AWS faults answered",
            ", ".join(f"{kind} {n}" for kind, n in sorted(summary.aws_faults_injected.items())),
        )
    table.add_row("lost (in no final state)", f"[red]{summary.lost}[/red]" if summary.lost else "0")
    if summary.kling_creates is not None:
        table.add_row(
            "Kling calls",
            f"{summary.kling_creates} creates, {summary.kling_gets} gets ({summary.kling_gets_per_job} per job, "
            f"at most {summary.kling_gets_max}); {summary.kling_queries} query calls",
        )
        table.add_row(
            "units charged",
            f"{summary.units_charged:g} by Kling's count, {summary.units_counted:g} in the pipeline's ledger"
            + (f" (daily budget {summary.daily_budget_units:g})" if summary.daily_budget_units else ""),
        )
    if summary.fal_jobs or summary.fal_creates:
        table.add_row(
            "fal calls",
            f"{summary.fal_creates} creates for {summary.fal_jobs} fal job(s), at most {summary.fal_creates_max} "
            "for any one job",
        )
    for name, jobs, creates, most in (
        ("Replicate", summary.replicate_jobs, summary.replicate_creates, summary.replicate_creates_max),
        ("AceData", summary.acedata_jobs, summary.acedata_creates, summary.acedata_creates_max),
    ):
        if jobs or creates:
            table.add_row(f"{name} calls", f"{creates} creates for {jobs} job(s), at most {most} for any one job")
    if summary.daily_budget_units:
        table.add_row("held for the budget", f"{summary.held_for_budget} (QUEUED until the next day's budget)")
    if summary.double_charged is not None:
        double = summary.double_charged
        table.add_row("paid twice", f"[red]{double} task(s)[/red]" if double else "0")
    if summary.slot_busy_share is not None or summary.kling_1303 is not None:
        gap = (
            f"idle gap after a task's end p50 {summary.idle_gap_p50_s:.2f} s, p95 {summary.idle_gap_p95_s:.2f} s"
            if summary.idle_gap_p50_s is not None and summary.idle_gap_p95_s is not None
            else "no slot refilled after a task's end"
        )
        busy = "unknown" if summary.slot_busy_share is None else f"{summary.slot_busy_share:.2f}"
        table.add_row("Kling's slots", f"busy {busy} of the time; {summary.kling_1303} answers 1303; {gap}")
    if summary.notice_p50_s is not None:
        table.add_row("Kling 'succeed' -> in S3", f"p50 {summary.notice_p50_s:.2f} s, p95 {summary.notice_p95_s:.2f} s")
    table.add_row("videos", f"{summary.s3_objects} objects in s3://{summary.bucket}/videos/ (local moto, gone on exit)")
    if summary.out_dir:
        table.add_row("copied to", summary.out_dir)
    console.print(table)
    if summary.failures:
        reasons = Table("job", "code", "why", title="failed")
        for failure in summary.failures:
            reasons.add_row(failure["job_id"], failure["error_code"], failure["error_message"])
        console.print(reasons)
    if summary.lost:
        by_state = Counter(j["state"] for j in summary.lost_jobs)
        console.print(
            f"[red]{summary.lost} job(s) never reached a final state[/red] ("
            + ", ".join(f"{n} {state}" for state, n in by_state.items())
            + "). QUEUED: still waiting for Kling capacity when the demo stopped (raise --timeout); "
            "SUBMITTED/PROCESSING/DOWNLOADING: the demo stopped before the poller settled them (raise --timeout). "
            + ", ".join(j["job_id"] for j in summary.lost_jobs[:10])
        )
