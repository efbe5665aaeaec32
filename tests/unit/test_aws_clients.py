"""Every AWS client the functions build retries throttling and 5xx deliberately: standard mode, five
attempts (adapters.aws_clients), never botocore's per-service legacy defaults."""

from __future__ import annotations

import ast
from pathlib import Path

from kling_pipeline.adapters import aws_clients

ADAPTERS = Path(aws_clients.__file__).parent


def test_the_retry_policy_is_standard_mode_with_five_attempts() -> None:
    # When a client is built the adapters' way
    client = aws_clients.client("sqs", region_name="us-east-1")
    # Then botocore's standard retry mode is on, with five attempts in all
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert client.meta.events  # a real client: botocore registered its standard retry handler on it
    assert aws_clients.resource("dynamodb").meta.client.meta.config.retries["mode"] == "standard"


def test_no_adapter_builds_a_boto3_client_or_resource_of_its_own() -> None:
    # Given every module of kling_pipeline (only adapters talk to AWS, but look everywhere)
    offenders = []
    for path in sorted(ADAPTERS.parent.rglob("*.py")):
        if path == Path(aws_clients.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # Then none calls boto3.client(...) / boto3.resource(...) itself: they go through aws_clients
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("client", "resource")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "boto3"
            ):
                offenders.append(f"{path.relative_to(ADAPTERS.parent)}:{node.lineno}")
    assert offenders == []
