"""Commands for producers and operators: submit, status, list, watch, get, dlq, settle.

They talk to the pipeline only through its public surfaces (the queue, the table, the bucket, the
DLQ), so they work the same against the local stack and a deployed stack.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kling_local.api_client import ApiClientError, JobsApiClient
from kling_local.connection import ConnectionError_, PipelineConnection, add_connection_arguments, connect
from kling_pipeline.errors import TransitionRejectedError
from kling_pipeline.job_ids import is_valid_job_id, job_reference
from kling_pipeline.lifecycle import Job, JobState, public_step
from kling_pipeline.requests import JOB_KINDS, JobRequest, describe_validation_error

STUCK_AFTER_S = 900.0
console = Console()
err = Console(stderr=True)


class UsageError(RuntimeError):
    """Bad input on the command line or in a jobs file: the message names the line and field."""


def register(subparsers: Any) -> None:
    submit = subparsers.add_parser("submit", help="send one job (flags) or many (--file JSONL/CSV) to the queue")
    submit.add_argument("--file", type=Path, help="jobs as JSON lines or CSV (columns = job fields)")
    submit.add_argument("--prompt")
    submit.add_argument("--job-id", help="your idempotency key (default: the SQS message id)")
    submit.add_argument(
        "--kind", choices=list(JOB_KINDS), help="default: text2video, or image2video / multi-image2video with --image"
    )
    submit.add_argument("--model", help="Kling model_name (e.g. kling-v3); unknown models pass with a warning")
    submit.add_argument("--mode", choices=["std", "pro"])
    submit.add_argument("--duration", help="seconds: 5 or 10 for v1.x-v2.x models, 3 to 15 for v3 and omni")
    submit.add_argument("--aspect-ratio", choices=["16:9", "9:16", "1:1"])
    submit.add_argument("--negative-prompt")
    submit.add_argument("--cfg-scale", type=float, help="0 to 1")
    submit.add_argument(
        "--sound", action=argparse.BooleanOptionalAction, default=None, help="generate sound (kling-v2-6 and later)"
    )
    submit.add_argument("--watermark", action=argparse.BooleanOptionalAction, default=None, help="Kling's watermark")
    submit.add_argument(
        "--image",
        action="append",
        help="an https URL, s3://bucket/key (the input bucket) or raw base64; repeat for multi-image2video / "
        "omni-video (image_list)",
    )
    submit.add_argument("--image-tail", help="image2video: the end frame (needs --mode pro)")
    submit.add_argument("--video-id", help="video-extend: the id of a video from an earlier result")
    submit.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a Kling field the job has none for, sent as is (kling_options); VALUE is read as JSON when it "
        "parses (true, 3, {...}), else as text; repeatable",
    )
    submit.add_argument(
        "--extend",
        action="append",
        metavar="PROMPT",
        help="an extend chain: after the video, Kling extends it with this prompt (about 4.5 s more); "
        "repeatable, one step each; only videos of kling-v1/v1-5/v1-6 extend",
    )
    submit.add_argument("--metadata", help="a JSON object stored with the job and its video")
    submit.set_defaults(handler=guarded(cmd_submit))

    status = subparsers.add_parser("status", help="a job's state, history, and video or error")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="print the job as JSON")
    status.set_defaults(handler=guarded(cmd_status))

    listing = subparsers.add_parser("list", help="jobs, optionally by state")
    listing.add_argument("--state", action="append", choices=[s.value for s in JobState], help="repeatable")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument(
        "--stuck",
        nargs="?",
        type=float,
        const=STUCK_AFTER_S,
        default=None,
        metavar="SECONDS",
        help=f"only live jobs not moved for SECONDS (default {STUCK_AFTER_S:g}): the ones to look at",
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=guarded(cmd_list))

    watch = subparsers.add_parser("watch", help="live counts of jobs by state (Ctrl-C to stop)")
    watch.add_argument("--interval", type=float, default=1.0)
    watch.add_argument("--until-done", action="store_true", help="stop when no job is live")
    watch.set_defaults(handler=guarded(cmd_watch))

    get = subparsers.add_parser("get", help="download a finished job's video")
    get.add_argument("job_id")
    get.add_argument("--out", type=Path, required=True, help="file to write (e.g. video.mp4)")
    get.set_defaults(handler=guarded(cmd_get))

    dlq = subparsers.add_parser("dlq", help="show dead-lettered messages with their reasons; --redrive them")
    dlq.add_argument("--redrive", action="store_true", help="send them back to the jobs queue")
    dlq.add_argument("--message-id", action="append", help="only these messages (repeatable)")
    dlq.add_argument("--max", type=int, default=100)
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(handler=guarded(cmd_dlq))

    cancel = subparsers.add_parser("cancel", help="cancel a job not yet sent to Kling (through the jobs API)")
    cancel.add_argument("job_id")
    cancel.set_defaults(handler=guarded(cmd_cancel))

    settle = subparsers.add_parser(
        "settle",
        help="settle a job FAILED with KLING_UNSETTLED from what Kling's console shows: record its task, or "
        "have it created",
    )
    settle.add_argument("job_id")
    found = settle.add_mutually_exclusive_group(required=True)
    found.add_argument("--task-id", help="the task Kling made under the job's external_task_id: its video is collected")
    found.add_argument(
        "--no-task", action="store_true", help="Kling has no task under the job's external_task_id: create it"
    )
    settle.set_defaults(handler=guarded(cmd_settle))

    for parser in (submit, status, listing, watch, get, dlq, settle):
        add_connection_arguments(parser)
    for parser in (submit, status, listing, cancel):
        parser.add_argument(
            "--api-url",
            required=parser is cancel,
            help="use the jobs API at this URL (the JobsApiUrl output; SigV4-signed, unsigned for 127.0.0.1)",
        )


def guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = command(args, None if getattr(args, "api_url", None) else connect(args))
            return result
        except ApiClientError as exc:
            err.print(f"[red]error:[/red] the jobs API said {exc}")
            return 2
        except (ConnectionError_, UsageError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
        except NoCredentialsError:
            err.print("[red]error:[/red] AWS credentials not found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and friends")
            return 2
        except ClientError as exc:
            error = exc.response.get("Error", {})
            err.print(f"[red]error:[/red] AWS said {error.get('Code')}: {error.get('Message')}")
            return 2
        except BotoCoreError as exc:
            err.print(f"[red]error:[/red] cannot reach AWS: {exc}")
            return 2

    return run


# ---------------------------------------------------------------------------------------------- submit


def read_jobs_file(path: Path) -> list[dict[str, Any]]:
    """JSONL (one object per line) or CSV (a header of job fields; `metadata` as JSON)."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = []
        for row in csv.DictReader(text.splitlines()):
            job: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
            if "metadata" in job:
                try:
                    job["metadata"] = json.loads(job["metadata"])
                except ValueError as exc:
                    raise UsageError(f"{path}: metadata must be a JSON object ({exc})") from exc
            rows.append(job)
        return rows
    jobs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise UsageError(f"{path}:{number}: each line must be a JSON object")
        jobs.append(value)
    return jobs


def validate_jobs(jobs: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """All or nothing: a batch with a bad job is not sent, and every bad job is named."""
    problems = []
    for number, job in enumerate(jobs, start=1):
        try:
            request = JobRequest.model_validate(job)
        except ValidationError as exc:
            problems.append(f"{source} job {number}: {describe_validation_error(exc)}")
            continue
        for warning in request.warnings:
            err.print(f"[yellow]warning:[/yellow] {source} job {number}: {warning}")
    if problems:
        raise UsageError("nothing sent; fix these first:\n  " + "\n  ".join(problems))
    return jobs


def send_jobs(connection: PipelineConnection, jobs: list[dict[str, Any]]) -> list[str]:
    """Send in batches of 10; returns the job ids (the producer's, or the SQS message id)."""
    sqs = connection.client("sqs")
    job_ids: list[str] = []
    for start in range(0, len(jobs), 10):
        chunk = jobs[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=connection.queue_url,
            Entries=[{"Id": str(i), "MessageBody": json.dumps(job)} for i, job in enumerate(chunk)],
        )
        if response.get("Failed"):
            reasons = "; ".join(f"job {start + int(f['Id']) + 1}: {f.get('Message')}" for f in response["Failed"])
            raise UsageError(f"SQS refused some messages ({reasons}); {len(job_ids)} were sent before")
        by_id = {int(s["Id"]): s["MessageId"] for s in response["Successful"]}
        job_ids.extend(str(job.get("job_id") or by_id[i]) for i, job in enumerate(chunk))
    return job_ids


def images_of(kind: str | None, images: list[str]) -> dict[str, Any]:
    """--kind and --image as job fields: one image is image2video's `image`, several (or any for
    multi-image2video / omni-video) are `image_list`; the kind follows the images unless given."""
    if not images:
        return {"kind": kind}
    if kind is None:
        kind = "image2video" if len(images) == 1 else "multi-image2video"
    if kind in ("multi-image2video", "omni-video"):
        return {"kind": kind, "image_list": images}
    if len(images) > 1:
        raise UsageError("several --image need --kind multi-image2video or omni-video")
    return {"kind": kind, "image": images[0]}


def parse_options(options: list[str] | None) -> dict[str, Any] | None:
    """--option KEY=VALUE pairs as kling_options; a VALUE that parses as JSON is taken as JSON."""
    if not options:
        return None
    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {option!r}: write it as KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value
    return parsed


def job_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """One job from `submit`'s flags, unset ones left out (the job's defaults apply)."""
    if not args.prompt and not args.image and not args.video_id:
        raise UsageError("give --prompt (or --image / --video-id), or --file with many jobs")
    job: dict[str, Any] = {
        "prompt": args.prompt,
        "job_id": args.job_id,
        "model": args.model,
        "mode": args.mode,
        "duration": args.duration,
        "aspect_ratio": args.aspect_ratio,
        "negative_prompt": args.negative_prompt,
        "cfg_scale": args.cfg_scale,
        "sound": args.sound,
        "watermark": args.watermark,
        "image_tail": args.image_tail,
        "video_id": args.video_id,
        "kling_options": parse_options(args.option),
        "extend": [{"prompt": prompt} for prompt in args.extend] if args.extend else None,
    } | images_of(args.kind, args.image or [])
    if args.metadata:
        try:
            job["metadata"] = json.loads(args.metadata)
        except ValueError as exc:
            raise UsageError(f"--metadata must be a JSON object ({exc})") from exc
    return {k: v for k, v in job.items() if v is not None}


def cmd_submit(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.file:
        jobs = read_jobs_file(args.file)
        source = str(args.file)
    else:
        jobs = [job_from_flags(args)]
        source = "command line"
    jobs = validate_jobs(jobs, source)
    if args.api_url:
        return submit_through_api(JobsApiClient(args.api_url), jobs)
    assert connection is not None
    for job_id in send_jobs(connection, jobs):
        print(job_id)
    return 0


def submit_through_api(api: JobsApiClient, jobs: list[dict[str, Any]]) -> int:
    """POST /jobs, a hundred at a time; prints each job id and what became of it (exit 1 on a conflict)."""
    conflicts = 0
    for start in range(0, len(jobs), 100):
        answer = api.call("POST", "/jobs", body={"jobs": jobs[start : start + 100]})
        for item in answer["jobs"]:
            print(
                f"{item['job_id']}\t{item['outcome']}" + (f"\t{item['error']['message']}" if item.get("error") else "")
            )
            conflicts += item["outcome"] != "accepted" and item["outcome"] != "existing"
    return 1 if conflicts else 0


# ---------------------------------------------------------------------------------------------- status


def job_summary(job: Job) -> dict[str, Any]:
    extra = job.model_extra or {}
    next_poll = (
        datetime.fromtimestamp(job.next_poll_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if job.next_poll_at and not job.is_terminal
        else None
    )
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "kind": job.kind,
        "prompt": job.request.get("prompt", ""),
        "task_id": job.task_id,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "s3_uri": job.s3_uri,
        "video_size": extra.get("video_size"),
        "sha256": extra.get("sha256"),
        "units_charged": job.total_units,  # every step's, for an extend chain
        "step": f"{job.step} of {job.total_steps}" if job.is_chain else None,
        "steps": [public_step(step) for step in job.steps] if job.is_chain else None,
        "reserved_units": job.reserved_units,  # held of its day's budget (DailyBudgetUnits)
        "held_for": job.held_for,  # why a QUEUED job waits, such as "daily budget reached"
        "error_code": job.error_code,
        "error_message": job.error_message,
        "next_poll_at": next_poll,  # when the stale-job poller looks at it next (live jobs)
        "polls": job.poll_count,
        "history": [h.model_dump(exclude_none=True) for h in job.history],
    }


def cmd_status(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.api_url:
        print(json.dumps(JobsApiClient(args.api_url).call("GET", f"/jobs/{args.job_id}"), indent=2))
        return 0
    assert connection is not None
    job = connection.store().find(args.job_id)
    if job is None:
        raise UsageError(f"no job {args.job_id} in {connection.table} ({connection.where})")
    summary = job_summary(job)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    console.print(f"[bold]{job.job_id}[/bold]  {_state_style(job.state)}  ({job.kind})")
    console.print(f"prompt: {summary['prompt'][:200]}")
    if job.task_id:
        console.print(f"Kling task: {job.task_id}")
    if job.s3_uri:
        console.print(f"video: {job.s3_uri}  ({summary['video_size']} bytes, sha256 {summary['sha256']})")
    if job.error_message:
        console.print(f"[red]error {job.error_code}:[/red] {job.error_message}")
    if job.is_chain:
        at = "done" if job.is_terminal else f"at step {job.step}"
        console.print(f"extend chain of {job.total_steps} steps, {at}:")
        for step in job.steps:
            made = f"{step.get('duration')} s, {step.get('units_charged')} units"
            console.print(f"  step {step['step']}: {step['s3_uri']}  ({made})")
    if job.total_units is not None:
        console.print(f"units charged by Kling: {job.total_units}")
    elif job.reserved_units is not None:
        console.print(f"units held of {job.reserved_day}'s budget: {job.reserved_units:g} (an estimate)")
    if job.held_for and job.state is JobState.QUEUED:
        console.print(f"[yellow]waiting:[/yellow] {job.held_for}")
    if summary["next_poll_at"]:
        wait = int((job.next_poll_at or 0) - time.time())
        when = f"in {wait} s" if wait > 0 else f"{-wait} s overdue"
        console.print(f"next look by the poller: {summary['next_poll_at']} ({when}; polled {job.poll_count} times)")
    table = Table("state", "at", "by", "note", title="history")
    for entry in job.history:
        table.add_row(entry.state.value, entry.at, entry.by, entry.note or "")
    console.print(table)
    return 0


def _state_style(state: JobState) -> str:
    color = {"COMPLETED": "green", "FAILED": "red", "TIMED_OUT": "red"}.get(state.value, "yellow")
    return f"[{color}]{state.value}[/{color}]"


# ---------------------------------------------------------------------------------------------- list/watch


def scan_jobs(connection: PipelineConnection, states: list[str] | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """A scan is fine for operator use (a few thousand jobs); the pipeline itself never scans."""
    dynamodb = connection.client("dynamodb")
    kwargs: dict[str, Any] = {
        "TableName": connection.table,
        "ProjectionExpression": "job_id, #s, updated_at, error_code, s3_uri, next_poll_at",
        "ExpressionAttributeNames": {"#s": "state"},
    }
    if states:
        kwargs["FilterExpression"] = "#s IN (" + ", ".join(f":s{i}" for i in range(len(states))) + ")"
        kwargs["ExpressionAttributeValues"] = {f":s{i}": {"S": s} for i, s in enumerate(states)}
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(**kwargs):
        items.extend({k: next(iter(v.values())) for k, v in item.items()} for item in page["Items"])
    items.sort(key=lambda item: str(item.get("updated_at", "")), reverse=True)
    return items[:limit] if limit else items


def list_through_api(api: JobsApiClient, states: list[str], limit: int) -> list[dict[str, Any]]:
    """GET /jobs for each state (the API lists one state at a time), page after page, up to `limit` each."""
    items: list[dict[str, Any]] = []
    for state in states:
        token: str | None = None
        taken = 0
        while taken < limit:
            page = api.call(
                "GET", "/jobs", params={"state": state, "limit": min(100, limit - taken), "next_token": token}
            )
            items.extend(page["jobs"])
            taken += len(page["jobs"])
            token = page.get("next_token")
            if not token:
                break
    items.sort(key=lambda item: str(item.get("updated_at", "")), reverse=True)
    return items


def cmd_list(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.api_url:
        items = list_through_api(JobsApiClient(args.api_url), args.state or [s.value for s in JobState], args.limit)
    else:
        assert connection is not None
        items = scan_jobs(connection, args.state, 0 if args.stuck is not None else args.limit)
    if args.stuck is not None:
        items = stuck(items, older_than_s=args.stuck)[: args.limit]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    table = Table("job_id", "state", "updated_at", "video / error")
    for item in items:
        table.add_row(
            item["job_id"],
            item["state"],
            item.get("updated_at", ""),
            item.get("s3_uri") or item.get("error_code") or "",
        )
    console.print(table)
    return 0


def stuck(items: list[dict[str, Any]], *, older_than_s: float) -> list[dict[str, Any]]:
    """Live jobs whose last move is older than `older_than_s`, longest stuck first (the seeds' stuck-task
    detection; the poller settles them, this shows which they are)."""
    cutoff = datetime.now(UTC).timestamp() - older_than_s
    live = [i for i in items if not JobState(i["state"]).is_terminal]
    old = [i for i in live if _epoch(str(i.get("updated_at", ""))) < cutoff]
    return sorted(old, key=lambda i: str(i.get("updated_at", "")))


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def state_counts(connection: PipelineConnection) -> Counter[str]:
    return Counter(item["state"] for item in scan_jobs(connection))


def counts_table(counts: Counter[str]) -> Table:
    table = Table(*[s.value for s in JobState], title="jobs by state")
    table.add_row(*[str(counts.get(s.value, 0)) for s in JobState])
    return table


def cmd_watch(args: argparse.Namespace, connection: PipelineConnection) -> int:
    try:
        with Live(counts_table(state_counts(connection)), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(args.interval)
                counts = state_counts(connection)
                live.update(counts_table(counts))
                live_jobs = sum(n for state, n in counts.items() if not JobState(state).is_terminal)
                if args.until_done and live_jobs == 0:
                    return 0
    except KeyboardInterrupt:
        return 0


def cmd_cancel(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    job = JobsApiClient(args.api_url).call("POST", f"/jobs/{args.job_id}/cancel")
    print(f"{job['job_id']} {job['state']}")
    return 0


# ---------------------------------------------------------------------------------------------- settle


def cmd_settle(args: argparse.Namespace, connection: PipelineConnection) -> int:
    """Through the job store's transitions (claims.settle_unsettled); with --no-task a reference to the
    job (its request is in its record) is sent to the jobs queue, where the submit path creates its task
    (should the send fail, the poller sends it: the job is QUEUED awaiting its message)."""
    from kling_pipeline.claims import settle_unsettled  # the submit path's rules: only this command needs them

    store = connection.store()
    job = store.find(args.job_id)
    if job is None:
        raise UsageError(f"no job {args.job_id} ({connection.where})")
    try:
        settled = settle_unsettled(job, store, task_id=args.task_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except TransitionRejectedError:
        raise UsageError(f"job {args.job_id} moved meanwhile: look at it again (`kling-pipeline status`)") from None
    if settled.state is JobState.QUEUED:
        message = json.dumps(job_reference(settled.job_id))
        connection.client("sqs").send_message(QueueUrl=connection.queue_url, MessageBody=message)
        print(f"{settled.job_id} QUEUED: it is on the jobs queue, to be created")
    else:
        print(f"{settled.job_id} SUBMITTED with task {settled.task_id}: the poller collects it")
    return 0


# ---------------------------------------------------------------------------------------------- get


def cmd_get(args: argparse.Namespace, connection: PipelineConnection) -> int:
    job = connection.store().find(args.job_id)
    if job is None:
        raise UsageError(f"no job {args.job_id} ({connection.where})")
    if job.state is not JobState.COMPLETED or not job.s3_uri:
        detail = f": {job.error_message}" if job.error_message else ""
        raise UsageError(f"job {args.job_id} is {job.state.value}, not COMPLETED{detail}")
    bucket, _, key = job.s3_uri.removeprefix("s3://").partition("/")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    connection.client("s3").download_file(bucket, key, str(args.out))
    print(f"{args.out} ({args.out.stat().st_size} bytes) from {job.s3_uri}")
    return 0


# ---------------------------------------------------------------------------------------------- dlq


class NotRedriven(Exception):
    """A dead-lettered message that cannot go back to the jobs queue as it is: why, for the operator."""


def redrive_body(message: dict[str, Any]) -> str:
    """The body to send again, with its job id fixed: a message that had none was known by its first
    message id, and a new message id would otherwise make it a new job (and a second Kling task).

    A body that is not a JSON object is never sent as it is: under a new message id it would only be
    refused again, as a new FAILED job of that id. If its message names a job (the `job_id` attribute)
    it goes back as a reference to that job, whose request the submit path takes from the job's record
    (it makes no job of a reference to none); otherwise NotRedriven says why it stays."""
    attributes = message.get("MessageAttributes", {})
    named = attributes.get("job_id", {}).get("StringValue")
    try:
        body = json.loads(message["Body"])
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        if named and is_valid_job_id(named):
            return json.dumps(job_reference(named))
        raise NotRedriven(
            "its body is not a JSON object and names no job: sent again it would only be refused, as a new "
            "FAILED job; send the job's request yourself, then delete this message"
        )
    if not body.get("job_id"):
        body["job_id"] = named or attributes.get("source_message_id", {}).get("StringValue") or message["MessageId"]
        return json.dumps(body)
    return str(message["Body"])


def cmd_dlq(args: argparse.Namespace, connection: PipelineConnection) -> int:
    if not connection.dead_letter_queue_url:
        raise UsageError("no dead-letter queue URL: give --dlq-url or use --stack-name")
    sqs = connection.client("sqs")
    seen: dict[str, dict[str, Any]] = {}
    # Each receive hides what it returns for a while, so repeated receives walk the whole queue; long
    # polling, and two empty answers in a row, so a sampled empty answer does not end the walk early.
    empty = 0
    while len(seen) < args.max and empty < 2:
        messages = sqs.receive_message(
            QueueUrl=connection.dead_letter_queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        empty = 0 if fresh else empty + 1
        for message in fresh:
            seen[message["MessageId"]] = message
    chosen = [m for m in seen.values() if not args.message_id or m["MessageId"] in args.message_id][: args.max]
    rows = [
        {
            "message_id": m["MessageId"],
            "job_id": m.get("MessageAttributes", {}).get("job_id", {}).get("StringValue"),
            "reason": m.get("MessageAttributes", {}).get("failure_reason", {}).get("StringValue")
            or f"failed {m.get('Attributes', {}).get('ApproximateReceiveCount', '?')} deliveries (see the logs)",
            "body": m["Body"],
        }
        for m in chosen
    ]
    redriven = 0
    if args.redrive:
        for message, row in zip(chosen, rows, strict=True):
            try:
                body = redrive_body(message)
            except NotRedriven as exc:
                row["not_redriven"] = str(exc)
                sqs.change_message_visibility(
                    QueueUrl=connection.dead_letter_queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
                continue
            sqs.send_message(QueueUrl=connection.queue_url, MessageBody=body)
            sqs.delete_message(QueueUrl=connection.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])
            redriven += 1
    else:
        for message in chosen:  # make them visible again at once for the next look
            sqs.change_message_visibility(
                QueueUrl=connection.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    if args.json:
        print(json.dumps({"messages": rows, "redriven": redriven}, indent=2))
        return 0
    table = Table("message_id", "job_id", "reason", "body", title=f"dead-lettered messages ({len(rows)})")
    for row in rows:
        table.add_row(row["message_id"], row["job_id"] or "", row["reason"], row["body"][:60])
    console.print(table)
    for row in rows:
        if "not_redriven" in row:
            console.print(f"[red]not redriven[/red] {row['message_id']}: {row['not_redriven']}")
    if args.redrive:
        console.print(f"redriven {redriven} message(s) to the jobs queue")
    elif rows:
        console.print("fix the messages' producer, or `kling-pipeline dlq --redrive` once the cause is fixed")
    return 0
