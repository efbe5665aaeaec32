"""SQS -> Lambda as the Lambda service's event source mapping does it (moto's own does not batch).

Per mapping: up to MaximumConcurrency pollers, each receives up to BatchSize messages (waiting up to
MaximumBatchingWindowInSeconds to fill a batch), invokes the function with real SQS event records
and then deletes what succeeded: everything on success, everything not listed in
`batchItemFailures` with ReportBatchItemFailures, nothing on a function error or an invalid
failure report. What is not deleted becomes visible again after the queue's VisibilityTimeout;
moto's ReceiveMessage moves it to the dead-letter queue once it has been received maxReceiveCount
times (checked: moto 5.2 does this, as SQS does).
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
from kling_local.stack.moto_server import AwsTarget
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
    """One event source mapping: a queue, a function, and the pollers between them."""

    def __init__(
        self,
        config: SqsSourceConfig,
        aws: AwsTarget,
        invoke: Callable[[str, Any], Invocation],
        *,
        max_pollers: int,
    ) -> None:
        self.config = config
        self.aws = aws
        self._invoke = invoke
        self.stats = SourceStats()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        queue_name = config.queue_arn.rsplit(":", 1)[-1]
        self.queue_url = str(aws.client("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"])
        # AWS lets MaximumConcurrency be 2..1000; locally it is capped by the function's pool size.
        wanted = config.maximum_concurrency or max_pollers
        self.pollers = max(1, min(wanted, max_pollers))
        self._in_flight = 0

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
        sqs = self.aws.client("sqs")
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

    def _receive_batch(self, sqs: Any) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        window_end = time.monotonic() + self.config.batching_window_s
        while not self._stop.is_set() and len(batch) < self.config.batch_size:
            wanted = min(MAX_RECEIVE, self.config.batch_size - len(batch))
            response = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=POLL_WAIT_S,
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
                continue  # nothing yet: keep polling (a batch window starts with the first message)
            if self.config.batching_window_s <= 0 or time.monotonic() >= window_end:
                break
            if not messages:
                time.sleep(min(0.2, max(0.0, window_end - time.monotonic())))
        return batch

    def _process(self, sqs: Any, batch: list[dict[str, Any]]) -> None:
        records = [lambda_record(m, self.config.queue_arn, self.aws.region) for m in batch]
        ids = [m["MessageId"] for m in batch]
        try:
            try:
                result = self._invoke(self.config.function, {"Records": records})
            except RuntimeStoppedError:
                return  # the messages reappear after their visibility timeout
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
            for start in range(0, len(to_delete), MAX_RECEIVE):
                chunk = to_delete[start : start + MAX_RECEIVE]
                response = sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
                )
                for failure in response.get("Failed", []):
                    log.warning("%s: delete failed: %s", self.config.logical_id, failure.get("Message"))
            with self._stats_lock:
                self.stats.batches += 1
                self.stats.records += len(batch)
                self.stats.deleted += len(to_delete)
                self.stats.failed_records += len(batch) - len(to_delete)
        finally:
            with self._stats_lock:
                self._in_flight -= len(batch)
