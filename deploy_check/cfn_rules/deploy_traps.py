"""cfn-lint rules of our own: template mistakes that pass cfn-lint and `sam validate` but fail (or
quietly break) a real `sam deploy` (issue 20). Loaded with `cfn-lint --append-rules deploy_check/cfn_rules`.

cfn-lint (1.x) hands rules the SAM template itself, with Globals merged into the resources, so the
rules read both SAM resources (AWS::Serverless::Api, ...::Function) and what SAM makes of them
(AWS::ApiGateway::Stage, AWS::Lambda::Function), for templates written either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from cfnlint.rules import CloudFormationLintRule, RuleMatch

SERVERLESS_API = "AWS::Serverless::Api"
STAGE = "AWS::ApiGateway::Stage"
DEPLOYMENT = "AWS::ApiGateway::Deployment"
ACCOUNT = "AWS::ApiGateway::Account"
ALARM_ACTIONS = ("AlarmActions", "OKActions", "InsufficientDataActions")
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_AWS_MANAGED_SNS_KEY = re.compile(r"(^|:)alias/aws/sns$")


def _resources(cfn: Any, *types: str) -> dict[str, dict[str, Any]]:
    return {
        lid: resource
        for lid, resource in (cfn.template.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") in types
    }


def _properties(resource: dict[str, Any]) -> dict[str, Any]:
    properties = resource.get("Properties")
    return properties if isinstance(properties, dict) else {}


def _branches(value: Any) -> Iterator[Any]:
    """The values a property can take: each branch of an Fn::If, recursively (AWS::NoValue left out)."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        arguments = value["Fn::If"]
        if isinstance(arguments, list) and len(arguments) == 3:
            yield from _branches(arguments[1])
            yield from _branches(arguments[2])
        return
    if value == {"Ref": "AWS::NoValue"}:
        return
    yield value


def _references(value: Any) -> set[str]:
    """Logical ids (and parameters) a fragment refers to: Ref, Fn::GetAtt, ${X} in Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
        return found
    if not isinstance(value, dict):
        return found
    for key, argument in value.items():
        if key == "Ref" and isinstance(argument, str):
            found.add(argument)
        elif key == "Fn::GetAtt":
            target = argument[0] if isinstance(argument, list) and argument else str(argument).split(".", 1)[0]
            found.add(str(target))
        elif key == "Fn::Sub":
            text, mapping = (argument[0], argument[1]) if isinstance(argument, list) and argument else (argument, {})
            if isinstance(text, str):
                names = {variable.split(".", 1)[0] for variable in _SUB_VARIABLE.findall(text)}
                found |= names - set(mapping if isinstance(mapping, dict) else {})
            found |= _references(mapping)
        else:
            found |= _references(argument)
    return {name for name in found if not name.startswith("AWS::")}


def _dependencies(resources: dict[str, Any], logical_id: str) -> set[str]:
    """Every resource `logical_id` waits for: its DependsOn and references (Metadata included, as
    CloudFormation orders them), and theirs, transitively."""
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources.get(todo.pop())
        if not isinstance(resource, dict):
            continue
        depends_on = resource.get("DependsOn", [])
        direct = set(depends_on if isinstance(depends_on, list) else [depends_on])
        direct |= _references({k: v for k, v in resource.items() if k != "DependsOn"})
        for name in direct & set(resources):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


class MethodSettingsResourcePathEncoded(CloudFormationLintRule):
    """A stage's MethodSettings ResourcePath with "/" after the first character."""

    id = "E9001"
    shortdesc = "MethodSettings ResourcePath must be CloudFormation-encoded"
    description = (
        'CloudFormation wants every "/" of a method setting\'s resource path after the first written "~1" '
        '("/~1callbacks~1{job_id}"); otherwise API Gateway answers "Invalid method setting path" and the '
        "stage, and with it the first deploy, fails."
    )
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-apigateway-stage-methodsetting.html"
    tags = ["apigateway", "deploy"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for lid, resource in _resources(cfn, SERVERLESS_API, STAGE, DEPLOYMENT).items():
            properties = _properties(resource)
            path: list[str | int] = ["Resources", lid, "Properties", "MethodSettings"]
            settings = properties.get("MethodSettings")
            if resource["Type"] == DEPLOYMENT:
                stage = properties.get("StageDescription")
                settings = stage.get("MethodSettings") if isinstance(stage, dict) else None
                path = ["Resources", lid, "Properties", "StageDescription", "MethodSettings"]
            for choice in _branches(settings):
                for index, setting in enumerate(choice if isinstance(choice, list) else []):
                    for one in _branches(setting):
                        resource_path = one.get("ResourcePath") if isinstance(one, dict) else None
                        if not isinstance(resource_path, str):
                            continue
                        if resource_path.startswith("/") and "/" not in resource_path[1:]:
                            continue
                        matches.append(self._match([*path, index, "ResourcePath"], lid, resource_path))
        return matches

    @staticmethod
    def _match(path: list[str | int], lid: str, resource_path: str) -> RuleMatch:
        # "/" then the API's resource path with each of its "/" as "~1": /callbacks/{id} -> /~1callbacks~1{id}.
        if resource_path.startswith("/~1"):
            encoded = "/" + resource_path[1:].replace("/", "~1")
        else:
            encoded = "/" + ("/" + resource_path.lstrip("/")).replace("/", "~1")
        return RuleMatch(
            path,
            f'{lid}: MethodSettings ResourcePath "{resource_path}" is not CloudFormation-encoded; API Gateway '
            f'refuses it ("Invalid method setting path"). Write "{encoded}" (a leading "/", then the resource '
            'path with every "/" as "~1").',
        )


class ReservedConcurrencyBehindParameter(CloudFormationLintRule):
    """ReservedConcurrentExecutions written as a literal number."""

    id = "E9002"
    shortdesc = "Reserved concurrency must be a parameter, off by default"
    description = (
        "Lambda keeps 10 concurrent executions of an account unreserved: reserving any on an account "
        "whose quota is 10 (every new account) fails the deploy. Reserve only through a parameter."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"
    tags = ["lambda", "deploy"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for lid, resource in _resources(cfn, "AWS::Lambda::Function", "AWS::Serverless::Function").items():
            value = _properties(resource).get("ReservedConcurrentExecutions")
            literal = isinstance(value, (int, float)) and not isinstance(value, bool)
            literal = literal or (isinstance(value, str) and value.strip().isdigit())
            if literal:
                matches.append(
                    RuleMatch(
                        ["Resources", lid, "Properties", "ReservedConcurrentExecutions"],
                        f"{lid}: ReservedConcurrentExecutions is the literal {value}, which fails the deploy on "
                        "accounts whose Lambda concurrency quota is 10 (new accounts: 10 must stay unreserved). "
                        "Put it behind a parameter that defaults to 0 = none: "
                        "!If [HasReservation, !Ref ReservedConcurrency, !Ref AWS::NoValue].",
                    )
                )
        return matches


class AlarmTopicNotOnAwsManagedSnsKey(CloudFormationLintRule):
    """An SNS topic encrypted with alias/aws/sns."""

    id = "E9003"
    shortdesc = "SNS topics AWS services publish to cannot use alias/aws/sns"
    description = (
        "The AWS managed key alias/aws/sns has a key policy no AWS service may use: CloudWatch alarms "
        "(EventBridge, S3 events, ...) publishing to a topic encrypted with it fail silently."
    )
    source_url = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"
    tags = ["sns", "cloudwatch", "deploy"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        alarms = _resources(cfn, "AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
        for lid, resource in _resources(cfn, "AWS::SNS::Topic").items():
            key = _properties(resource).get("KmsMasterKeyId")
            if not any(isinstance(k, str) and _AWS_MANAGED_SNS_KEY.search(k) for k in _branches(key)):
                continue
            users = sorted(
                alarm
                for alarm, alarm_resource in alarms.items()
                if any(lid in _references(_properties(alarm_resource).get(a)) for a in ALARM_ACTIONS)
            )
            who = f"the alarms {', '.join(users)} never reach it" if users else "no AWS service can publish to it"
            matches.append(
                RuleMatch(
                    ["Resources", lid, "Properties", "KmsMasterKeyId"],
                    f"{lid} is encrypted with alias/aws/sns, whose key policy CloudWatch cannot use: {who}. "
                    "Use a customer-managed AWS::KMS::Key (EnableKeyRotation: true) whose policy lets "
                    "cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*, or no SSE.",
                )
            )
        return matches


class AccessLogsAfterApiGatewayAccount(CloudFormationLintRule):
    """An API stage with access logs not ordered after the template's API Gateway account setting."""

    id = "E9004"
    shortdesc = "API stages with access logs must wait for AWS::ApiGateway::Account"
    description = (
        'A stage with AccessLogSetting is refused ("CloudWatch Logs role ARN must be set in account '
        'settings to enable logging") until the account has its CloudWatch role; when the template sets '
        "it, every such stage must be ordered after it."
    )
    source_url = "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html"
    tags = ["apigateway", "deploy"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        accounts = _resources(cfn, ACCOUNT)
        if not accounts:
            return []  # the account's role is set elsewhere
        resources = cfn.template.get("Resources") or {}
        matches: list[RuleMatch] = []
        for lid, resource in _resources(cfn, SERVERLESS_API, STAGE, DEPLOYMENT).items():
            properties = _properties(resource)
            if resource["Type"] == DEPLOYMENT:
                stage = properties.get("StageDescription")
                properties = stage if isinstance(stage, dict) else {}
            if "AccessLogSetting" not in properties:
                continue
            if set(accounts) <= _dependencies(resources, lid):
                continue
            for account, account_resource in accounts.items():
                condition = account_resource.get("Condition")
                how = (
                    f"DependsOn an AWS::CloudFormation::WaitConditionHandle whose Metadata holds !If [{condition}, "
                    f'!Ref {account}, ""] (CloudFormation has no conditional DependsOn)'
                    if condition
                    else f"DependsOn: {account}"
                )
                matches.append(
                    RuleMatch(
                        ["Resources", lid],
                        f"{lid} logs access but is not ordered after {account}: created first, its stage fails "
                        f'("CloudWatch Logs role ARN must be set in account settings"). Give it {how}.',
                    )
                )
        return matches


class OpenApiVersionInGlobals(CloudFormationLintRule):
    """A SAM API without OpenApiVersion (SAM then adds a stage named "Stage")."""

    id = "W9005"
    shortdesc = "SAM APIs need OpenApiVersion (else an extra stage named Stage)"
    description = (
        'Without OpenApiVersion SAM deploys every REST API a second stage, "Stage", with none of the '
        "API's method settings (throttles) or access logs. Set it in Globals.Api."
    )
    source_url = "https://github.com/aws/serverless-application-model/issues/191"
    tags = ["apigateway", "sam", "deploy"]

    _fix = 'Add OpenApiVersion: "3.0.1" to Globals.Api.'

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for lid, resource in _resources(cfn, SERVERLESS_API).items():
            if "OpenApiVersion" not in _properties(resource):  # Globals are merged in by now
                matches.append(
                    RuleMatch(
                        ["Resources", lid],
                        f'{lid} has no OpenApiVersion: SAM adds a second stage, "Stage", without its throttles '
                        f"or access logs. {self._fix}",
                    )
                )
        globals_api = (cfn.transform_pre.get("Globals") or {}).get("Api") or {}
        implicit = [
            lid
            for lid, resource in _resources(cfn, "AWS::Serverless::Function").items()
            for event in (_properties(resource).get("Events") or {}).values()
            if isinstance(event, dict)
            and event.get("Type") == "Api"
            and "RestApiId" not in (event.get("Properties") or {})
        ]
        if implicit and "OpenApiVersion" not in globals_api:
            matches.append(
                RuleMatch(
                    ["Globals"],
                    f"{', '.join(sorted(set(implicit)))} serve on SAM's implicit API, which without "
                    f'Globals.Api.OpenApiVersion gets a second stage, "Stage". {self._fix}',
                )
            )
        return matches
