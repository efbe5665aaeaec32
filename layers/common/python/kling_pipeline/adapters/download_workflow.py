"""Starts the download state machine (statemachine/download.asl.json) for a DOWNLOADING job.

The execution name is the job id (plus `-aN` for a retried download), so a second start of the same
attempt is a no-op. The input carries the job's version: the workflow finishes only the job it was
started for (its writes are conditional on that version), and the TTL its MarkFailed writes, since
Step Functions' JSONPath has no clock to compute an epoch from.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from kling_pipeline.adapters import per_container
from kling_pipeline.adapters.job_store import finished_expiry
from kling_pipeline.lifecycle import Job


def execution_name(job_id: str, attempt: int = 1) -> str:
    """`job_id` for the first attempt, `job_id-aN` for a retried download (job ids are at most 64 chars)."""
    return job_id if attempt <= 1 else f"{job_id}-a{attempt}"


def workflow_input(job: Job, attempt: int, *, finished_ttl_days: int) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "attempt": attempt,
        "version": job.version,
        "expires_at": finished_expiry(finished_ttl_days),
    }


class DownloadWorkflow:
    def __init__(self, state_machine_arn: str, *, finished_ttl_days: int, sfn: Any = None) -> None:
        self._arn = state_machine_arn
        self._ttl_days = finished_ttl_days
        self._sfn = sfn or boto3.client("stepfunctions")

    def start(self, job: Job, attempt: int = 1) -> bool:
        """True when this call started the execution; False when it already existed (also success)."""
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn,
                name=execution_name(job.job_id, attempt),
                input=json.dumps(workflow_input(job, attempt, finished_ttl_days=self._ttl_days)),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return False
            raise
        return True


@per_container
def download_workflow(state_machine_arn: str, finished_ttl_days: int) -> DownloadWorkflow:
    return DownloadWorkflow(state_machine_arn, finished_ttl_days=finished_ttl_days)
