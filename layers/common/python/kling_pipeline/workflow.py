"""Starts the download state machine; the execution name makes a second start for the same attempt a no-op."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError


def execution_name(job_id: str, attempt: int = 1) -> str:
    """`job_id` for the first attempt, `job_id-aN` for a retried download (job ids are at most 64 chars)."""
    return job_id if attempt <= 1 else f"{job_id}-a{attempt}"


class DownloadWorkflow:
    def __init__(self, state_machine_arn: str, *, sfn: Any = None) -> None:
        self._arn = state_machine_arn
        self._sfn = sfn or boto3.client("stepfunctions")

    def start(self, job_id: str, attempt: int = 1) -> bool:
        """True when this call started the execution; False when it already existed (also success)."""
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn,
                name=execution_name(job_id, attempt),
                input=json.dumps({"job_id": job_id, "attempt": attempt}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return False
            raise
        return True
