"""The template deployed into moto through CloudFormation (as `sam deploy` would).

After the stack exists, the parts moto's CloudFormation does not finish are completed through the
ordinary APIs: secrets (created before, see template.py), bucket policies, and state machines
re-created where moto's executing Step Functions engine can see them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kling_local.stack.moto_server import ACCOUNT_ID, AwsTarget, DeployError
from kling_local.stack.sam_translation import ApiRoute
from kling_local.stack.template import (
    BUCKET_POLICY,
    EVENT_SOURCE_MAPPING,
    EVENTS_RULE,
    HIDDEN_OUTPUT_PREFIX,
    SCHEDULER_SCHEDULE,
    STATE_MACHINE,
    LocalTemplate,
    SecretSource,
    secret_references_to_arns,
)
from kling_local.stack.template_loader import TemplateError

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ what was deployed


@dataclass(frozen=True)
class FunctionConfig:
    """A deployed function as Lambda would run it: moto's configuration plus the local code paths."""

    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    timeout_s: float
    memory_mb: int
    environment: Mapping[str, str]
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    role_arn: str = ""  # the execution role, whose session the function runs with


@dataclass(frozen=True)
class SqsSourceConfig:
    """An SQS event source mapping, resolved."""

    logical_id: str
    function: str  # logical id
    queue_arn: str
    batch_size: int
    batching_window_s: float
    report_batch_item_failures: bool
    maximum_concurrency: int | None
    enabled: bool


@dataclass(frozen=True)
class ScheduleConfig:
    """One target of a schedule rule (Schedule event) or an EventBridge Scheduler schedule (ScheduleV2)."""

    logical_id: str
    kind: str  # "rule" | "scheduler"
    expression: str
    target_arn: str
    input: str | None
    enabled: bool
    source_arn: str


@dataclass
class Deployment:
    stack_name: str
    stack_id: str
    outputs: dict[str, str]
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    functions: dict[str, FunctionConfig]
    sqs_sources: list[SqsSourceConfig]
    schedules: list[ScheduleConfig]
    state_machines: dict[str, str]  # logical id -> ARN (in the executing engine)
    secrets: dict[str, str]  # logical id -> ARN
    routes: list[ApiRoute]
    dropped: dict[str, str] = field(default_factory=dict)

    def physical_id(self, logical_id: str) -> str | None:
        entry = self.resources.get(logical_id)
        return entry[1] if entry else None


def _truthy(value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "disabled")
    return bool(value)


def _create_secret(aws: AwsTarget, source: SecretSource, stack_name: str) -> str:
    sm = aws.client("secretsmanager")
    value = source.secret_string
    if value is None:
        gen = dict(source.generate or {})
        for key, item in gen.items():
            if isinstance(item, dict):
                raise TemplateError(f"{source.logical_id}.GenerateSecretString.{key}: use a literal to run locally")
        password = sm.get_random_password(
            PasswordLength=int(gen.get("PasswordLength", 32)),
            ExcludeCharacters=str(gen.get("ExcludeCharacters", "")),
            ExcludeNumbers=_truthy(gen.get("ExcludeNumbers"), False),
            ExcludePunctuation=_truthy(gen.get("ExcludePunctuation"), False),
            ExcludeUppercase=_truthy(gen.get("ExcludeUppercase"), False),
            ExcludeLowercase=_truthy(gen.get("ExcludeLowercase"), False),
            IncludeSpace=_truthy(gen.get("IncludeSpace"), False),
            RequireEachIncludedType=_truthy(gen.get("RequireEachIncludedType"), True),
        )["RandomPassword"]
        template = gen.get("SecretStringTemplate")
        if template is not None:
            document = json.loads(str(template))
            document[str(gen.get("GenerateStringKey", "password"))] = password
            value = json.dumps(document)
        else:
            value = password
    name = source.name or f"{stack_name}-{source.logical_id}"
    response = sm.create_secret(Name=name, Description=source.description, SecretString=value)
    return str(response["ARN"])


def deploy(local: LocalTemplate, aws: AwsTarget, stack_name: str, *, timeout_s: float = 120.0) -> Deployment:
    """Create the stack in moto and finish what moto's CloudFormation leaves undone."""
    secrets = {s.logical_id: _create_secret(aws, s, stack_name) for s in local.secrets}
    cfn_template = secret_references_to_arns(local.cfn, secrets)
    defined = cfn_template.get("Parameters") or {}
    parameters = [
        {"ParameterKey": name, "ParameterValue": _parameter_text(value)}
        for name, value in local.parameters.items()
        if name in defined and value is not None
    ]
    cfn = aws.client("cloudformation")
    stack_id = cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn_template),
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )["StackId"]
    stack = _wait_for_stack(cfn, stack_name, timeout_s)

    all_outputs = {o["OutputKey"]: str(o.get("OutputValue", "")) for o in stack.get("Outputs", [])}
    outputs = {k: v for k, v in all_outputs.items() if not k.startswith(HIDDEN_OUTPUT_PREFIX)}
    resources: dict[str, tuple[str, str]] = {}
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            resources[summary["LogicalResourceId"]] = (summary["ResourceType"], summary.get("PhysicalResourceId", ""))
    for lid, arn in secrets.items():
        resources[lid] = ("AWS::SecretsManager::Secret", arn)

    functions = _functions(local, aws, resources)
    name_to_lid = {f.name: lid for lid, f in functions.items()} | {f.arn: lid for lid, f in functions.items()}

    sqs_sources: list[SqsSourceConfig] = []
    schedules: list[ScheduleConfig] = []
    state_machines: dict[str, str] = {}
    for hidden in local.hidden_outputs:
        raw = all_outputs.get(hidden.key)
        if raw is None:
            continue  # its Condition is false: the resource does not exist
        props: dict[str, Any] = json.loads(raw)
        if hidden.kind == EVENT_SOURCE_MAPPING:
            source = _sqs_source(hidden.logical_id, props, name_to_lid)
            if source is not None:
                sqs_sources.append(source)
        elif hidden.kind in (EVENTS_RULE, SCHEDULER_SCHEDULE):
            schedules.extend(_schedules(hidden.logical_id, hidden.kind, props, aws))
        elif hidden.kind == BUCKET_POLICY:
            _apply_bucket_policy(aws, hidden.logical_id, props)
        elif hidden.kind == STATE_MACHINE:
            state_machines[hidden.logical_id] = _ensure_state_machine(aws, hidden.logical_id, props)

    return Deployment(
        stack_name=stack_name,
        stack_id=str(stack_id),
        outputs=outputs,
        resources=resources,
        functions=functions,
        sqs_sources=sqs_sources,
        schedules=schedules,
        state_machines=state_machines,
        secrets=secrets,
        routes=[r for r in local.routes if r.function in functions],
        dropped=dict(local.dropped),
    )


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _wait_for_stack(cfn: Any, stack_name: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = str(stack["StackStatus"])
        if status == "CREATE_COMPLETE":
            return stack
        if not status.endswith("IN_PROGRESS"):
            events = cfn.describe_stack_events(StackName=stack_name).get("StackEvents", [])
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                for e in events
                if "FAILED" in str(e.get("ResourceStatus")) and e.get("ResourceStatusReason")
            ]
            raise DeployError(f"stack {stack_name} is {status}: {'; '.join(reasons) or stack.get('StackStatusReason')}")
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} still {status} after {timeout_s:.0f} s")
        time.sleep(0.2)


def _functions(
    local: LocalTemplate, aws: AwsTarget, resources: Mapping[str, tuple[str, str]]
) -> dict[str, FunctionConfig]:
    """Each function's configuration as moto resolved it (environment included), plus its local code."""
    lam = aws.client("lambda")
    result: dict[str, FunctionConfig] = {}
    for lid, source in local.functions.items():
        entry = resources.get(lid)
        if entry is None:
            continue  # a Condition left it out
        config = lam.get_function_configuration(FunctionName=entry[1])
        variables = (config.get("Environment") or {}).get("Variables") or {}
        result[lid] = FunctionConfig(
            logical_id=lid,
            name=str(config["FunctionName"]),
            arn=str(config["FunctionArn"]),
            handler=str(config.get("Handler") or "app.lambda_handler"),
            runtime=str(config.get("Runtime") or source.runtime),
            timeout_s=float(config.get("Timeout") or 3),
            memory_mb=int(config.get("MemorySize") or 128),
            # Lambda environment values are strings; moto keeps Number parameters as ints.
            environment={str(k): _parameter_text(v) for k, v in variables.items()},
            code_dir=source.code_dir,
            layer_dirs=source.layer_dirs,
            role_arn=str(config.get("Role") or ""),
        )
    return result


def _sqs_source(lid: str, props: Mapping[str, Any], name_to_lid: Mapping[str, str]) -> SqsSourceConfig | None:
    arn = str(props.get("EventSourceArn", ""))
    if not arn.startswith("arn:aws:sqs:"):
        log.warning("%s: only SQS event sources run locally (not %s)", lid, arn.split(":")[2:3])
        return None
    function = str(props.get("FunctionName", ""))
    # A name, an ARN, or an alias/version ARN (AutoPublishAlias): arn:...:function:NAME[:QUALIFIER].
    bare = function.split(":function:", 1)[-1].split(":", 1)[0]
    function_lid = name_to_lid.get(function) or name_to_lid.get(bare)
    if function_lid is None:
        log.warning("%s: function %s does not run locally; its queue is not polled", lid, function)
        return None
    if props.get("FilterCriteria"):
        log.warning("%s: FilterCriteria are not applied locally; every message reaches the function", lid)
    scaling = props.get("ScalingConfig") or {}
    max_concurrency = scaling.get("MaximumConcurrency")
    return SqsSourceConfig(
        logical_id=lid,
        function=function_lid,
        queue_arn=arn,
        batch_size=int(props.get("BatchSize") or 10),
        batching_window_s=float(props.get("MaximumBatchingWindowInSeconds") or 0),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        maximum_concurrency=int(max_concurrency) if max_concurrency else None,
        enabled=_truthy(props.get("Enabled"), True),
    )


def _schedules(lid: str, kind: str, props: Mapping[str, Any], aws: AwsTarget) -> list[ScheduleConfig]:
    expression = str(props.get("ScheduleExpression", ""))
    enabled = str(props.get("State", "ENABLED")).upper() == "ENABLED"
    if kind == EVENTS_RULE:
        source_arn = str(props.get("Arn", ""))
        targets = props.get("Targets") or []
        out = []
        for target in targets:
            if "InputPath" in target or "InputTransformer" in target:
                log.warning("%s: InputPath/InputTransformer are not applied locally", lid)
            out.append(
                ScheduleConfig(
                    logical_id=lid,
                    kind="rule",
                    expression=expression,
                    target_arn=str(target.get("Arn", "")),
                    input=target.get("Input"),
                    enabled=enabled,
                    source_arn=source_arn,
                )
            )
        return out
    target = props.get("Target") or {}
    name = str(props.get("Name") or lid)
    group = str(props.get("GroupName") or "default")
    return [
        ScheduleConfig(
            logical_id=lid,
            kind="scheduler",
            expression=expression,
            target_arn=str(target.get("Arn", "")),
            input=target.get("Input"),
            enabled=enabled,
            source_arn=f"arn:aws:scheduler:{aws.region}:{ACCOUNT_ID}:schedule/{group}/{name}",
        )
    ]


def _apply_bucket_policy(aws: AwsTarget, lid: str, props: Mapping[str, Any]) -> None:
    """Put the bucket policy, minus conditional Deny statements: moto checks bucket policies on object
    requests but ignores their conditions, so `Deny unless aws:SecureTransport` would deny everything
    (and locally nothing is TLS anyway)."""
    raw = props.get("PolicyDocument") or {}
    document: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    statements = document.get("Statement") or []
    statements = statements if isinstance(statements, list) else [statements]
    kept = [s for s in statements if not (s.get("Effect") == "Deny" and s.get("Condition"))]
    skipped = [str(s.get("Sid", "?")) for s in statements if s not in kept]
    if skipped:
        log.info("%s: conditional Deny statement(s) %s not applied locally", lid, ", ".join(skipped))
    if not kept:
        return
    document["Statement"] = kept
    aws.client("s3").put_bucket_policy(Bucket=str(props["Bucket"]), Policy=json.dumps(document))


def _ensure_state_machine(aws: AwsTarget, lid: str, props: Mapping[str, Any]) -> str:
    """moto's CloudFormation registers state machines where its executing engine does not look: create
    the same one (same name, so the same ARN every reference already holds) through the API."""
    sfn = aws.client("stepfunctions")
    arn = str(props["Arn"])
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
        return arn
    except sfn.exceptions.StateMachineDoesNotExist:
        pass
    definition = props["Definition"]
    try:
        created = sfn.create_state_machine(
            name=str(props["Name"]),
            definition=definition if isinstance(definition, str) else json.dumps(definition),
            roleArn=str(props.get("RoleArn") or f"arn:aws:iam::{ACCOUNT_ID}:role/{lid}Role"),
            type=str(props.get("Type") or "STANDARD"),
        )
    except sfn.exceptions.InvalidDefinition as exc:
        raise DeployError(f"{lid}: moto's Step Functions engine refused the definition: {exc}") from None
    if created["stateMachineArn"] != arn:
        log.warning("%s: re-created as %s, but the stack refers to %s", lid, created["stateMachineArn"], arn)
    return str(created["stateMachineArn"])
