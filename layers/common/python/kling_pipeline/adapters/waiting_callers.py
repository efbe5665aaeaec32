"""Callers that wait for a job with a Step Functions task token (`.waitForTaskToken`): resuming them.

The download workflow resumes callers of finished jobs itself; the submit path tells a caller at once
when its request is refused, so that no pipeline waits for a job that will never run.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.observability import logger

# Step Functions' limits for SendTaskFailure.
MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32768


class WaitingCallers:
    def __init__(self, *, sfn: Any = None) -> None:
        self._sfn = sfn or aws_clients.client("stepfunctions")

    def succeeded(self, task_token: str, *, output: dict[str, Any]) -> bool:
        """Resume the caller with the job's result; False when its token is no longer valid."""
        try:
            self._sfn.send_task_success(taskToken=task_token, output=json.dumps(output, default=str))
        except ClientError as exc:
            return self._gone(exc)
        return True

    def failed(self, task_token: str, *, error: str, cause: str) -> bool:
        """Resume the caller with a failure; False when its token is no longer valid (it timed out, or
        was resumed already), which is nobody's error."""
        try:
            self._sfn.send_task_failure(
                taskToken=task_token, error=error[:MAX_ERROR_CHARS], cause=cause[:MAX_CAUSE_CHARS]
            )
        except ClientError as exc:
            return self._gone(exc)
        return True

    @staticmethod
    def _gone(exc: ClientError) -> bool:
        """A caller that timed out or was resumed already is nobody's error; anything else is raised."""
        code = exc.response.get("Error", {}).get("Code")
        if code in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            logger.info("the waiting caller is gone", extra={"reason": code})
            return False
        raise exc


@per_container
def waiting_callers() -> WaitingCallers:
    return WaitingCallers()
