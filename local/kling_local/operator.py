"""Commands for producers and operators: submit, status, list, watch, get, dlq, settle.

They talk to the pipeline only through its public surfaces (the queue, the table, the bucket, the
DLQ), so they work the same against the local stack and a deployed stack.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

from kling_local.api_client import ApiClientError, JobsApiClient
from kling_local.connection import ConnectionError_, PipelineConnection, add_connection_arguments, connect
from kling_pipeline.errors import ImageRefusedError, TransitionRejectedError
from kling_pipeline.images import HEADER_BYTES, check_image, s3_location
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
        help="a JPEG or PNG file (uploaded to the input bucket), an https URL, s3://bucket/key in the input bucket, "
        "or raw base64; repeat for multi-image2video / omni-video (image_list)",
    )
    submit.add_argument("--image-tail", help="image2video: the end frame, as --image (needs --mode pro)")
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
    watch.add_argument("--once", action="store_true", help="print the counts and the live jobs once, and stop")
    watch.set_defaults(handler=guarded(cmd_watch))

    get = subparsers.add_parser("get", help="download a finished job's video")
    get.add_argument("job_id")
    get.add_argument("--out", type=Path, required=True, help="file to write (e.g. video.mp4)")
    get.set_defaults(handler=guarded(cmd_get))

    dlq = subparsers.add_parser("dlq", help="show dead-lettered messages with their reasons; --redrive them")
    dlq.add_argument(
        "--redrive",
        action="store_true",
        help="send back the messages whose job can still run (parked or not yet recorded); says what became of each",
    )
    dlq.add_argument(
        "--include-refused",
        action="store_true",
        help="with --redrive: send back the messages of jobs that ended too (a refused job stays FAILED)",
    )
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

    for parser in (submit, status, listing, watch, get, dlq, cancel, settle):
        add_connection_arguments(parser)
    for parser in (submit, status, listing, cancel):
        parser.add_argument(
            "--api-url",
            help="use the jobs API at this URL (the JobsApiUrl output; SigV4-signed, unsigned for 127.0.0.1)"
            + (
                "; default: the pipeline's own (the local stack's, or the stack's JobsApiUrl)"
                if parser is cancel
                else ""
            ),
        )


def guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = command(args, None if getattr(args, "api_url", None) else connect(args))
            return result
        except ImageRefusedError as exc:
            err.print(f"[red]error:[/red] nothing sent: {exc}")
            return 2
        except ApiClientError as exc:
            said = f"the jobs API said {exc}" if exc.status is not None else str(exc)  # no answer: nothing said
            err.print(f"[red]error:[/red] {said}")
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
        images = InputImages(lambda: connection or connect(args), args.file.parent, flags=False)
    else:
        jobs = [job_from_flags(args)]
        source = "command line"
        images = InputImages(lambda: connection or connect(args), Path(), flags=True)
    jobs = [images.placed(job, number) for number, job in enumerate(jobs, start=1)]
    jobs = validate_jobs(jobs, source)
    images.upload()
    if args.api_url:
        return submit_through_api(JobsApiClient(args.api_url), jobs)
    assert connection is not None
    for job_id in send_jobs(connection, jobs):
        print(job_id)
    return 0


def submit_through_api(api: JobsApiClient, jobs: list[dict[str, Any]]) -> int:
    """POST /jobs, a hundred at a time; prints each job id as the queue path does (a job sent before
    with the same request is one too); a job not queued is said on stderr, and the exit is 1."""
    refused = 0
    for start in range(0, len(jobs), 100):
        answer = api.call("POST", "/jobs", body={"jobs": jobs[start : start + 100]})
        for item in answer["jobs"]:
            if item["outcome"] in ("accepted", "existing"):
                print(item["job_id"])
                continue
            refused += 1
            why = item["error"]["message"] if item.get("error") else item["outcome"]
            err.print(f"[red]not queued[/red] {item['job_id']}: {why}")
    return 1 if refused else 0


# ---------------------------------------------------------------------------------------------- images

IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".jpeg")
UPLOAD_PREFIX = "uploads"


class InputImages:
    """A job's images as the pipeline takes them, checked before anything is sent: a local file is
    checked with Kling's rules and uploaded to the input bucket (referred to as s3://), an s3:// image
    must be in the input bucket and pass the same rules, a URL must be https. The submit function
    checks them again; these checks only spare a job that would fail a moment later in the DLQ."""

    def __init__(self, connection: Callable[[], PipelineConnection], base: Path, *, flags: bool) -> None:
        self._connection = connection  # called when first needed: a job of URLs needs no pipeline
        self._base = base  # a jobs file's paths are relative to the file
        self._flags = flags
        self._uploads: dict[str, tuple[str, str, bytes, str]] = {}  # s3 uri -> bucket, key, data, type

    def placed(self, job: dict[str, Any], number: int) -> dict[str, Any]:
        placed = dict(job)
        for field in ("image", "image_tail", "static_mask"):
            if isinstance(job.get(field), str):
                placed[field] = self._place(self._label(number, field), job[field])
        if isinstance(job.get("image_list"), list):
            items = []
            for index, item in enumerate(job["image_list"]):
                label = self._label(number, f"image_list[{index}]")
                if isinstance(item, str):
                    item = self._place(label, item)
                elif isinstance(item, dict) and isinstance(item.get("image"), str):
                    item = item | {"image": self._place(label, item["image"])}
                items.append(item)
            placed["image_list"] = items
        return placed

    def _label(self, number: int, field: str) -> str:
        if self._flags:
            return "--image" if field.startswith("image_list") else f"--{field.replace('_', '-')}"
        return f"job {number}: {field}"

    def upload(self) -> None:
        if not self._uploads:
            return
        s3 = self._connection().client("s3")
        for bucket, key, data, content_type in self._uploads.values():
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def _place(self, label: str, value: str) -> str:
        lowered = value[:16].lower()
        if lowered.startswith("http://"):
            raise UsageError(f"{label} {value}: an image URL must be https:// (Kling fetches it itself)")
        if lowered.startswith("https://") or value.startswith("data:"):
            return value  # the host is checked by the submit function; data: is refused by validation
        if lowered.startswith("s3://"):
            self._check_in_input_bucket(label, value)
            return value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self._base / path
        if path.is_file():
            return self._file(label, value, path)
        if value.lower().endswith(IMAGE_FILE_SUFFIXES) or value.startswith(("./", "../", "~", "/")):
            raise UsageError(f"{label} {value}: no such file")
        return value  # raw base64, checked by validation

    def _input_bucket(self, label: str, value: str, what: str) -> str:
        connection: PipelineConnection = self._connection()
        if not connection.input_bucket:
            raise UsageError(
                f"{label} {value}: {what} the input bucket, and this pipeline has none: deploy it with "
                "InputBucketName=YOUR-BUCKET (or give --input-bucket), or give an https URL"
            )
        return connection.input_bucket

    def _check_in_input_bucket(self, label: str, value: str) -> None:
        bucket, key = s3_location(label, value)
        input_bucket = self._input_bucket(label, value, "s3:// images come from")
        if bucket != input_bucket:
            raise UsageError(
                f"{label} {value}: s3:// images come from the input bucket, {input_bucket}; put it there, or "
                "give the image's file (the CLI uploads it)"
            )
        try:
            answer = (
                self._connection().client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                raise UsageError(f"{label} {value}: no such object in {bucket}") from None
            raise
        total = str(answer.get("ContentRange", "")).rpartition("/")[2]
        check_image(f"{label} {value}", answer["Body"].read(), int(total) if total.isdigit() else None)

    def _file(self, label: str, value: str, path: Path) -> str:
        data = path.read_bytes()
        info = check_image(f"{label} {value}", data[:HEADER_BYTES], len(data))
        bucket = self._input_bucket(label, value, "a file is uploaded to")
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.name)
        key = f"{UPLOAD_PREFIX}/{hashlib.sha256(data).hexdigest()[:16]}/{name}"
        uri = f"s3://{bucket}/{key}"
        self._uploads[uri] = (bucket, key, data, "image/png" if info.format == "PNG" else "image/jpeg")
        return uri


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
        "reserved_day": job.reserved_day,
        "held_for": job.held_for,  # why a QUEUED job waits, such as "daily budget reached"
        "error_code": job.error_code,
        "error_message": job.error_message,
        "next_poll_at": next_poll,  # when the stale-job poller looks at it next (live jobs)
        "polls": job.poll_count,
        "history": [h.model_dump(exclude_none=True) for h in job.history],
    }


def summary_of_view(view: dict[str, Any]) -> dict[str, Any]:
    """The jobs API's view of a job in job_summary's shape, so `status` reads the same either way (the
    API does not show the poller's schedule: those keys are None)."""
    request = view.get("request") or {}
    total_steps = 1 + len(request.get("extend") or [])
    chain = total_steps > 1
    return {
        "job_id": view["job_id"],
        "state": view["state"],
        "kind": view.get("kind"),
        "prompt": request.get("prompt", ""),
        "task_id": view.get("task_id"),
        "created_at": view.get("created_at"),
        "updated_at": view.get("updated_at"),
        "s3_uri": view.get("s3_uri"),
        "video_size": view.get("video_size"),
        "sha256": view.get("sha256"),
        "units_charged": view.get("units_charged"),
        "step": f"{view.get('step', 1)} of {total_steps}" if chain else None,
        "steps": view.get("steps") if chain else None,
        "reserved_units": view.get("reserved_units"),
        "reserved_day": None,
        "held_for": view.get("held_for"),
        "error_code": view.get("error_code"),
        "error_message": view.get("error_message"),
        "next_poll_at": None,
        "polls": None,
        "history": [{k: v for k, v in entry.items() if v is not None} for entry in view.get("history", [])],
    }


def cmd_status(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.api_url:
        try:
            view = JobsApiClient(args.api_url).call("GET", f"/jobs/{args.job_id}")
        except ApiClientError as exc:
            if exc.status == 404:  # as the table path says it
                raise UsageError(f"no job {args.job_id} (jobs API {args.api_url})") from None
            raise
        summary = summary_of_view(view)
    else:
        assert connection is not None
        job = connection.store().find(args.job_id)
        if job is None:
            raise UsageError(f"no job {args.job_id} in {connection.table} ({connection.where})")
        summary = job_summary(job)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print_status(summary)
    return 0


def print_status(summary: dict[str, Any]) -> None:
    """A job for a person: the same whether it was read from the table or from the jobs API."""
    state = JobState(summary["state"])
    console.print(f"[bold]{summary['job_id']}[/bold]  {_state_style(state)}  ({summary['kind']})")
    console.print(f"prompt: {summary['prompt'][:200]}")
    if summary["task_id"]:
        console.print(f"Kling task: {summary['task_id']}")
    if summary["s3_uri"]:
        console.print(f"video: {summary['s3_uri']}  ({summary['video_size']} bytes, sha256 {summary['sha256']})")
    if summary["error_message"]:
        console.print(f"[red]error {summary['error_code']}:[/red] {summary['error_message']}")
    if summary["step"]:
        step, _, total = summary["step"].partition(" of ")
        at = "done" if state.is_terminal else f"at step {step}"
        console.print(f"extend chain of {total} steps, {at}:")
        for stored in summary["steps"] or []:
            made = f"{stored.get('duration')} s, {stored.get('units_charged')} units"
            console.print(f"  step {stored['step']}: {stored['s3_uri']}  ({made})")
    if summary["units_charged"] is not None:
        console.print(f"units charged by Kling: {summary['units_charged']}")
    elif summary["reserved_units"] is not None:
        day = f"{summary['reserved_day']}'s" if summary["reserved_day"] else "the day's"
        console.print(f"units held of {day} budget: {summary['reserved_units']:g} (an estimate)")
    if summary["held_for"] and state is JobState.QUEUED:
        console.print(f"[yellow]waiting:[/yellow] {summary['held_for']}")
    if summary["next_poll_at"]:
        wait = int(_epoch(summary["next_poll_at"]) - time.time())
        when = f"in {wait} s" if wait > 0 else f"{-wait} s overdue"
        console.print(f"next look by the poller: {summary['next_poll_at']} ({when}; polled {summary['polls']} times)")
    table = Table("state", "at", "by", "note", title="history")
    for entry in summary["history"]:
        table.add_row(entry["state"], entry["at"], entry["by"], entry.get("note") or "")
    console.print(table)


def _state_style(state: JobState) -> str:
    color = {"COMPLETED": "green", "FAILED": "red", "TIMED_OUT": "red"}.get(state.value, "yellow")
    return f"[{color}]{state.value}[/{color}]"


# ---------------------------------------------------------------------------------------------- list/watch


def scan_jobs(connection: PipelineConnection, states: list[str] | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """A scan is fine for operator use (a few thousand jobs); the pipeline itself never scans."""
    dynamodb = connection.client("dynamodb")
    kwargs: dict[str, Any] = {
        "TableName": connection.table,
        "ProjectionExpression": "job_id, #s, updated_at, error_code, s3_uri, next_poll_at, held_for, "
        "backpressure_count, expected_finish_at",
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
    if args.stuck is not None and not items:
        console.print(f"nothing stuck: no live job has gone {args.stuck:g} s without moving")
        return 0
    rows = [
        {
            "job_id": item["job_id"],
            "state": item["state"],
            "updated_at": str(item.get("updated_at", "")),
            "video / error": item.get("s3_uri") or item.get("error_code") or "",
        }
        for item in items
    ]
    print_records(["job_id", "state", "updated_at", "video / error"], rows, ids=("job_id",))
    return 0


def print_records(
    columns: list[str], rows: list[dict[str, str]], *, ids: tuple[str, ...], title: str | None = None
) -> None:
    """Rows as a table when every cell fits the terminal whole; else one record per row, its ids and
    short fields on the first line and the rest indented below. Ids are never cut: they are what a
    person copies into the next command."""
    widths = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}
    if sum(widths.values()) + 3 * len(columns) + 1 <= console.width:
        table = Table(*(Column(c, no_wrap=True) for c in columns), title=title)
        for row in rows:
            table.add_row(*(Text(row[c]) for c in columns))
        console.print(table)
        return
    if title:
        console.print(title, style="italic")
    for row in rows:
        head = [row[c] for c in columns if c in ids or widths[c] <= 24]
        console.print(Text("  ".join(v for v in head if v)), soft_wrap=True)
        for c in columns:
            if c not in ids and widths[c] > 24 and row[c]:
                console.print(Text(f"    {c}: {row[c]}"), soft_wrap=True)


def stuck(items: list[dict[str, Any]], *, older_than_s: float) -> list[dict[str, Any]]:
    """Live jobs whose last move is older than `older_than_s`, longest stuck first (stuck-task
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
    """One column per state where they fit whole; else one row per state (never a cut header)."""
    if sum(len(s.value) + 3 for s in JobState) + 1 > console.width:
        table = Table("state", Column("jobs", justify="right"), title="jobs by state")
        for state in JobState:
            table.add_row(state.value, str(counts.get(state.value, 0)))
        return table
    table = Table(*(Column(s.value, no_wrap=True) for s in JobState), title="jobs by state")
    table.add_row(*[str(counts.get(s.value, 0)) for s in JobState])
    return table


WATCHED_LIVE_JOBS = 20  # live jobs `watch` lists under the counts, the longest waiting first


def waiting_for(item: dict[str, Any], now: float) -> str:
    """What a live job waits for, in the words of its record: the budget, a Kling slot, Kling's generation
    (against when a job like it usually finishes), the download. "" for a job that ended."""
    state = JobState(item["state"])
    if state is JobState.QUEUED:
        if item.get("held_for"):
            return f"queued: {item['held_for']}"
        tries = int(item.get("backpressure_count") or 0)
        if tries:
            return f"waiting for a Kling slot (backpressure, {tries} tries)"
        return "queued: for the submit function"
    if state is JobState.SUBMITTING:
        return "being sent to Kling"
    if state in (JobState.SUBMITTED, JobState.PROCESSING):
        expected = item.get("expected_finish_at")
        if expected is None:
            return "Kling generating"
        left = int(float(expected) - now)
        if left >= 0:
            return f"Kling generating (~{left} s left)"
        poll = item.get("next_poll_at")
        look = f"; the poller looks in {max(0, int(float(poll) - now))} s" if poll else ""
        return f"Kling generating ({-left} s past the usual{look})"
    if state is JobState.DOWNLOADING:
        return "download running (Kling's CDN to S3)"
    return ""


def live_jobs_table(items: list[dict[str, Any]], now: float) -> Table | None:
    live = sorted(
        (i for i in items if not JobState(i["state"]).is_terminal), key=lambda i: str(i.get("updated_at", ""))
    )
    if not live:
        return None
    shown = live[:WATCHED_LIVE_JOBS]
    more = f", {len(live) - len(shown)} more not shown" if len(live) > len(shown) else ""
    # Ids whole (they are copied into `status`); what a job waits for wraps instead.
    widest = max(len(str(i["job_id"])) for i in shown)
    table = Table(
        Column("job_id", no_wrap=True, min_width=widest),
        Column("state", no_wrap=True),
        Column("waiting for", overflow="fold"),
        title=f"live jobs ({len(live)}{more})",
    )
    for item in shown:
        table.add_row(item["job_id"], item["state"], waiting_for(item, now))
    return table


def watch_view(connection: PipelineConnection) -> tuple[Group, int]:
    """The counts by state and what each live job waits for; and how many jobs are live."""
    items = scan_jobs(connection)
    counts = Counter(item["state"] for item in items)
    live_table = live_jobs_table(items, time.time())
    parts: list[Table] = [counts_table(counts)] + ([live_table] if live_table is not None else [])
    return Group(*parts), sum(n for state, n in counts.items() if not JobState(state).is_terminal)


def cmd_watch(args: argparse.Namespace, connection: PipelineConnection) -> int:
    view, live_jobs = watch_view(connection)
    if args.once:
        console.print(view)
        return 0
    try:
        with Live(view, console=console, refresh_per_second=4) as live:
            while not (args.until_done and live_jobs == 0):
                time.sleep(args.interval)
                view, live_jobs = watch_view(connection)
                live.update(view)
            return 0
    except KeyboardInterrupt:
        return 0


def cmd_cancel(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    """Through the jobs API (only it knows whether a create may have reached Kling): --api-url, else
    the pipeline's own (the local stack's state file, or the stack's JobsApiUrl output)."""
    url = args.api_url or (connection.jobs_api_url if connection else "")
    if not url:
        raise UsageError("no jobs API known for this pipeline: give --api-url (the stack's JobsApiUrl output)")
    job = JobsApiClient(url).call("POST", f"/jobs/{args.job_id}/cancel")
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
    named = {job_id for m in chosen if (job_id := message_job_id(m)) and is_valid_job_id(job_id)}
    jobs = connection.store().get_many(sorted(named)) if named else {}
    rows: list[dict[str, Any]] = [
        {
            "message_id": m["MessageId"],
            "job_id": message_job_id(m),
            "job_state": job.state.value if (job := jobs.get(message_job_id(m) or "")) else None,
            "reason": m.get("MessageAttributes", {}).get("failure_reason", {}).get("StringValue")
            or f"failed {m.get('Attributes', {}).get('ApproximateReceiveCount', '?')} deliveries (see the logs)",
            "body": m["Body"],
        }
        for m in chosen
    ]
    redriven = 0
    for message, row in zip(chosen, rows, strict=True):
        job = jobs.get(row["job_id"] or "")
        if args.redrive:
            row["outcome"], row["note"] = redrive_one(connection, sqs, message, job, args.include_refused)
            redriven += row["outcome"] == "redriven"
        if row.get("outcome") != "redriven":  # visible again at once, for the next look
            sqs.change_message_visibility(
                QueueUrl=connection.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    if args.json:
        print(json.dumps({"messages": rows, "redriven": redriven}, indent=2))
        return 0
    records = [
        {
            "message_id": row["message_id"],
            "job_id": row["job_id"] or "",
            "job": row["job_state"] or "none recorded",
            "reason": row["reason"],
            "body": row["body"][:200],
        }
        for row in rows
    ]
    print_records(
        ["message_id", "job_id", "job", "reason", "body"],
        records,
        ids=("message_id", "job_id"),
        title=f"dead-lettered messages ({len(rows)})",
    )
    for row in rows:
        if "outcome" in row:
            colour = "green" if row["outcome"] == "redriven" else "yellow"
            console.print(
                Text.assemble((row["outcome"], colour), f" {row['message_id']}: {row['note']}"), soft_wrap=True
            )
    if args.redrive:
        left = len(rows) - redriven
        console.print(f"redriven {redriven} message(s) to the jobs queue; {left} left in the dead-letter queue")
    elif rows:
        console.print(
            "`kling-pipeline dlq --redrive` sends back the messages whose job can still run (once the cause is "
            "fixed); refused requests stay unless --include-refused"
        )
    return 0


def message_job_id(message: dict[str, Any]) -> str | None:
    """The job a dead letter is about: its `job_id` attribute, else its body's, else the id the job got
    from its first message."""
    attributes = message.get("MessageAttributes", {})
    named = attributes.get("job_id", {}).get("StringValue")
    if named:
        return str(named)
    try:
        body = json.loads(message["Body"])
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("job_id"), str):
        return str(body["job_id"])
    source = attributes.get("source_message_id", {}).get("StringValue")
    return str(source) if source else (str(message["MessageId"]) if isinstance(body, dict) else None)


def redrive_one(
    connection: PipelineConnection, sqs: Any, message: dict[str, Any], job: Job | None, include_refused: bool
) -> tuple[str, str]:
    """Send one dead letter back when it can succeed: its job is live (parked, waiting) or not yet
    recorded. A job that ended (a refused request is FAILED for good) would only drop the copy as a
    duplicate, so its message stays, said, unless `include_refused`. Returns (outcome, what happened)."""
    if job is not None and job.state.is_terminal and not include_refused:
        why = f"{job.error_code}: {job.error_message}" if job.error_message else job.state.value
        return (
            "left",
            f"job {job.job_id} is {job.state.value} ({why}); sent again it would not run again (a job id is a "
            "job for good). Submit the fixed request with a new job id, or --include-refused to send it anyway",
        )
    try:
        body = redrive_body(message)
    except NotRedriven as exc:
        return "left", str(exc)
    sqs.send_message(QueueUrl=connection.queue_url, MessageBody=body)
    sqs.delete_message(QueueUrl=connection.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])
    if job is None:
        return "redriven", "sent back to the jobs queue (no job recorded yet: it becomes one)"
    if job.state.is_terminal:
        return "redriven", f"sent back although job {job.job_id} is {job.state.value} (--include-refused)"
    return "redriven", f"sent back to the jobs queue: job {job.job_id} is {job.state.value} and resumes"
