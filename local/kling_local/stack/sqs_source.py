"""SQS -> Lambda as the Lambda service's event source mapping does it (moto's own does not batch).

Per mapping: up to MaximumConcurrency pollers, each receives up to BatchSize messages (waiting up to
MaximumBatchingWindowInSeconds to fill a batch), invokes the function with real SQS event records
and then deletes what succeeded: everything on success, everything not listed in
`batchItemFailures` with ReportBatchItemFailures, nothing on a function error or an invalid
failure report. What is not deleted becomes visible again after the queue's VisibilityTimeout (at
once in the tests, see `redeliver_failures_at_once`); moto's ReceiveMessage moves it to the
dead-letter queue once it has been received maxReceiveCount times (moto 5.2 does this, as SQS does).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kling_local.stack.deploy import SqsSourceConfig
from kling_local.stack.runtime import Invocation, RuntimeStoppedError

log = logging.getLogger(__name__)

MAX_RECEIVE = 10  # SQS returns at most 10 messages per ReceiveMessage
POLL_WAIT_S = 1  # long-poll briefly so stop() is prompt


@dataclass
class SourceStats:
    batches: int = 0
    records: int = 0
    deleted: int = 0
    failed_records: int = 0


def lambda_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda puts it in event["Records"] (same keys and value shapes)."""
    attributes = {k: str(v) for k, v in (message.get("Attributes") or {}).items()}
    message_attributes: dict[str, Any] = {}
    for name, attr in (message.get("MessageAttributes") or {}).items():
        converted: dict[str, Any] = {
            "stringListValues": list(attr.get("StringListValues") or []),
            "binaryListValues": [base64.b64encode(v).decode("ascii") for v in attr.get("BinaryListValues") or []],
            "dataType": attr.get("DataType", "String"),
        }
        if "StringValue" in attr:
            converted["stringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            value = attr["BinaryValue"]
            converted["binaryValue"] = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        message_attributes[name] = converted
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(result: Invocation, batch_ids: list[str], report_failures: bool) -> set[str] | None:
    """Message ids to keep (not delete). None means the whole batch failed.

    Lambda's rules: a function error fails the batch; with ReportBatchItemFailures, a response whose
    itemIdentifier is missing, empty or not in the batch also fails the whole batch.
    """
    if not result.ok:
        return None
    if not report_failures:
        return set()
    payload = result.payload
    if payload is None or not isinstance(payload, dict):
        return set()
    failures = payload.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    keep: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        keep.add(identifier)
    return keep


class SqsEventSource:
    """One event source mapping: a queue, a function, and the pollers between them.

    The local stack runs it with `start()` (up to `max_pollers` threads, like Lambda's pollers);
    the integration tests with `deliver_until()` (batch after batch in the caller's thread). Both
    build the same records and keep or delete messages by the same rules (`failed_message_ids`).
    One difference is a named option: `redeliver_failures_at_once` makes kept messages visible again
    at once (ChangeMessageVisibility 0) instead of after the queue's VisibilityTimeout, so tests
    retry without waiting; their receive count still rises, so redrive to the DLQ still happens.

    `sqs_client()` makes an SQS client; each poller thread makes its own (boto3 sessions are not
    thread-safe). `poll_wait_s` is each ReceiveMessage's long poll."""

    def __init__(
        self,
        config: SqsSourceConfig,
        sqs_client: Callable[[], Any],
        invoke: Callable[[str, Any], Invocation],
        *,
        region: str,
        max_pollers: int = 1,
        redeliver_failures_at_once: bool = False,
        poll_wait_s: int = POLL_WAIT_S,
    ) -> None:
        self.config = config
        self.region = region
        self.redeliver_failures_at_once = redeliver_failures_at_once
        self.poll_wait_s = poll_wait_s
        self._sqs_client = sqs_client
        self._invoke = invoke
        self.stats = SourceStats()
        self.last_error: Any = None  # the payload of the latest failed invocation, for diagnostics
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        queue_name = config.queue_arn.rsplit(":", 1)[-1]
        self.queue_url = str(sqs_client().get_queue_url(QueueName=queue_name)["QueueUrl"])
        # AWS lets MaximumConcurrency be 2..1000; locally it is capped by the function's pool size.
        wanted = config.maximum_concurrency or max_pollers
        self.pollers = max(1, min(wanted, max_pollers))
        self._in_flight = 0

    # -- the local stack: poller threads ---------------------------------------------------------

    def start(self) -> None:
        if not self.config.enabled:
            log.info("%s is disabled in the template; not polling", self.config.logical_id)
            return
        for index in range(self.pollers):
            thread = threading.Thread(target=self._run, name=f"sqs-{self.config.logical_id}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def in_flight(self) -> int:
        with self._stats_lock:
            return self._in_flight

    def _run(self) -> None:
        sqs = self._sqs_client()
        while not self._stop.is_set():
            try:
                batch = self._receive_batch(sqs)
                if batch:
                    self._process(sqs, batch)
            except RuntimeStoppedError:
                return
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("%s: polling failed (%s); retrying", self.config.logical_id, exc)
                self._stop.wait(1.0)

    # -- the tests: batches in the caller's thread -----------------------------------------------

    def deliver_until(self, until: Callable[[], bool], *, deadline_s: float, idle_s: float = 0.1) -> int:
        """Deliver batches until `until()` holds; returns how many batches ran. Raises TimeoutError
        (with the latest function error, if any) when it does not hold within `deadline_s`."""
        sqs = self._sqs_client()
        deadline = time.monotonic() + deadline_s
        batches_before = self.stats.batches
        while not until():
            if time.monotonic() > deadline:
                error = f"; the latest function error: {self.last_error}" if self.last_error is not None else ""
                raise TimeoutError(f"queue not drained to the expected state within {deadline_s}s{error}")
            batch = self._receive_batch(sqs)
            if batch:
                self._process(sqs, batch)
            else:
                time.sleep(idle_s)
        return self.stats.batches - batches_before

    # -- one batch -------------------------------------------------------------------------------

    def _receive_batch(self, sqs: Any) -> list[dict[str, Any]]:
        """Up to BatchSize messages; the batching window opens with the first. Empty when none came."""
        batch: list[dict[str, Any]] = []
        window_end: float | None = None
        while not self._stop.is_set() and len(batch) < self.config.batch_size:
            wanted = min(MAX_RECEIVE, self.config.batch_size - len(batch))
            response = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=self.poll_wait_s,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if messages:
                with self._stats_lock:
                    self._in_flight += len(messages)
            batch.extend(messages)
            if not batch:
                break
            if window_end is None:
                window_end = time.monotonic() + self.config.batching_window_s
            if self.config.batching_window_s <= 0 or time.monotonic() >= window_end:
                break
            if not messages:
                time.sleep(min(0.2, max(0.0, window_end - time.monotonic())))
        return batch

    def _process(self, sqs: Any, batch: list[dict[str, Any]]) -> None:
        records = [lambda_record(m, self.config.queue_arn, self.region) for m in batch]
        ids = [m["MessageId"] for m in batch]
        try:
            try:
                result = self._invoke(self.config.function, {"Records": records})
            except RuntimeStoppedError:
                return  # the messages reappear after their visibility timeout
            if not result.ok:
                self.last_error = result.payload
            keep = failed_message_ids(result, ids, self.config.report_batch_item_failures)
            if keep is None:
                if result.ok:
                    log.warning(
                        "%s: invalid batchItemFailures from %s; the whole batch is retried",
                        self.config.logical_id,
                        self.config.function,
                    )
                keep = set(ids)
            to_delete = [m for m in batch if m["MessageId"] not in keep]
            self._in_chunks(sqs.delete_message_batch, to_delete, {}, "delete")
            if self.redeliver_failures_at_once:
                kept = [m for m in batch if m["MessageId"] in keep]
                self._in_chunks(sqs.change_message_visibility_batch, kept, {"VisibilityTimeout": 0}, "redeliver")
            with self._stats_lock:
                self.stats.batches += 1
                self.stats.records += len(batch)
                self.stats.deleted += len(to_delete)
                self.stats.failed_records += len(batch) - len(to_delete)
        finally:
            with self._stats_lock:
                self._in_flight -= len(batch)

    def _in_chunks(
        self, call: Callable[..., Any], messages: list[dict[str, Any]], extra: Mapping[str, Any], what: str
    ) -> None:
        """A *Batch SQS call over `messages`, ten entries at a time (the API's limit)."""
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start : start + MAX_RECEIVE]
            response = call(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], **extra} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                log.warning("%s: %s failed: %s", self.config.logical_id, what, failure.get("Message"))
