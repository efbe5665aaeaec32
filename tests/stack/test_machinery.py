"""The stack machinery against a synthetic template: SQS batching, partial failures and redrive,
the API's proxy events, Step Functions tasks reaching the runtime, timeouts, warm state, the clock."""

from __future__ import annotations

import http.client
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kling_local.stack import LocalStack
from tests.stack.synthetic import read_records
from tests.support.waiting import wait_for


def _send(stack: LocalStack, body: str, **kwargs: Any) -> str:
    url = stack.outputs["WorkQueueUrl"]
    return str(stack.client("sqs").send_message(QueueUrl=url, MessageBody=body, **kwargs)["MessageId"])


def _batches_with(root: Path, marker: str) -> list[list[dict[str, Any]]]:
    batches = [b["records"] for b in read_records(root, "batch")]
    return [[r for r in batch if marker in r["body"]] for batch in batches if any(marker in r["body"] for r in batch)]


def test_template_resources_and_secret_exist(synthetic_stack: LocalStack) -> None:
    # Given the synthetic stack's deployment
    deployment = synthetic_stack.deployment
    assert deployment is not None
    # Then its secret, table, bucket and functions all exist and are wired together
    secret_arn = deployment.secrets["Token"]
    value = json.loads(synthetic_stack.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    assert value["user"] == "local" and len(value["password"]) == 24
    assert deployment.functions["BatchFunction"].environment["TOKEN_SECRET"] == secret_arn
    table = deployment.physical_id("Records")
    assert synthetic_stack.client("dynamodb").describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
    synthetic_stack.client("s3").head_bucket(Bucket=deployment.physical_id("Artifacts"))
    assert set(deployment.functions) == {
        "BatchFunction",
        "BrokenFunction",
        "EchoFunction",
        "SlowFunction",
        "TickFunction",
    }


def test_sqs_batches_honour_batch_size(synthetic_stack: LocalStack, synthetic_root: Path) -> None:
    # Given nine messages delayed by the same 2 s
    marker = f"size-{uuid.uuid4().hex[:8]}"
    entries: list[dict[str, Any]] = [
        {"Id": str(i), "MessageBody": f"{marker}-{i}", "DelaySeconds": 2} for i in range(9)
    ]
    # When they are sent in one batch and all nine are handled
    # Delayed together, so they become visible together and pollers can fill whole batches.
    synthetic_stack.client("sqs").send_message_batch(QueueUrl=synthetic_stack.outputs["WorkQueueUrl"], Entries=entries)
    wait_for(lambda: sum(len(b) for b in _batches_with(synthetic_root, marker)) >= 9, 60, what="9 records handled")
    # Then each was handled exactly once, in batches of at most 3
    batches = _batches_with(synthetic_root, marker)
    bodies = sorted(r["body"] for batch in batches for r in batch)
    assert bodies == sorted(e["MessageBody"] for e in entries)  # each exactly once: all were deleted
    assert max(len(b) for b in batches) == 3
    assert all(len(b) <= 3 for b in batches)


def test_sqs_records_look_like_lambda_records(synthetic_stack: LocalStack, synthetic_root: Path) -> None:
    # When a message with a string and a binary attribute is sent and handled
    marker = f"shape-{uuid.uuid4().hex[:8]}"
    message_id = _send(
        synthetic_stack,
        marker,
        MessageAttributes={
            "job_id": {"DataType": "String", "StringValue": "j-1"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    batches = wait_for(lambda: _batches_with(synthetic_root, marker), 60, what="the record")
    record = batches[0][0]
    # Then the function got a record shaped like Lambda's SQS records
    queue_arn = synthetic_stack.client("sqs").get_queue_attributes(
        QueueUrl=synthetic_stack.outputs["WorkQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert record["messageId"] == message_id
    assert record["receiptHandle"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["job_id"]["stringValue"] == "j-1"
    assert record["messageAttributes"]["job_id"]["dataType"] == "String"
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
    assert record["md5OfBody"]


def test_partial_batch_failure_retries_only_failures_then_dead_letters(
    synthetic_stack: LocalStack, synthetic_root: Path
) -> None:
    # Given a batch of one message the function handles and one it reports as failed
    marker = f"partial-{uuid.uuid4().hex[:8]}"
    sqs = synthetic_stack.client("sqs")
    sqs.send_message_batch(
        QueueUrl=synthetic_stack.outputs["WorkQueueUrl"],
        Entries=[
            {"Id": "ok", "MessageBody": f"{marker}-ok", "DelaySeconds": 1},
            {"Id": "bad", "MessageBody": f"{marker}-fail", "DelaySeconds": 1},
        ],
    )
    # When the queue is worked until the failing message is dead-lettered
    dlq = synthetic_stack.outputs["DeadLettersUrl"]

    def dead_lettered() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
        return [m for m in messages if marker in m["Body"]]

    parked = wait_for(dead_lettered, 60, interval_s=0.5, what="the failing message in the DLQ")
    # Then only it was dead-lettered, after two deliveries; the other was handled once
    assert [m["Body"] for m in parked] == [f"{marker}-fail"]
    seen = [r for batch in _batches_with(synthetic_root, marker) for r in batch]
    ok = [r for r in seen if r["body"].endswith("-ok")]
    failing = [r for r in seen if r["body"].endswith("-fail")]
    assert len(ok) == 1  # deleted after its first, successful delivery
    # maxReceiveCount = 2: delivered twice, then moved on the next receive, never a third time.
    assert sorted(r["attributes"]["ApproximateReceiveCount"] for r in failing) == ["1", "2"]


def test_function_error_fails_the_whole_batch(synthetic_stack: LocalStack, synthetic_root: Path) -> None:
    # Given a message that makes the function raise
    marker = f"crash-{uuid.uuid4().hex[:8]}"
    before = synthetic_stack.function_stats()["BatchFunction"]["errors"]
    # When it is sent and delivered again after the error
    _send(synthetic_stack, marker)
    wait_for(lambda: len([r for b in _batches_with(synthetic_root, marker) for r in b]) >= 2, 60, what="a redelivery")
    # Then it was received twice and each error was counted
    counts = sorted(
        r["attributes"]["ApproximateReceiveCount"] for b in _batches_with(synthetic_root, marker) for r in b
    )
    assert counts[:2] == ["1", "2"]
    assert synthetic_stack.function_stats()["BatchFunction"]["errors"] >= before + 2


def _request(
    stack: LocalStack, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    base = urlsplit(stack.endpoints["api_base_url"])
    connection = http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port, timeout=60)
    try:
        connection.putrequest(method, path)
        for name, value in headers or []:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        received: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            received.setdefault(name.lower(), []).append(value)
        return response.status, received, response.read()
    finally:
        connection.close()


def test_api_turns_a_request_into_a_proxy_event(synthetic_stack: LocalStack) -> None:
    assert synthetic_stack.endpoints["api_base_url"].endswith("/v1")
    # When a POST with a path parameter, a query string and repeated headers goes through the API
    body = json.dumps({"hello": "world"}).encode()
    status, headers, raw = _request(
        synthetic_stack,
        "POST",
        "/v1/items/abc-1?x=1&x=2&empty=",
        body,
        [("Content-Type", "application/json"), ("X-Multi", "a"), ("X-Multi", "b"), ("X-Custom", "c")],
    )
    # Then the function's answer comes back and the event it got is a REST API proxy event
    assert status == 201
    assert headers["x-echo"] == ["yes"]
    assert sorted(headers["set-cookie"]) == ["a=1", "b=2"]
    event = json.loads(raw)
    assert event["resource"] == "/items/{item_id}"
    assert event["path"] == "/items/abc-1"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"item_id": "abc-1"}
    assert event["queryStringParameters"] == {"x": "2", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "empty": [""]}
    assert event["headers"]["X-Custom"] == "c"
    assert event["multiValueHeaders"]["X-Multi"] == ["a", "b"]
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "v1"
    assert context["resourcePath"] == "/items/{item_id}"
    assert context["path"] == "/v1/items/abc-1"
    assert context["httpMethod"] == "POST"
    assert context["requestId"] == headers["x-amzn-requestid"][0]
    assert context["identity"]["sourceIp"] == "127.0.0.1"


def test_api_get_without_body_or_query(synthetic_stack: LocalStack) -> None:
    status, _, raw = _request(synthetic_stack, "GET", "/v1/items")
    event = json.loads(raw)
    assert status == 201
    assert event["resource"] == "/items"
    assert event["body"] is None
    assert event["pathParameters"] is None
    assert event["queryStringParameters"] is None


def test_api_unknown_routes_and_function_errors(synthetic_stack: LocalStack) -> None:
    status, _, raw = _request(synthetic_stack, "GET", "/v1/nothing-here")
    assert status == 404 and json.loads(raw) == {"message": "Not Found"}
    status, _, raw = _request(synthetic_stack, "DELETE", "/v1/items/abc")
    assert status == 405 and json.loads(raw) == {"message": "Method Not Allowed"}
    status, _, _ = _request(synthetic_stack, "POST", "/prod/items/abc")
    assert status == 404  # the stage is part of the path, as on API Gateway
    status, _, raw = _request(synthetic_stack, "POST", "/v1/items/boom", b"{}")
    assert status == 502 and json.loads(raw) == {"message": "Internal server error"}


def test_step_functions_task_states_run_in_the_local_runtime(synthetic_stack: LocalStack) -> None:
    # Given the state machine whose Task states call SlowFunction
    sfn = synthetic_stack.client("stepfunctions")
    before = synthetic_stack.function_stats()["SlowFunction"]["invocations"]
    arn = synthetic_stack.outputs["MachineArn"]
    # When an execution runs with a value
    execution = sfn.start_execution(stateMachineArn=arn, name=f"ok-{uuid.uuid4().hex[:8]}", input='{"value": 7}')

    def finished() -> dict[str, Any] | None:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution["executionArn"])
        return described if described["status"] != "RUNNING" else None

    described = wait_for(finished, 90, what="the execution to finish")
    # Then it succeeds, and both tasks ran in the local runtime
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    first, second = output["first"]["integration"], output["second"]
    assert first["value"] == 7 and second["value"] == 7
    assert first["function_name"] == synthetic_stack.deployment.functions["SlowFunction"].name  # type: ignore[union-attr]
    assert synthetic_stack.function_stats()["SlowFunction"]["invocations"] >= before + 2

    # When an execution asks the function to raise
    failing = sfn.start_execution(stateMachineArn=arn, name=f"bad-{uuid.uuid4().hex[:8]}", input='{"raise": true}')
    execution = failing
    described = wait_for(finished, 90, what="the failing execution to finish")
    # Then it fails with the function's error
    assert described["status"] == "FAILED"
    assert described.get("error") == "ValueError"


def test_lambda_api_on_moto_reaches_the_runtime(synthetic_stack: LocalStack) -> None:
    # Given moto's Lambda API and a deployed function
    lam = synthetic_stack.client("lambda")
    name = synthetic_stack.deployment.functions["SlowFunction"].name  # type: ignore[union-attr]
    # When the function is invoked through it
    ok = lam.invoke(FunctionName=name, Payload=json.dumps({"value": "direct"}))
    # Then its payload comes back
    assert "FunctionError" not in ok
    assert json.loads(ok["Payload"].read())["value"] == "direct"
    # When it is asked to raise
    failed = lam.invoke(FunctionName=name, Payload=json.dumps({"raise": True}))
    # Then the error comes back as an unhandled function error
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"


def test_runtime_keeps_state_warm_isolates_env_and_enforces_timeout(
    synthetic_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a variable in the caller's environment
    monkeypatch.setenv("KLING_STACK_LEAK_CHECK", "parent-only")
    function = synthetic_stack.deployment.functions["SlowFunction"]  # type: ignore[union-attr]
    names = ["RECORD_DIR", "AWS_ENDPOINT_URL", "POWERTOOLS_TRACE_DISABLED", "AWS_LAMBDA_FUNCTION_NAME"]
    # When the function is invoked twice
    first = synthetic_stack.invoke("SlowFunction", {"env": [*names, "KLING_STACK_LEAK_CHECK"]})
    second = synthetic_stack.invoke(function.name, {})
    # Then the second call reuses the warm environment, which sees Lambda's variables only
    assert first.ok and second.ok
    assert second.payload["pid"] == first.payload["pid"]  # same warm environment
    assert second.payload["count"] == first.payload["count"] + 1  # module state kept
    env = first.payload["env"]
    assert env["AWS_ENDPOINT_URL"] == synthetic_stack.endpoints["moto_endpoint"]
    assert env["RECORD_DIR"] == function.environment["RECORD_DIR"]
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == function.name
    assert env["KLING_STACK_LEAK_CHECK"] is None  # nothing of the caller's environment leaks in
    assert first.payload["memory"] == "128"
    assert first.payload["arn"] == function.arn
    assert 0 < first.payload["remaining_ms"] <= 3000

    # When an invocation runs past the 3 s timeout
    stats = synthetic_stack.function_stats()["SlowFunction"]
    slow = synthetic_stack.invoke("SlowFunction", {"sleep": 30})
    # Then it times out
    assert not slow.ok and slow.timed_out
    assert slow.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in slow.payload["errorMessage"]
    # When the function is invoked again
    after = synthetic_stack.invoke("SlowFunction", {})
    # Then it starts cold in a fresh environment, and the counters show it all
    assert after.ok and after.cold_start
    assert after.payload["count"] == 1  # the timed-out environment was discarded
    now = synthetic_stack.function_stats()["SlowFunction"]
    assert now["timeouts"] == stats["timeouts"] + 1
    assert now["cold_starts"] == stats["cold_starts"] + 1
    assert now["errors"] == stats["errors"] + 1
    assert os.path.exists(Path(synthetic_stack.endpoints["log_dir"]) / "SlowFunction.log")


def test_clock_fires_schedules(synthetic_stack: LocalStack, synthetic_root: Path) -> None:
    # When the clock has fired the rule twice and the schedule once
    def ticks() -> tuple[list[Any], list[Any]] | None:
        records = read_records(synthetic_root, "tick")
        rules = [r for r in records if r.get("detail-type") == "Scheduled Event"]
        scheduler = [r for r in records if r.get("from") == "scheduler"]
        return (rules, scheduler) if len(rules) >= 2 and scheduler else None

    rules, _ = wait_for(ticks, 60, interval_s=0.5, what="two rule ticks and one scheduler tick")
    # Then the rule's events look like EventBridge's and the clock counted them
    assert rules[0]["source"] == "aws.events"
    assert rules[0]["resources"][0].startswith("arn:aws:events:us-east-1:123456789012:rule/")
    assert synthetic_stack.clock is not None
    fired = synthetic_stack.clock.fired()
    assert fired["TickFunctionEveryMinute"] >= 2 and fired["TickFunctionEveryMinuteV2"] >= 1


def test_concurrent_invocations_share_a_bounded_pool(synthetic_stack: LocalStack) -> None:
    # When six one-second invocations run at once
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: synthetic_stack.invoke("SlowFunction", {"sleep": 1}), range(6)))
    # Then all succeed, side by side in two or three environments
    assert all(r.ok for r in results)
    pids = {r.payload["pid"] for r in results}
    assert 2 <= len(pids) <= 3  # ran side by side, in at most max_concurrency=3 environments


def test_a_redeploy_with_new_variables_starts_new_environments(synthetic_stack: LocalStack) -> None:
    # Given a warm environment, and an invocation still running in another
    warm = synthetic_stack.invoke("SlowFunction", {"env": ["DEFAULT_MODEL"]})
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(synthetic_stack.invoke, "SlowFunction", {"sleep": 1.5, "env": ["DEFAULT_MODEL"]})
        wait_for(lambda: synthetic_stack.runtime.pools["SlowFunction"].busy() or None, 10, what="a busy worker")  # type: ignore[union-attr]
        # When the function is redeployed with another variable
        synthetic_stack.redeploy("SlowFunction", DEFAULT_MODEL="kling-v3")
        in_flight = running.result(timeout=30)
    after = [synthetic_stack.invoke("SlowFunction", {"env": ["DEFAULT_MODEL"]}) for _ in range(2)]
    # Then the invocation in flight finished in its old environment
    assert in_flight.ok and in_flight.payload["env"]["DEFAULT_MODEL"] is None
    # And the next starts cold in a new one that reads the new variable, and stays warm after
    assert after[0].ok and after[0].cold_start and after[0].payload["env"]["DEFAULT_MODEL"] == "kling-v3"
    assert after[0].payload["pid"] not in (warm.payload["pid"], in_flight.payload["pid"])
    assert after[1].payload["pid"] == after[0].payload["pid"] and not after[1].cold_start
    # (the next test expects the environment it was deployed with)
    synthetic_stack.redeploy("SlowFunction", DEFAULT_MODEL="")


def test_import_errors_and_exits_are_lambda_errors(synthetic_stack: LocalStack) -> None:
    # When a function whose module does not import is invoked
    broken = synthetic_stack.invoke("BrokenFunction", {})
    # Then it fails with Runtime.ImportModuleError, counted once
    assert not broken.ok
    assert broken.payload["errorType"] == "Runtime.ImportModuleError"
    assert "a_module_that_does_not_exist" in broken.payload["errorMessage"]
    assert synthetic_stack.function_stats()["BrokenFunction"] == {
        "invocations": 1,
        "errors": 1,
        "cold_starts": 1,
        "timeouts": 0,
    }
    # When the function exits its process
    exited = synthetic_stack.invoke("SlowFunction", {"exit": True})
    # Then it is a Runtime.ExitError, and later invocations still succeed
    assert not exited.ok and exited.payload["errorType"] == "Runtime.ExitError"
    # The exited environment is never handed out again (up to max_concurrency=3 may be warm).
    assert all(synthetic_stack.invoke("SlowFunction", {}).ok for _ in range(4))
