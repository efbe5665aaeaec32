"""Feed a queue to an in-process handler with the local stack's own SQS event source.

Same records, same batchItemFailures rules, same delete/keep decisions as the stack's pollers
(`kling_local.stack.sqs_source.SqsEventSource`); batches run one after another in the test's
thread, and failed messages are made visible again at once (`redeliver_failures_at_once`) instead
of after the visibility timeout, so retries do not wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kling_local.stack.deploy import SqsSourceConfig
from kling_local.stack.sqs_source import SqsEventSource
from tests.support.lambda_runtime import Handler, InProcessFunctions
from tests.support.template import REGION


def event_source_in_test_mode(
    sqs: Any,
    queue_url: str,
    invoke: Callable[[str, Any], Any],
    *,
    function_name: str,
    batch_size: int,
    report_batch_item_failures: bool = True,
) -> SqsEventSource:
    """The stack's event source in test mode on `queue_url`, invoking through `invoke`."""
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    config = SqsSourceConfig(
        logical_id=f"{function_name}Source",
        function=function_name,
        queue_arn=queue_arn,
        batch_size=batch_size,
        batching_window_s=0,
        report_batch_item_failures=report_batch_item_failures,
        maximum_concurrency=None,
        enabled=True,
    )
    return SqsEventSource(config, lambda: sqs, invoke, region=REGION, redeliver_failures_at_once=True, poll_wait_s=0)


def drive_queue(
    handler: Handler,
    sqs: Any,
    queue_url: str,
    *,
    until: Callable[[], bool],
    batch_size: int = 5,
    deadline_s: float = 120.0,
    function_name: str = "SubmitFunction",
) -> int:
    """Deliver batches until `until()` holds; returns how many batches ran. Fails loudly at the deadline."""
    functions = InProcessFunctions({function_name: handler})
    source = event_source_in_test_mode(
        sqs, queue_url, functions.invoke, function_name=function_name, batch_size=batch_size
    )
    return source.deliver_until(until, deadline_s=deadline_s)


def queue_messages(sqs: Any, queue_url: str, max_messages: int = 10) -> list[dict[str, Any]]:
    """Read (without deleting) what is waiting, e.g. in the DLQ."""
    return list(
        sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=max_messages, MessageAttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
    )
