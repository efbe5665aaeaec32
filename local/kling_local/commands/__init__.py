"""Commands for producers and operators: submit, status, list, watch, get, dlq, cancel, settle, one module
each (list and watch together; cancel and settle together), the shared pieces below them (kling_local.terminal,
kling_local.jobs_files, tables.py).

They talk to the pipeline only through its public surfaces (the queue, the table, the bucket, the
DLQ), so they work the same against the local stack and a deployed stack.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kling_local.commands.dlq import cmd_dlq
from kling_local.commands.get import cmd_get
from kling_local.commands.listing import STUCK_AFTER_S, cmd_list, cmd_watch
from kling_local.commands.settle import cmd_cancel, cmd_settle
from kling_local.commands.status import cmd_status
from kling_local.commands.submit import cmd_submit
from kling_local.connection import add_connection_arguments
from kling_local.terminal import guarded
from kling_pipeline.lifecycle import JobState
from kling_pipeline.requests import JOB_KINDS


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
    submit.add_argument(
        "--priority",
        type=int,
        help="0 (lowest) to 9 (highest), default 5: a waiting job of higher priority takes the next free Kling slot",
    )
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
