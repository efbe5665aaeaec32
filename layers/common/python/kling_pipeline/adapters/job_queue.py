"""JobsQueue and its dead-letter queue: re-enqueue with a delay, or dead-letter with a reason.

Backpressure re-sends the message (with DelaySeconds) and acknowledges the original, so waiting
for a Kling slot never counts against the queue's maxReceiveCount (the DLQ budget).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.errors import QueueUnavailableError

MAX_DELAY_S = 900  # SQS's limit for DelaySeconds
MAX_BATCH_BYTES = 256 * 1024  # SendMessageBatch: the messages of one call together


class JobQueue:
    def __init__(self, queue_url: str, dead_letter_queue_url: str, *, sqs: Any = None) -> None:
        self._sqs = sqs or aws_clients.client("sqs")
        self._queue_url = queue_url
        self._dlq_url = dead_letter_queue_url

    def send(self, body: dict[str, Any], *, delay_s: int = 0) -> str:
        response = self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(body, separators=(",", ":")),
            DelaySeconds=max(0, min(MAX_DELAY_S, int(delay_s))),
        )
        return str(response["MessageId"])

    def send_many(self, bodies: list[dict[str, Any]]) -> list[bool]:
        """Send each body, in SendMessageBatch calls of at most ten messages and SQS's batch size; True
        where SQS took it, in order. Raises QueueUnavailableError when a call fails whole."""
        texts = [json.dumps(b, separators=(",", ":")) for b in bodies]
        sent: list[bool] = []
        start = 0
        while start < len(texts):
            end, size = start, 0
            while end < len(texts) and end - start < 10 and (end == start or size + len(texts[end]) <= MAX_BATCH_BYTES):
                size += len(texts[end].encode())
                end += 1
            try:
                response = self._sqs.send_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(i), "MessageBody": texts[start + i]} for i in range(end - start)],
                )
            except (ClientError, BotoCoreError) as exc:
                raise QueueUnavailableError(f"JobsQueue did not take the messages: {exc}") from exc
            taken = {int(entry["Id"]) for entry in response.get("Successful", [])}
            sent.extend(i in taken for i in range(end - start))
            start = end
        return sent

    def dead_letter(self, raw_body: str, *, reason: str, source_message_id: str, job_id: str | None) -> None:
        """Park a message that can never succeed, with the reason a person needs to fix it."""
        attributes: dict[str, Any] = {
            "failure_reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
            "source_message_id": {"DataType": "String", "StringValue": source_message_id},
        }
        if job_id:
            attributes["job_id"] = {"DataType": "String", "StringValue": job_id}
        self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=raw_body or "<empty>", MessageAttributes=attributes)


@per_container
def job_queue(queue_url: str, dead_letter_queue_url: str) -> JobQueue:
    return JobQueue(queue_url, dead_letter_queue_url)
