"""Feed a queue to a handler as Lambda's SQS event source does: batches, partial failures, redrive."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kling_local.stack.worker import LambdaContext


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            k: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
            for k, v in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def drive_queue(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    sqs: Any,
    queue_url: str,
    *,
    until: Callable[[], bool],
    batch_size: int = 5,
    deadline_s: float = 120.0,
    function_name: str = "SubmitFunction",
) -> int:
    """Deliver batches until `until()` holds; returns how many batches ran. Fails loudly at the deadline."""
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deadline = time.monotonic() + deadline_s
    batches = 0
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue not drained to the expected state within {deadline_s}s")
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            time.sleep(0.1)
            continue
        batches += 1
        response = handler(
            {"Records": [sqs_record(m, queue_arn) for m in messages]}, LambdaContext.for_function(function_name)
        )
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] in failed:
                # Lambda would wait for the visibility timeout; tests retry at once (the count still rises).
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return batches


def queue_messages(sqs: Any, queue_url: str, max_messages: int = 10) -> list[dict[str, Any]]:
    """Read (without deleting) what is waiting, e.g. in the DLQ."""
    return list(
        sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=max_messages, MessageAttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
    )
