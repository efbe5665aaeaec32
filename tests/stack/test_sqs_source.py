"""The one SQS event source in its two modes: the local stack's pollers (threads, failed messages come
back after the visibility timeout) and the tests' driver (batches in the caller's thread, failed
messages visible again at once) keep and delete the same messages by Lambda's batchItemFailures
rules, and hand the function the same records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kling_local.stack.deploy import SqsSourceConfig
from kling_local.stack.sqs_source import SqsEventSource
from tests.support.lambda_runtime import InProcessFunctions
from tests.support.sqs_driver import event_source_in_test_mode
from tests.support.waiting import wait_for

VISIBILITY_TIMEOUT_S = 3
BODIES = ["ok-1", "fail-2", "ok-3"]


def _failing(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if "fail" in r["body"]]}


def _reports(identifier: str) -> Callable[[list[dict[str, Any]]], Any]:
    return lambda records: {"batchItemFailures": [{"itemIdentifier": identifier}]}


def _crash(records: list[dict[str, Any]]) -> dict[str, Any]:
    raise RuntimeError("the function failed")


# scenario -> (what the function answers, whether ReportBatchItemFailures is on, bodies kept)
SCENARIOS: dict[str, tuple[Callable[[list[dict[str, Any]]], Any], bool, list[str]]] = {
    "listed failures are kept": (_failing, True, ["fail-2"]),
    "no failures: all deleted": (lambda records: {"batchItemFailures": []}, True, []),
    "a null response: all deleted": (lambda records: None, True, []),
    "a function error keeps the batch": (_crash, True, BODIES),
    "an unknown itemIdentifier keeps the batch": (_reports("not-in-the-batch"), True, BODIES),
    "an empty itemIdentifier keeps the batch": (_reports(""), True, BODIES),
    "failures are ignored without ReportBatchItemFailures": (_failing, False, []),
}


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def _queue(sqs: Any) -> str:
    url = str(
        sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S)})["QueueUrl"]
    )
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(BODIES)])
    return url


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _visible_bodies(sqs: Any) -> list[str]:
    url = sqs.get_queue_url(QueueName="work")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
    return sorted(m["Body"] for m in messages)


class _Recorder:
    """The function under the event source: records each batch, answers as the scenario says."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], Any]) -> None:
        self.answer = answer
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.batches.append(event["Records"])
        return self.answer(event["Records"])


def _test_mode(sqs: Any, recorder: _Recorder, report: bool) -> tuple[list[str], list[dict[str, Any]]]:
    url = _queue(sqs)
    functions = InProcessFunctions({"Worker": recorder})
    source = event_source_in_test_mode(
        sqs, url, functions.invoke, function_name="Worker", batch_size=10, report_batch_item_failures=report
    )
    assert source.deliver_until(lambda: bool(recorder.batches), deadline_s=30) == 1
    kept = _visible_bodies(sqs)  # at once: no visibility timeout to wait for
    return kept, recorder.batches[0]


def _stack_mode(sqs: Any, recorder: _Recorder, report: bool) -> tuple[list[str], list[dict[str, Any]]]:
    url = _queue(sqs)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    config = SqsSourceConfig(
        logical_id="WorkerSource",
        function="Worker",
        queue_arn=arn,
        batch_size=10,
        batching_window_s=0,
        report_batch_item_failures=report,
        maximum_concurrency=None,
        enabled=True,
    )
    functions = InProcessFunctions({"Worker": recorder})

    def client() -> Any:
        return boto3.session.Session().client("sqs", region_name="us-east-1")

    source = SqsEventSource(config, client, functions.invoke, region="us-east-1", max_pollers=2)
    source.start()
    try:
        wait_for(lambda: source.stats.batches >= 1, 30, what="the first batch")
        visible, not_visible = _counts(sqs, url)
    finally:
        source.stop()  # before the visibility timeout: no poller sees a kept message twice
    assert len(recorder.batches) == 1
    assert visible == 0  # kept messages wait for the visibility timeout, as on Lambda
    wait_for(lambda: _counts(sqs, url) == (not_visible, 0), VISIBILITY_TIMEOUT_S + 10, what="kept messages back")
    return _visible_bodies(sqs), recorder.batches[0]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_test_mode_and_stack_mode_keep_and_delete_the_same_messages(sqs: Any, scenario: str) -> None:
    answer, report, expected_kept = SCENARIOS[scenario]
    stack_kept, stack_records = _stack_mode(sqs, _Recorder(answer), report)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="work")["QueueUrl"])
    test_kept, test_records = _test_mode(sqs, _Recorder(answer), report)

    assert stack_kept == test_kept == sorted(expected_kept)
    assert [r["body"] for r in stack_records] == [r["body"] for r in test_records] == BODIES
    for stack_record, test_record in zip(stack_records, test_records, strict=True):
        assert stack_record.keys() == test_record.keys()
        assert stack_record["eventSource"] == test_record["eventSource"] == "aws:sqs"
        assert stack_record["eventSourceARN"] == test_record["eventSourceARN"]
        assert stack_record["attributes"].keys() == test_record["attributes"].keys()


def test_test_mode_fails_loudly_with_the_function_error(sqs: Any) -> None:
    url = _queue(sqs)
    functions = InProcessFunctions({"Worker": _Recorder(_crash)})
    source = event_source_in_test_mode(sqs, url, functions.invoke, function_name="Worker", batch_size=10)
    with pytest.raises(TimeoutError, match="the function failed"):
        source.deliver_until(lambda: False, deadline_s=1)
    assert source.stats.batches >= 2  # retried at once, not after the visibility timeout
    assert source.stats.deleted == 0
