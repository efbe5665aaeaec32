"""Telling the world a job has ended: an EventBridge event, and the caller that waits with a task
token resumed. The download workflow announces what it finishes itself (events:putEvents and
states:sendTask* in the ASL); this adapter announces what ends elsewhere (a job timed out, a
stranded download repaired, a job cancelled, Kling failed the task or refused its create), in the
same shape.

Events: source `kling-pipeline`; `Video Completed` with {job_id, state, s3_uri, size, sha256,
units_charged, metadata}; `Video Failed` for every other end (FAILED, TIMED_OUT, CANCELLED), with
{job_id, state, error_code, error_message, units_charged, metadata}. `units_charged` is Kling's
figure for the job's task (a string, as Kling gives it; null when Kling never said).
"""

from __future__ import annotations

import json
import random
import time
from functools import cached_property
from typing import Any

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.adapters.waiting_callers import WaitingCallers, waiting_callers
from kling_pipeline.lifecycle import Job, JobState, public_step
from kling_pipeline.observability import Metric, logger, record

SOURCE = "kling-pipeline"
PUT_EVENTS_ATTEMPTS = 4
PUT_EVENTS_BACKOFF_S = 0.1
COMPLETED = "Video Completed"
FAILED = "Video Failed"


def event_detail(job: Job) -> dict[str, Any]:
    """What the event says about an ended job (the workflow's own events say the same)."""
    extra = job.model_extra or {}
    detail: dict[str, Any] = {"job_id": job.job_id, "state": job.state.value}
    if job.state is JobState.COMPLETED:
        detail |= {"s3_uri": job.s3_uri, "size": extra.get("video_size"), "sha256": extra.get("sha256")}
    else:
        detail |= {"error_code": job.error_code, "error_message": job.error_message}
    detail |= {"units_charged": job.total_units, "metadata": json.loads(extra.get("metadata_json") or "{}")}
    if job.is_chain:
        detail["steps"] = [public_step(step) for step in job.steps]
    return detail


class Announcer:
    def __init__(self, event_bus_name: str, *, events: Any = None, callers: WaitingCallers | None = None) -> None:
        self._bus = event_bus_name
        self._given_events = events
        self._given_callers = callers

    @cached_property
    def _events(self) -> Any:
        # Built on the first end, not at cold start: most callbacks and submits end no job.
        return self._given_events or aws_clients.client("events")

    @cached_property
    def _callers(self) -> WaitingCallers:
        return self._given_callers or waiting_callers()

    def job_ended(self, job: Job) -> None:
        """Announce `job`, which has just reached a terminal state."""
        detail = event_detail(job)
        self._put_events(
            job.job_id,
            [
                {
                    "EventBusName": self._bus,
                    "Source": SOURCE,
                    "DetailType": COMPLETED if job.state is JobState.COMPLETED else FAILED,
                    "Detail": json.dumps(detail, default=str),
                }
            ],
        )
        token = (job.model_extra or {}).get("task_token")
        if not token:
            return
        if job.state is JobState.COMPLETED:
            self._callers.succeeded(token, output=detail)
        else:
            self._callers.failed(
                token, error=job.error_code or job.state.value, cause=job.error_message or job.state.value
            )

    def _put_events(self, job_id: str, entries: list[dict[str, Any]]) -> bool:
        """PutEvents answers 200 even when entries failed (FailedEntryCount, an ErrorCode per entry):
        send the failed ones again, a few times with a jittered backoff. What still fails is logged
        with the job's id and counted, and left to be announced again (True: every entry delivered)."""
        pending = entries
        codes: list[str] = []
        for attempt in range(1, PUT_EVENTS_ATTEMPTS + 1):
            answer = self._events.put_events(Entries=pending)
            if not answer.get("FailedEntryCount"):
                record(Metric.ANNOUNCEMENTS, outcome="delivered" if attempt == 1 else "retried")
                return True
            results = answer.get("Entries") or []
            failed = [entry for entry, result in zip(pending, results, strict=False) if result.get("ErrorCode")]
            codes = [str(result.get("ErrorCode")) for result in results if result.get("ErrorCode")]
            pending = failed or pending
            if attempt < PUT_EVENTS_ATTEMPTS:
                time.sleep(random.uniform(0, PUT_EVENTS_BACKOFF_S * 2 ** (attempt - 1)))
        record(Metric.ANNOUNCEMENTS, outcome="undelivered")
        logger.error(
            "the job's end event was not delivered: EventBridge refused it every time",
            extra={"job_id": job_id, "error_codes": codes, "attempts": PUT_EVENTS_ATTEMPTS},
        )
        return False


@per_container
def announcer(event_bus_name: str) -> Announcer:
    return Announcer(event_bus_name)
