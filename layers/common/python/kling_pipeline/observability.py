"""Logger, metrics and tracer for every function, and the one way metrics are recorded.

Metric names say what is counted; values that vary (an outcome, an HTTP status, a Kling code) are
dimensions, never part of the name, so one CloudWatch metric covers them all (the catalogue is in
docs/architecture.md, "Metrics"). Powertools' Tracer imports the X-Ray SDK even when tracing is
disabled (about 0.1 s of every cold start), so it is built only where tracing is on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

F = TypeVar("F", bound=Callable[..., Any])

logger = Logger()
metrics = Metrics()
# Metrics with dimensions are emitted on their own, so an invocation's batch may well be empty; the
# Powertools docs suggest this filter for functions that do not publish a batched metric every time.
warnings.filterwarnings("ignore", "No application metrics to publish*")


class Metric(StrEnum):
    """Every metric the pipeline records, with the dimensions it carries."""

    SUBMIT_OUTCOMES = "SubmitOutcomes"  # outcome: submitted | duplicate | requeued | failed | rejected | parked
    KLING_REFUSALS = "KlingRefusals"  # code: Kling's business code; outcome: what the submit path did
    CALLBACKS = "Callbacks"  # status: the HTTP status answered
    DOWNLOADS = "Downloads"  # outcome: stored | refused | skipped
    VIDEO_BYTES_STORED = "VideoBytesStored"  # no dimension
    # action: polled, resolved, repaired, restarted, timed_out, reconciled, queued_too_long, message_resent, error
    POLLER_JOBS = "PollerJobs"
    KLING_GETS = "KlingGets"  # by: poller | callback
    POLL_LAG = "PollLagSeconds"  # how late the most overdue job of a run was looked at
    LIVE_JOB_AGE = "LiveJobAgeSeconds"  # the oldest live job a run looked at
    JOB_TRANSITIONS = "JobTransitions"  # to: the state a job entered
    NOTICE_LATENCY = "NoticeLatencySeconds"  # from Kling's "succeed" to the video stored in S3
    UNITS_CHARGED = "UnitsCharged"  # model, mode: Kling's final_unit_deduction, counted when it is known
    REMAINING_UNITS = "RemainingUnits"  # pack: one resource pack; without a dimension: all usable packs
    API_REQUESTS = "ApiRequests"  # route: the jobs API route; status: the HTTP status answered
    WEBHOOKS = "WebhookDeliveries"  # outcome: delivered | retrying | given_up | refused | skipped
    KLING_KEYS_MISSING = "KlingKeysMissing"  # no dimension: a run or message that met no Kling keys (the alarm's)
    ANNOUNCEMENTS = "Announcements"  # outcome: delivered | retried | undelivered (PutEvents' failed entries)
    TRANSACTION_CONFLICTS = "TransactionConflicts"  # outcome: retried | gave_up (DynamoDB's TransactionConflict)
    # pool: Kling's slots per pool, each poller run (issue 24): held, the limit (C, or lower after a
    # shared account's 1303), and the jobs waiting in the pool's line
    SLOTS_HELD = "SlotsHeld"
    SLOTS_LIMIT = "SlotsLimit"
    JOBS_WAITING = "JobsWaiting"


def record(metric: Metric, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Count `metric`; with dimensions it is emitted at once as its own EMF record (dimensions are per
    record in EMF), without them it joins the invocation's batch flushed by `metrics.log_metrics`."""
    if not dimensions:
        metrics.add_metric(name=metric.value, unit=unit, value=value)
        return
    with single_metric(name=metric.value, unit=unit, value=value, namespace=metrics.namespace) as single:
        for name, dimension in dimensions.items():
            single.add_dimension(name=name, value=dimension)


class HandlerTracer(Protocol):
    def capture_lambda_handler(self, lambda_handler: F) -> F: ...

    def capture_method(self, method: F) -> F: ...


class _TracingOff:
    """Stands in for Powertools' Tracer where tracing is off: the decorators change nothing."""

    def capture_lambda_handler(self, lambda_handler: F) -> F:
        return lambda_handler

    def capture_method(self, method: F) -> F:
        return method


def tracing_enabled(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Powertools' own rule: on in Lambda unless POWERTOOLS_TRACE_DISABLED or SAM local says otherwise."""
    disabled = environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on", "y")
    in_lambda = bool(environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not environ.get("AWS_SAM_LOCAL")
    return in_lambda and not disabled


def _build_tracer() -> HandlerTracer:
    if not tracing_enabled():
        return _TracingOff()
    from aws_lambda_powertools import Tracer

    # Its decorators are typed loosely (they also take arguments); used bare they keep the signature.
    return cast(HandlerTracer, Tracer())


tracer = _build_tracer()
