"""template.yaml as CloudFormation receives it (the SAM transform, offline with samtranslator, as
`sam deploy` runs it): what the first deploy needs, checked on the resources SAM generates."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest

from kling_local.stack.sam_translation import localise_uris, sam_transform
from kling_local.stack.template import references
from kling_local.stack.template_loader import IntrinsicEvaluator, pseudo_parameters
from tests.support.template import ROOT, load_template

# Every optional part on: the API-key endpoint, the alarm topic, the stack's own logging role.
PARAMETERS = {"JobsApiKeys": "true", "AlarmEmail": "ops@example.com", "SetApiGatewayLoggingRole": "true"}


@cache
def _transformed() -> dict[str, Any]:
    template = load_template()
    localise_uris(template, ROOT)
    return sam_transform(template, PARAMETERS, "us-east-1")


@pytest.fixture
def cfn() -> dict[str, Any]:
    return copy.deepcopy(_transformed())


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in cfn["Resources"].items() if r["Type"] == kind}


def waits_for(cfn: dict[str, Any], logical_id: str) -> set[str]:
    """Every resource CloudFormation creates before `logical_id`: DependsOn and references (Metadata's
    too), transitively."""
    resources = cfn["Resources"]
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources[todo.pop()]
        depends_on = resource.get("DependsOn", [])
        direct = set(depends_on if isinstance(depends_on, list) else [depends_on])
        direct |= references({k: v for k, v in resource.items() if k != "DependsOn"})
        for name in (direct & set(resources)) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_no_api_gets_sams_extra_stage_named_stage(cfn: dict[str, Any]) -> None:
    stages = of_type(cfn, "AWS::ApiGateway::Stage")
    assert {s["Properties"]["RestApiId"]["Ref"] for s in stages.values()} == {"CallbackApi", "JobsApi", "JobsKeyApi"}
    assert {s["Properties"]["StageName"] for s in stages.values()} == {"v1"}
    # A deployment with a StageName makes a stage of its own (SAM's "Stage"), without throttles or logs.
    for lid, deployment in of_type(cfn, "AWS::ApiGateway::Deployment").items():
        assert "StageName" not in deployment["Properties"], lid


def test_every_stage_that_logs_access_is_created_after_the_accounts_logging_role(cfn: dict[str, Any]) -> None:
    logged = {lid for lid, s in of_type(cfn, "AWS::ApiGateway::Stage").items() if "AccessLogSetting" in s["Properties"]}
    assert len(logged) == 3
    for stage in logged:
        assert "ApiGatewayAccount" in waits_for(cfn, stage), stage


def test_the_order_is_through_a_handle_so_the_stack_deploys_without_the_logging_role_too(cfn: dict[str, Any]) -> None:
    # SetApiGatewayLoggingRole=false: ApiGatewayAccount does not exist, and nothing may depend on it
    # directly (CloudFormation refuses a DependsOn on a resource whose condition is false); the
    # handle's reference to it is "" then.
    for lid, resource in cfn["Resources"].items():
        depends_on = resource.get("DependsOn", [])
        assert "ApiGatewayAccount" not in (depends_on if isinstance(depends_on, list) else [depends_on]), lid
    handle = cfn["Resources"]["ApiGatewayAccountReady"]
    assert handle["Type"] == "AWS::CloudFormation::WaitConditionHandle"
    assert handle["Metadata"]["ApiGatewayAccount"] == {
        "Fn::If": ["SetApiLoggingRole", {"Ref": "ApiGatewayAccount"}, ""]
    }


def test_the_callback_routes_throttle_reaches_its_stage_in_cloudformations_spelling(cfn: dict[str, Any]) -> None:
    (stage,) = [
        s
        for s in of_type(cfn, "AWS::ApiGateway::Stage").values()
        if s["Properties"]["RestApiId"] == {"Ref": "CallbackApi"}
    ]
    paths = {(m["ResourcePath"], m["HttpMethod"]) for m in stage["Properties"]["MethodSettings"]}
    assert paths == {("/*", "*"), ("/~1callbacks~1{job_id}", "POST")}


def test_the_api_key_output_names_the_key_sam_makes(cfn: dict[str, Any]) -> None:
    output = cfn["Outputs"]["JobsApiKeyId"]
    key = cfn["Resources"][output["Value"]["Ref"]]
    assert key["Type"] == "AWS::ApiGateway::ApiKey"
    assert output["Condition"] == key["Condition"] == "UseApiKeys"
    assert "get-api-key" in output["Description"] and "--include-value" in output["Description"]


def poller_properties(cfn: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    evaluator = IntrinsicEvaluator(
        cfn,
        parameters=parameters,
        pseudo=pseudo_parameters("us-east-1", "123456789012"),
        refs={lid: lid for lid in cfn["Resources"]},
        attributes={f"{lid}.Arn": f"arn:{lid}" for lid in cfn["Resources"]},
    )
    properties: dict[str, Any] = evaluator.resolve(cfn["Resources"]["PollerFunction"]["Properties"])
    return properties


def test_the_poller_reserves_no_concurrency_unless_asked(cfn: dict[str, Any]) -> None:
    # An account at Lambda's default quota (10) cannot reserve any: the deploy would fail.
    assert "ReservedConcurrentExecutions" not in poller_properties(cfn)
    assert str(poller_properties(cfn, PollerReservedConcurrency=1)["ReservedConcurrentExecutions"]) == "1"


def test_the_poller_may_list_only_the_videos_prefix(cfn: dict[str, Any]) -> None:
    # Without s3:ListBucket a missing video is 403, not 404.
    statements = cfn["Resources"]["PollerFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (listing,) = [s for s in statements if "s3:ListBucket" in s["Action"]]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == {"Fn::GetAtt": ["VideoBucket", "Arn"]}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["videos/*"]}}


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(cfn: dict[str, Any]) -> None:
    topic = cfn["Resources"]["AlarmTopic"]
    key = cfn["Resources"][topic["Properties"]["KmsMasterKeyId"]["Ref"]]
    assert key["Type"] == "AWS::KMS::Key" and key["Condition"] == topic["Condition"]
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow"
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    (admin,) = [s for s in statements if "AWS" in s["Principal"]]
    assert admin["Action"] == "kms:*"
    assert admin["Principal"]["AWS"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}


def test_a_failed_first_create_leaves_no_table_behind_and_a_deleted_stack_keeps_its_jobs(cfn: dict[str, Any]) -> None:
    for table in of_type(cfn, "AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "RetainExceptOnCreate"
        assert table["UpdateReplacePolicy"] == "Retain"
