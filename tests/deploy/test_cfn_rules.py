"""Our cfn-lint rules (deploy_check/cfn_rules) each fire on the mistake that fails or quietly breaks a
real deploy, name the fix, and stay quiet once it is made; the real template passes them all."""

from __future__ import annotations

import textwrap

from cfnlint.api import ManualArgs, lint

from tests.support.template import ROOT, TEMPLATE_PATH

RULES = ROOT / "deploy_check" / "cfn_rules"


def our_findings(template: str) -> dict[str, list[str]]:
    """Rule id -> messages of our rules (ids 9xxx) for a template given as YAML text."""
    matches = lint(template, config=ManualArgs(regions=["us-east-1"], append_rules=[str(RULES)]))
    assert not [m for m in matches if m.rule.id == "E0000"], "the test's template does not parse"
    found: dict[str, list[str]] = {}
    for match in matches:
        if match.rule.id[1:].startswith("9"):
            found.setdefault(match.rule.id, []).append(match.message)
    return found


def sam(body: str, globals_api: str = '  Api:\n    OpenApiVersion: "3.0.1"\n') -> str:
    """A SAM template: its Globals.Api (OpenApiVersion by default) and the given resources."""
    return f"""\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
{globals_api}Resources:
{textwrap.indent(textwrap.dedent(body), "  ")}"""


FUNCTION = """\
Fn:
  Type: AWS::Serverless::Function
  Properties:
    Runtime: python3.12
    Handler: app.handler
    CodeUri: src/
"""


def api_with_route_throttle(resource_path: str) -> str:
    return sam(f"""\
        Api:
          Type: AWS::Serverless::Api
          Properties:
            StageName: v1
            MethodSettings:
              - ResourcePath: "/*"
                HttpMethod: "*"
                ThrottlingRateLimit: 10
              - ResourcePath: "{resource_path}"
                HttpMethod: POST
                ThrottlingRateLimit: 5
        """)


def test_an_unencoded_method_settings_path_is_refused_with_its_encoded_spelling() -> None:
    # Given a route throttle written as the API's path
    found = our_findings(api_with_route_throttle("/callbacks/{job_id}"))
    # Then E9001 names the spelling CloudFormation wants
    (message,) = found["E9001"]
    assert '"/callbacks/{job_id}"' in message and 'Write "/~1callbacks~1{job_id}"' in message


def test_an_encoded_method_settings_path_passes() -> None:
    assert "E9001" not in our_findings(api_with_route_throttle("/~1callbacks~1{job_id}"))


def test_a_stage_resource_path_is_checked_too() -> None:
    # Given a plain CloudFormation stage (no SAM) with a half-encoded path
    template = """\
Resources:
  Stage:
    Type: AWS::ApiGateway::Stage
    Properties:
      RestApiId: abc123
      DeploymentId: def456
      MethodSettings:
        - ResourcePath: "/~1jobs/{job_id}"
          HttpMethod: GET
          ThrottlingRateLimit: 5
"""
    (message,) = our_findings(template)["E9001"]
    assert 'Write "/~1jobs~1{job_id}"' in message


def reserved(value: str) -> str:
    return sam(FUNCTION + f"    ReservedConcurrentExecutions: {value}\n")


def test_a_literal_reserved_concurrency_is_refused() -> None:
    (message,) = our_findings(reserved("1"))["E9002"]
    assert "literal 1" in message and "quota is 10" in message and "AWS::NoValue" in message


def test_reserved_concurrency_behind_a_parameter_and_condition_passes() -> None:
    template = f"""\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Reserved:
    Type: Number
    Default: 0
Conditions:
  Reserve: !Not [!Equals [!Ref Reserved, 0]]
Resources:
{textwrap.indent(FUNCTION, "  ")}      ReservedConcurrentExecutions: !If [Reserve, !Ref Reserved, !Ref AWS::NoValue]
"""
    assert "E9002" not in our_findings(template)


def alarm_topic(key: str, key_resource: str = "") -> str:
    return sam(f"""\
        {key_resource}Topic:
          Type: AWS::SNS::Topic
          Properties:
            KmsMasterKeyId: {key}
        Alarm:
          Type: AWS::CloudWatch::Alarm
          Properties:
            Namespace: AWS/SQS
            MetricName: ApproximateNumberOfMessagesVisible
            Statistic: Maximum
            Period: 300
            EvaluationPeriods: 1
            Threshold: 0
            ComparisonOperator: GreaterThanThreshold
            AlarmActions: [!Ref Topic]
        """)


def test_an_alarm_topic_on_the_aws_managed_sns_key_is_refused() -> None:
    (message,) = our_findings(alarm_topic("alias/aws/sns"))["E9003"]
    assert "the alarms Alarm never reach it" in message and "cloudwatch.amazonaws.com" in message


def test_an_alarm_topic_on_a_customer_managed_key_passes() -> None:
    key = """\
Key:
          Type: AWS::KMS::Key
          Properties:
            EnableKeyRotation: true
            KeyPolicy:
              Version: "2012-10-17"
              Statement:
                - Effect: Allow
                  Principal: {Service: cloudwatch.amazonaws.com}
                  Action: [kms:Decrypt, kms:GenerateDataKey*]
                  Resource: "*"
        """
    assert "E9003" not in our_findings(alarm_topic("!Ref Key", key))


def logged_api(extra: str = "", depends_on: str = "") -> str:
    """An API with access logs beside a conditional ApiGatewayAccount (and `extra` resources)."""
    return f"""\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  SetLoggingRole:
    Type: String
    Default: "true"
Conditions:
  SetRole: !Equals [!Ref SetLoggingRole, "true"]
Globals:
  Api:
    OpenApiVersion: "3.0.1"
Resources:
  LoggingRole:
    Type: AWS::IAM::Role
    Condition: SetRole
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {{Service: apigateway.amazonaws.com}}
            Action: sts:AssumeRole
      ManagedPolicyArns:
        - arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs
  ApiGatewayAccount:
    Type: AWS::ApiGateway::Account
    Condition: SetRole
    Properties:
      CloudWatchRoleArn: !GetAtt LoggingRole.Arn
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 30
{textwrap.indent(extra, "  ")}  Api:
    Type: AWS::Serverless::Api
{depends_on}    Properties:
      StageName: v1
      AccessLogSetting:
        DestinationArn: !GetAtt Logs.Arn
        Format: '{{"requestId":"$context.requestId"}}'
"""


def test_an_api_with_access_logs_not_ordered_after_the_account_role_is_refused() -> None:
    (message,) = our_findings(logged_api())["E9004"]
    assert "not ordered after ApiGatewayAccount" in message
    assert 'WaitConditionHandle whose Metadata holds !If [SetRole, !Ref ApiGatewayAccount, ""]' in message


def test_an_api_ordered_after_the_account_role_through_a_wait_condition_handle_passes() -> None:
    handle = """\
AccountReady:
  Type: AWS::CloudFormation::WaitConditionHandle
  Metadata:
    Account: !If [SetRole, !Ref ApiGatewayAccount, ""]
"""
    assert "E9004" not in our_findings(logged_api(handle, "    DependsOn: AccountReady\n"))


def test_a_handle_that_does_not_refer_to_the_account_orders_nothing() -> None:
    handle = """\
AccountReady:
  Type: AWS::CloudFormation::WaitConditionHandle
"""
    assert "E9004" in our_findings(logged_api(handle, "    DependsOn: AccountReady\n"))


def test_a_sam_api_without_open_api_version_is_warned_of_its_extra_stage() -> None:
    (message,) = our_findings(sam("Api:\n  Type: AWS::Serverless::Api\n  Properties:\n    StageName: v1\n", ""))[
        "W9005"
    ]
    assert '"Stage"' in message and 'Add OpenApiVersion: "3.0.1" to Globals.Api' in message


def test_a_sam_api_with_open_api_version_in_globals_passes() -> None:
    assert "W9005" not in our_findings(sam("Api:\n  Type: AWS::Serverless::Api\n  Properties:\n    StageName: v1\n"))


def test_the_implicit_api_of_function_events_is_checked_too() -> None:
    events = (
        FUNCTION
        + "    Events:\n      Get:\n        Type: Api\n        Properties:\n          Path: /x\n          Method: GET\n"
    )
    (message,) = our_findings(sam(events, "  Function:\n    Timeout: 3\n"))["W9005"]
    assert message.startswith("Fn serve on SAM's implicit API")
    assert "W9005" not in our_findings(sam(events))


def test_the_template_passes_every_deploy_rule() -> None:
    assert our_findings(TEMPLATE_PATH.read_text(encoding="utf-8")) == {}
