"""Starts the download state machine (statemachine/download.asl.json) for a DOWNLOADING job.

The execution name is the job id (plus `-sN` for an extend chain's later step, `-aN` for a later
attempt), so a second start of the same attempt is a no-op. An execution that exists but has ended
while its job is still DOWNLOADING did not finish the job (it failed, timed out, or was started for
an older version of it): the next attempt is started, never taken for success. The input carries
the job's version: the workflow finishes only the job it was started for (its writes are
conditional on that version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.lifecycle import Job
from kling_pipeline.observability import logger

STILL_WORKING = frozenset({"RUNNING", "PENDING_REDRIVE"})


@dataclass(frozen=True)
class Attempt:
    number: int
    status: str  # RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE
    error: str | None
    cause: str | None

    @property
    def working(self) -> bool:
        return self.status in STILL_WORKING


def execution_name(job_id: str, attempt: int = 1, step: int = 1) -> str:
    """`job_id` for the first attempt, `job_id-aN` for a later one; an extend chain's later steps are
    `job_id-sN` (and `-sN-aM`), since a name is used once (job ids are at most 64 chars)."""
    base = job_id if step <= 1 else f"{job_id}-s{step}"
    return base if attempt <= 1 else f"{base}-a{attempt}"


def workflow_input(job: Job, attempt: int) -> dict[str, Any]:
    return {"job_id": job.job_id, "attempt": attempt, "version": job.version}


class DownloadWorkflow:
    """`attempts` is the deployment's DownloadAttempts: no start goes past it, and the latest attempt is
    looked for up to it (past it, the stale-job repair fails the job with what was tried)."""

    def __init__(self, state_machine_arn: str, attempts: int, *, sfn: Any = None) -> None:
        self._arn = state_machine_arn
        self._attempts = attempts
        self._sfn = sfn or aws_clients.client("stepfunctions")

    def start(self, job: Job, attempt: int = 1) -> bool:
        """True when this call started an execution; False when one is already working on the job."""
        for number in range(attempt, self._attempts + 1):
            name = execution_name(job.job_id, number, job.step)
            try:
                self._sfn.start_execution(
                    stateMachineArn=self._arn, name=name, input=json.dumps(workflow_input(job, number))
                )
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                    raise
            status = self.status(name)
            if status in STILL_WORKING:
                return False
            logger.info("an earlier download attempt ended without finishing the job", extra={"attempt": number})
        logger.warning("every download attempt has ended without finishing the job", extra={"attempts": self._attempts})
        return False

    def status(self, name: str) -> str:
        return str(self._describe(name)["status"])

    def last_attempt(self, job: Job) -> Attempt | None:
        """The job's latest download attempt and how it stands; None when none was ever started."""
        latest: Attempt | None = None
        for number in range(1, self._attempts + 1):
            try:
                execution = self._describe(execution_name(job.job_id, number, job.step))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                    break
                raise
            latest = Attempt(number, str(execution["status"]), execution.get("error"), execution.get("cause"))
        return latest

    def _describe(self, name: str) -> dict[str, Any]:
        arn = self._arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        return dict(self._sfn.describe_execution(executionArn=arn))


@per_container
def download_workflow(state_machine_arn: str, attempts: int) -> DownloadWorkflow:
    return DownloadWorkflow(state_machine_arn, attempts)
