"""Telling the world a job has ended: an EventBridge event, and the caller that waits with a task
token resumed. The download workflow announces what it finishes itself (events:putEvents and
states:sendTask* in the ASL); this adapter announces what ends elsewhere (a job timed out, a
stranded download repaired, a job cancelled, Kling failed the task or refused its create), in the
same shape, and what the stale-job poller finds ended but not yet announced.

Every end is written with `announce_pending` (adapters.job_store): the mark is cleared only once
every event entry was taken and the waiting caller resumed (or found gone), so an announcement that
failed is made again by the poller. Events are at least once; a caller is resumed exactly once,
because Step Functions takes a task token once and answers a second send `InvalidToken` or
`TaskTimedOut`, which is nobody's error (docs/architecture.md, "Announcing an end").

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
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

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
    detail: dict[str, Any] = {"job_id": job.job_id, "state": job.state.value}
    if job.state is JobState.COMPLETED:
        detail |= {"s3_uri": job.s3_uri, "size": job.video_size, "sha256": job.sha256}
    else:
        detail |= {"error_code": job.error_code, "error_message": job.error_message}
    detail |= {"units_charged": job.total_units, "metadata": json.loads(job.metadata_json or "{}")}
    if job.is_chain:
        detail["steps"] = [public_step(step) for step in job.steps]
    return detail


class AnnouncementMarks(Protocol):
    """Where an end is marked announced (adapters.job_store.JobStore)."""

    def mark_announced(self, job: Job) -> bool: ...


class Announcer:
    def __init__(
        self,
        event_bus_name: str,
        *,
        marks: AnnouncementMarks | None = None,
        events: Any = None,
        callers: WaitingCallers | None = None,
    ) -> None:
        self._bus = event_bus_name
        self._marks = marks
        self._given_events = events
        self._given_callers = callers

    @cached_property
    def _events(self) -> Any:
        # Built on the first end, not at cold start: most callbacks and submits end no job.
        return self._given_events or aws_clients.client("events")

    @cached_property
    def _callers(self) -> WaitingCallers:
        return self._given_callers or waiting_callers()

    def job_ended(self, job: Job) -> bool:
        """Announce `job`, which has reached a terminal state: its event, its waiting caller; then clear
        its mark. True when all of it was done; False leaves the mark for the poller (logged). Never
        raises for AWS's faults: the end is recorded, and announcing it again is the poller's."""
        detail = event_detail(job)
        entry = {
            "EventBusName": self._bus,
            "Source": SOURCE,
            "DetailType": COMPLETED if job.state is JobState.COMPLETED else FAILED,
            "Detail": json.dumps(detail, default=str),
        }
        try:
            delivered = self._put_events(job.job_id, [entry])
            told = self._tell_caller(job, detail)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "the job's end was not announced in full; the poller announces it again",
                extra={"job_id": job.job_id, "error": repr(exc)[:300]},
            )
            return False
        if not (delivered and told):
            return False
        if self._marks is not None and job.announce_pending:
            try:
                self._marks.mark_announced(job)
            except (ClientError, BotoCoreError) as exc:
                # Announced in full, the mark left: the poller announces it again (a harmless repeat).
                logger.warning(
                    "the job's end was announced but its mark not cleared; the poller announces it again",
                    extra={"job_id": job.job_id, "error": repr(exc)[:300]},
                )
                return False
        return True

    def _tell_caller(self, job: Job, detail: dict[str, Any]) -> bool:
        """Resume the caller waiting with the job's task token, if any. A caller found gone (timed out,
        or resumed already by an earlier announcement) has been told."""
        token = job.task_token
        if not token:
            return True
        if job.state is JobState.COMPLETED:
            self._callers.succeeded(token, output=detail)
        else:
            self._callers.failed(
                token, error=job.error_code or job.state.value, cause=job.error_message or job.state.value
            )
        return True

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
def announcer(event_bus_name: str, marks: AnnouncementMarks | None = None) -> Announcer:
    return Announcer(event_bus_name, marks=marks)
