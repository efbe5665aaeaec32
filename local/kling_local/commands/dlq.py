"""`dlq`: dead-lettered messages with their reasons, and `--redrive` of the ones whose job can still run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.text import Text

from kling_local import terminal
from kling_local.commands.tables import print_records
from kling_local.connection import PipelineConnection
from kling_local.terminal import UsageError
from kling_pipeline.job_ids import is_valid_job_id, job_reference
from kling_pipeline.lifecycle import Job


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
            terminal.console.print(
                Text.assemble((row["outcome"], colour), f" {row['message_id']}: {row['note']}"), soft_wrap=True
            )
    if args.redrive:
        left = len(rows) - redriven
        terminal.console.print(
            f"redriven {redriven} message(s) to the jobs queue; {left} left in the dead-letter queue"
        )
    elif rows:
        terminal.console.print(
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
