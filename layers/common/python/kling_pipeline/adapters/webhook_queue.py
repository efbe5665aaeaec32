"""WebhookQueue: an event whose webhook failed comes back after a backoff of our choosing.

A failed message is made visible again only after `delay_s` (ChangeMessageVisibility: SQS allows 12
hours counted from the receive, so a little less from here) and reported as a batch item failure, so
SQS's receive count is the attempt number and its redrive policy (WebhookMaxAttempts) moves the event
to the webhook DLQ once the attempts are used up.
"""

from __future__ import annotations

from typing import Any

from kling_pipeline.adapters import aws_clients, per_container

SQS_VISIBILITY_LIMIT_S = 43200  # 12 hours, counted from the ReceiveMessage that handed us the message
# What may have passed since that receive when we ask: the function's timeout (60 s) and Lambda's
# batching, with room to spare. Asking for more than the rest of the 12 hours is refused outright.
RECEIVE_MARGIN_S = 600
MAX_VISIBILITY_S = SQS_VISIBILITY_LIMIT_S - RECEIVE_MARGIN_S  # the longest retry delay (WebhookRetryMaxSeconds)


class WebhookQueue:
    def __init__(self, queue_url: str, *, sqs: Any = None) -> None:
        self._sqs = sqs or aws_clients.client("sqs")
        self._queue_url = queue_url

    def retry_later(self, receipt_handle: str, delay_s: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(MAX_VISIBILITY_S, int(delay_s))),
        )


@per_container
def webhook_queue(queue_url: str) -> WebhookQueue:
    return WebhookQueue(queue_url)
