"""Starts the download state machine (statemachine/download.asl.json) for a DOWNLOADING job.

The execution name is the job id for the first attempt, and a name no job id can be for the others
(execution_name), so a second start of the same attempt is a no-op. An execution is the job's only
when its input names the job: one found under the job's name but started for another job (a name
from before derived names were told apart) is neither "already running" for it nor one of its
attempts. An execution that exists but has ended while its job is still DOWNLOADING did not finish
the job (it failed, timed out, or was started for an older version of it): the next attempt is
started, never taken for success. The input carries the job's version: the workflow finishes only
the job it was started for (its writes are conditional on that version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.job_ids import internal_name
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
    """The job id for a job's first download, as an operator looks for it; every other attempt (and an
    extend chain's later step: a name is used once) is `<job_id>-s<step>-a<attempt>` padded to 65
    characters (job_ids.internal_name), so it is never another job's first download: job `v-a2` and
    job `v`'s second attempt (`v-s1-a2___...`) cannot meet. Job ids and these names share the
    characters CloudWatch Logs allows in an execution name; only the length tells them apart."""
    if step <= 1 and attempt <= 1:
        return job_id
    return internal_name(job_id, f"s{step}", f"a{attempt}")


def legacy_execution_name(job_id: str, attempt: int, step: int) -> str:
    """The name an attempt had before derived names were told apart (`job_id-sN-aM`): still read, when
    its input names the job, so that a download started under it is counted."""
    base = job_id if step <= 1 else f"{job_id}-s{step}"
    return base if attempt <= 1 else f"{base}-a{attempt}"


def workflow_input(job: Job, attempt: int) -> dict[str, Any]:
    return {"job_id": job.job_id, "attempt": attempt, "version": job.version}


def started_for(execution: dict[str, Any], job: Job) -> bool:
    """The execution was started for this job (its input names it), whatever its name."""
    try:
        named = json.loads(execution.get("input") or "{}").get("job_id")
    except (ValueError, AttributeError):
        return False
    return bool(named == job.job_id)


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
            execution = self._describe(name)
            if not started_for(execution, job):
                logger.warning("another job's execution holds this attempt's name", extra={"attempt": number})
                continue
            if execution["status"] in STILL_WORKING:
                return False
            logger.info("an earlier download attempt ended without finishing the job", extra={"attempt": number})
        logger.warning("every download attempt has ended without finishing the job", extra={"attempts": self._attempts})
        return False

    def last_attempt(self, job: Job) -> Attempt | None:
        """The job's latest download attempt and how it stands; None when none was ever started."""
        latest: Attempt | None = None
        for number in range(1, self._attempts + 1):
            names = dict.fromkeys(
                (execution_name(job.job_id, number, job.step), legacy_execution_name(job.job_id, number, job.step))
            )
            found = [e for e in (self._find(name) for name in names) if e is not None]
            if not found:
                break
            mine = [e for e in found if started_for(e, job)]
            if mine:  # another job's execution under this name is not one of this job's attempts
                execution = mine[0]
                latest = Attempt(number, str(execution["status"]), execution.get("error"), execution.get("cause"))
        return latest

    def _find(self, name: str) -> dict[str, Any] | None:
        try:
            return self._describe(name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise

    def _describe(self, name: str) -> dict[str, Any]:
        arn = self._arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        return dict(self._sfn.describe_execution(executionArn=arn))


@per_container
def download_workflow(state_machine_arn: str, attempts: int) -> DownloadWorkflow:
    return DownloadWorkflow(state_machine_arn, attempts)
