"""Small corrections to moto where it differs from AWS in ways this pipeline depends on.

Applied by the local stack and by the integration tests, so both run the same engine. Each bridge
names the AWS behaviour it restores; remove one when moto does it itself.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _input_members(service_name: str, api_action: str) -> dict[str, str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service_name)
    operation = model.operation_model(api_action[:1].upper() + api_action[1:])
    shape = operation.input_shape
    return {name.lower(): name for name in (shape.members if shape is not None else {})}


@cache
def apply_aws_sdk_parameter_case() -> None:
    """AWS SDK integrations take PascalCase parameters even where the API is camelCase
    (`aws-sdk:sfn:sendTaskSuccess` with `TaskToken`); moto hands them to botocore as written, which
    rejects them. Map each top-level key to the API's own member name, as Step Functions does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._eval_service_task

    def _eval_service_task(self: Any, *args: Any, **kwargs: Any) -> Any:
        members = _input_members(self._get_boto_service_name(), self.resource.api_action)
        parameters = kwargs.get("normalised_parameters", args[2] if len(args) > 2 else {})
        fixed = {members.get(key.lower(), key): value for key, value in parameters.items()}
        if "normalised_parameters" in kwargs:
            kwargs["normalised_parameters"] = fixed
        else:
            args = (*args[:2], fixed, *args[3:])
        return original(self, *args, **kwargs)

    StateTaskServiceAwsSdk._eval_service_task = _eval_service_task  # type: ignore[method-assign]


@cache
def apply_schedule_rules_match_no_events() -> None:
    """A rule with a schedule and no event pattern fires on its schedule only; AWS never matches events
    against it. moto treats its empty pattern as "match everything" and then fails every PutEvents on
    the bus with NotImplementedError for the rule's Lambda target (the poller's schedule)."""
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send_to_targets(self: Any, *args: Any, **kwargs: Any) -> None:
        pattern = getattr(self, "event_pattern", None)
        if getattr(self, "scheduled_expression", None) and (pattern is None or not pattern.dump()):
            return
        original(self, *args, **kwargs)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


@cache
def apply_dynamodb_requests_atomic() -> None:
    """DynamoDB applies each request as one step: a conditional write's check and write, a
    transaction's items all or none, an ADD's read and sum. moto's handlers are plain Python, and
    threads (the local stack's concurrent functions, a test's concurrent submitters) interleave
    inside them: two conditional claims of one item could both pass. One request at a time restores
    the guarantee the exactly-once claims and the daily budget rely on."""
    import threading

    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    lock = threading.RLock()

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


@cache
def apply_aws_unkind_answers() -> None:
    """AWS throttles, fails, half-fails and conflicts; moto never does. Hooks kling_local.aws_faults into
    moto's two entry points: DynamoDB's TransactionConflict, its throttling, PutEvents' failed entries and
    5xx from S3, SQS, Step Functions and Lambda, at a rate (`AwsFaults`, the local stack's `aws_faults`)
    or on a test's demand (`AWS_FAULTS.inject`). With neither, every request goes to moto untouched."""
    from kling_local.aws_faults import install

    install()


def apply_all() -> None:
    apply_aws_sdk_parameter_case()
    apply_schedule_rules_match_no_events()
    apply_dynamodb_requests_atomic()
    apply_aws_unkind_answers()
