"""The one template loader: CloudFormation short forms in their JSON form (as `sam deploy` reads them),
their values where they can be known before a stack exists, and a template with conditions going
through the local stack's preparation and deploy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_local.stack.deploy import deploy
from kling_local.stack.moto_server import ACCOUNT_ID, AwsTarget, MotoServer
from kling_local.stack.stack import scaled_durations
from kling_local.stack.template import prepare
from kling_local.stack.template_loader import (
    IntrinsicEvaluator,
    UnresolvedError,
    load_template,
    parameter_defaults,
    parse_yaml,
    pseudo_parameters,
)
from tests.support.template import ROOT

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: prod
  Zones:
    Type: String
    Default: "a,b,c"
  Retention:
    Type: Number
    Default: 0
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  KeepsLogs: !Not [!Equals [!Ref Retention, 0]]
  ProdWithLogs: !And [!Condition IsProd, !Condition KeepsLogs]
  ProdOrLogs: !Or [!Condition IsProd, !Condition KeepsLogs]
Resources:
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${Stage}-${AWS::Region}-jobs"
      Tags:
        - Key: zone
          Value: !Select [1, !Split [",", !Ref Zones]]
        - Key: zones
          Value: !Join ["+", !Split [",", !Ref Zones]]
  Audit:
    Type: AWS::SQS::Queue
    Condition: ProdOrLogs
    Properties:
      DelaySeconds: !If [ProdWithLogs, 5, !Ref AWS::NoValue]
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Jobs.Arn
        maxReceiveCount: 3
  Token:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !If [IsProd, !Sub "${Stage}-token", dev-token]
      SecretString: !Join ["-", [!Select [0, !Split [",", !Ref Zones]], !Ref Stage]]
Outputs:
  AuditUrl:
    Condition: ProdOrLogs
    Value: !Ref Audit
  JobsName:
    Value: !If [IsProd, !GetAtt Jobs.QueueName, none]
  TokenName:
    Value: !Sub ["${Name} (${!literal})", {Name: !If [IsProd, !Sub "${Stage}-token", dev-token]}]
"""


@pytest.fixture
def template_path(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


def _evaluator(template: dict[str, Any], **parameters: Any) -> IntrinsicEvaluator:
    return IntrinsicEvaluator(
        template,
        parameters=parameters,
        pseudo=pseudo_parameters("eu-west-1", ACCOUNT_ID, "loader"),
        refs={"Jobs": "https://sqs/jobs", "Audit": "https://sqs/audit"},
        attributes={"Jobs.Arn": "arn:aws:sqs:eu-west-1:123456789012:prod-jobs", "Jobs.QueueName": "prod-jobs"},
    )


def test_short_forms_parse_to_their_cloudformation_json_form(template_path: Path) -> None:
    template = load_template(template_path)
    conditions = template["Conditions"]
    assert conditions["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert conditions["KeepsLogs"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "Retention"}, 0]}]}
    # !Condition is {"Condition": name}, never {"Fn::Condition": name}
    assert conditions["ProdWithLogs"] == {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "KeepsLogs"}]}
    assert conditions["ProdOrLogs"] == {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "KeepsLogs"}]}
    jobs = template["Resources"]["Jobs"]["Properties"]
    assert jobs["QueueName"] == {"Fn::Sub": "${Stage}-${AWS::Region}-jobs"}
    assert jobs["Tags"][0]["Value"] == {"Fn::Select": [1, {"Fn::Split": [",", {"Ref": "Zones"}]}]}
    assert jobs["Tags"][1]["Value"] == {"Fn::Join": ["+", {"Fn::Split": [",", {"Ref": "Zones"}]}]}
    audit = template["Resources"]["Audit"]
    assert audit["Condition"] == "ProdOrLogs"
    assert audit["Properties"]["DelaySeconds"] == {"Fn::If": ["ProdWithLogs", 5, {"Ref": "AWS::NoValue"}]}
    assert audit["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["Jobs", "Arn"]}
    assert template["Outputs"]["TokenName"]["Value"] == {
        "Fn::Sub": [
            "${Name} (${!literal})",
            {"Name": {"Fn::If": ["IsProd", {"Fn::Sub": "${Stage}-token"}, "dev-token"]}},
        ]
    }
    assert parameter_defaults(template) == {"Stage": "prod", "Zones": "a,b,c", "Retention": 0}


def test_the_real_template_parses_with_its_conditions() -> None:
    template = load_template(ROOT / "template.yaml")
    assert "Fn::Condition" not in str(template)
    assert template["Conditions"]["VersionBucket"] == {"Fn::Equals": [{"Ref": "EnableBucketVersioning"}, "true"]}
    versioning = template["Resources"]["VideoBucket"]["Properties"]["VersioningConfiguration"]
    assert versioning["Fn::If"][0] == "VersionBucket"


def test_intrinsics_resolve_to_their_values(template_path: Path) -> None:
    template = load_template(template_path)
    prod = _evaluator(template)
    assert [prod.condition(c) for c in ("IsProd", "KeepsLogs", "ProdWithLogs", "ProdOrLogs")] == [
        True,
        False,
        False,
        True,
    ]
    jobs = prod.resolve(template["Resources"]["Jobs"]["Properties"])
    assert jobs == {
        "QueueName": "prod-eu-west-1-jobs",
        "Tags": [{"Key": "zone", "Value": "b"}, {"Key": "zones", "Value": "a+b+c"}],
    }
    audit = prod.resolve(template["Resources"]["Audit"]["Properties"])
    assert audit == {  # DelaySeconds is AWS::NoValue: left out
        "RedrivePolicy": {"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:prod-jobs", "maxReceiveCount": 3}
    }
    outputs = prod.resolve(template["Outputs"])
    assert outputs["JobsName"] == {"Value": "prod-jobs"}
    assert outputs["TokenName"] == {"Value": "prod-token (${literal})"}
    assert prod.resolve(template["Resources"]["Token"]["Properties"]) == {
        "Name": "prod-token",
        "SecretString": "a-prod",
    }

    logging_dev = _evaluator(template, Stage="dev", Retention=7)
    assert [logging_dev.condition(c) for c in ("IsProd", "KeepsLogs", "ProdWithLogs", "ProdOrLogs")] == [
        False,
        True,
        False,
        True,
    ]
    assert logging_dev.resolve(template["Resources"]["Token"]["Properties"]["Name"]) == "dev-token"
    assert logging_dev.resolve(template["Outputs"]["JobsName"]["Value"]) == "none"
    assert _evaluator(template, Retention=7).resolve(template["Resources"]["Audit"]["Properties"])["DelaySeconds"] == 5


def test_what_cannot_be_known_is_refused_not_guessed(template_path: Path) -> None:
    template = load_template(template_path)
    bare = IntrinsicEvaluator(template, pseudo=pseudo_parameters("eu-west-1", ACCOUNT_ID), hint="here")
    with pytest.raises(UnresolvedError, match=r"Audit.RedrivePolicy.deadLetterTargetArn: Fn::GetAtt Jobs.Arn"):
        bare.resolve(template["Resources"]["Audit"]["Properties"], "Audit")
    with pytest.raises(UnresolvedError, match=r"Ref Jobs cannot be resolved here"):
        bare.resolve({"Ref": "Jobs"})
    with pytest.raises(UnresolvedError, match=r"\$\{Jobs.Arn\}"):
        bare.resolve({"Fn::Sub": "${Jobs.Arn}/x"})
    # The untaken branch of Fn::If is never evaluated.
    assert bare.resolve({"Fn::If": ["IsProd", "yes", {"Ref": "Jobs"}]}) == "yes"
    assert parse_yaml("a: !Ref B") == {"a": {"Ref": "B"}}


def test_the_local_stack_prepares_a_template_with_conditions(template_path: Path) -> None:
    def prepared(**parameters: Any) -> Any:
        values = {**parameter_defaults(load_template(template_path)), **parameters}
        return prepare(
            template_path,
            values,
            api_origin="http://127.0.0.1:1",
            stack_name="loader",
            region="us-east-1",
            account=ACCOUNT_ID,
        )

    local = prepared()
    cfn = local.cfn
    assert cfn["Conditions"]["ProdWithLogs"] == {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "KeepsLogs"}]}
    assert cfn["Resources"]["Audit"]["Condition"] == "ProdOrLogs"
    assert cfn["Outputs"]["AuditUrl"] == {"Condition": "ProdOrLogs", "Value": {"Ref": "Audit"}}
    # The secret is created before the stack: its Fn::If / Fn::Sub / Fn::Join are evaluated now.
    (secret,) = local.secrets
    assert (secret.logical_id, secret.name, secret.secret_string) == ("Token", "prod-token", "a-prod")
    (dev_secret,) = prepared(Stage="dev").secrets
    assert (dev_secret.name, dev_secret.secret_string) == ("dev-token", "a-dev")


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    server = MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_template_with_conditions_deploys_into_moto(template_path: Path, moto_endpoint: str, stage: str) -> None:
    values = {**parameter_defaults(load_template(template_path)), "Stage": stage}
    local = prepare(
        template_path,
        values,
        api_origin="http://127.0.0.1:1",
        stack_name="loader",
        region="us-east-1",
        account=ACCOUNT_ID,
    )
    aws = AwsTarget(moto_endpoint)
    deployment = deploy(local, aws, "loader")
    sqs = aws.client("sqs")
    jobs_url = deployment.physical_id("Jobs")
    assert jobs_url is not None and jobs_url.endswith(f"/{stage}-us-east-1-jobs")
    assert sqs.list_queue_tags(QueueUrl=jobs_url)["Tags"] == {"zone": "b", "zones": "a+b+c"}
    secret = aws.client("secretsmanager").describe_secret(SecretId=deployment.secrets["Token"])
    if stage == "prod":  # ProdOrLogs holds: Audit exists, without DelaySeconds (ProdWithLogs does not)
        audit_url = deployment.physical_id("Audit")
        assert audit_url is not None and deployment.outputs["AuditUrl"] == audit_url
        attributes = sqs.get_queue_attributes(QueueUrl=audit_url, AttributeNames=["All"])["Attributes"]
        assert attributes["DelaySeconds"] == "0"
        assert deployment.outputs["JobsName"] == "prod-us-east-1-jobs"
        assert deployment.outputs["TokenName"] == "prod-token (${literal})"
        assert secret["Name"] == "prod-token"
    else:  # no condition holds but the negated ones
        assert "Audit" not in deployment.resources
        assert "AuditUrl" not in deployment.outputs
        assert deployment.outputs["JobsName"] == "none"
        assert deployment.outputs["TokenName"] == "dev-token (${literal})"
        assert secret["Name"] == "dev-token"


def test_the_stacks_speed_shortens_fals_webhook_window_as_it_does_klings_times() -> None:
    # Given the template's defaults (fal's window 3600 s) and a stack at speed 5 (demo --speed 5)
    defaults = parameter_defaults(load_template(ROOT / "template.yaml"))
    scaled = scaled_durations(defaults, 5.0)
    # Then an unsettled fal create waits a fifth of the window, as Kling's times are a fifth
    assert scaled["FalWebhookWindowSeconds"] == round(float(defaults["FalWebhookWindowSeconds"]) / 5) == 720
    assert scaled["ExpectedStdSeconds"] == round(float(defaults["ExpectedStdSeconds"]) / 5)
