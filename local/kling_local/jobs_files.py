"""Jobs files (JSON lines or CSV) read and checked against the job request model, and jobs sent to the
queue: shared by `submit --file` and the demo."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kling_local import terminal
from kling_local.connection import PipelineConnection
from kling_local.terminal import UsageError
from kling_pipeline.requests import JobRequest, describe_validation_error


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
            terminal.err.print(f"[yellow]warning:[/yellow] {source} job {number}: {warning}")
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
