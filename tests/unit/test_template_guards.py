"""What template.yaml promises about who may do what: the callback route's own throttle, and the
queue policy that restricts who may send jobs (and so resume a waiting caller)."""

from __future__ import annotations

from typing import Any

from kling_local.stack.template_loader import IntrinsicEvaluator, load_template, pseudo_parameters
from tests.support.template import TEMPLATE_PATH


def evaluator(**parameters: Any) -> IntrinsicEvaluator:
    template = load_template(TEMPLATE_PATH)
    return IntrinsicEvaluator(
        template,
        parameters=parameters,
        pseudo=pseudo_parameters("us-east-1", "123456789012"),
        refs={lid: f"physical-{lid}" for lid in template["Resources"]},
        attributes={f"{lid}.Arn": f"arn:aws:test::123456789012:{lid}" for lid in template["Resources"]}
        | {
            "SubmitFunctionRole.Arn": "arn:aws:iam::123456789012:role/submit",
            "ApiFunctionRole.Arn": "arn:aws:iam::123456789012:role/api",
            "PollerFunctionRole.Arn": "arn:aws:iam::123456789012:role/poller",
            "DownloadStateMachineRole.Arn": "arn:aws:iam::123456789012:role/download-workflow",
        },
    )


def test_the_callback_route_has_its_own_throttle() -> None:
    resolved = evaluator(CallbackThrottleRate=7, CallbackThrottleBurst=9)
    api = resolved.template["Resources"]["CallbackApi"]["Properties"]
    # CloudFormation's spelling of /callbacks/{job_id}: every "/" after the first is "~1".
    (route,) = [m for m in api["MethodSettings"] if m["ResourcePath"] == "/~1callbacks~1{job_id}"]
    assert route["HttpMethod"] == "POST"
    assert str(resolved.resolve(route["ThrottlingRateLimit"])) == "7"
    assert str(resolved.resolve(route["ThrottlingBurstLimit"])) == "9"


def test_no_queue_policy_unless_senders_are_named() -> None:
    assert not evaluator().condition("RestrictQueueSenders")


def test_named_senders_and_the_pipeline_itself_are_the_only_ones_allowed_to_send_jobs() -> None:
    # The pipeline sends too: the submit function (backpressure), the API, the poller (an abandoned
    # claim, an extend chain's step), the download workflow (an extend chain's next step).
    resolved = evaluator(JobsQueueSenders="arn:aws:iam::1:role/producer,arn:aws:iam::1:role/pipeline-caller")
    assert resolved.condition("RestrictQueueSenders")
    policy = resolved.resolve(resolved.template["Resources"]["JobsQueuePolicy"]["Properties"]["PolicyDocument"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "sqs:SendMessage"
    allowed = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert allowed == [
        "arn:aws:iam::1:role/producer",
        "arn:aws:iam::1:role/pipeline-caller",
        "arn:aws:iam::123456789012:role/submit",
        "arn:aws:iam::123456789012:role/api",
        "arn:aws:iam::123456789012:role/poller",
        "arn:aws:iam::123456789012:role/download-workflow",
    ]


def test_every_alarm_notifies_the_operator_when_a_destination_is_given() -> None:
    template = load_template(TEMPLATE_PATH)
    alarms = {lid: r for lid, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    expected = {
        "DeadLettersAlarm",
        "JobsTimedOutAlarm",
        "JobsParkedAlarm",
        "FunctionErrorsAlarm",
        "FunctionThrottlesAlarm",
        "WorkflowFailedAlarm",
        "ApiServerErrorsAlarm",
        "StaleLiveJobAlarm",
        "RemainingUnitsAlarm",
    }
    assert expected <= set(alarms)
    with_email = evaluator(AlarmEmail="ops@example.com")
    with_topic = evaluator(AlarmTopicArn="arn:aws:sns:us-east-1:123456789012:ops")
    for lid in expected:
        actions = alarms[lid]["Properties"]["AlarmActions"]
        assert with_email.resolve(actions) == ["physical-AlarmTopic"], lid
        assert with_topic.resolve(actions) == ["arn:aws:sns:us-east-1:123456789012:ops"], lid
        assert evaluator().resolve(actions) is None, lid  # no destination: the alarms still show in CloudWatch


def test_the_functions_the_api_and_the_workflow_log_with_retention() -> None:
    template = load_template(TEMPLATE_PATH)
    resources = template["Resources"]
    functions = [lid for lid, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        group = resources[f"{function}Logs"]["Properties"]
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
    assert template["Globals"]["Function"]["LoggingConfig"]["LogFormat"] == "JSON"
    assert resources["DownloadStateMachine"]["Properties"]["Logging"]["IncludeExecutionData"] is False
    for api in ("CallbackApi", "JobsApi"):
        assert resources[api]["Properties"]["TracingEnabled"] is True
        assert "AccessLogSetting" in resources[api]["Properties"]


def test_the_remaining_units_alarm_exists_only_with_a_threshold_and_watches_the_pollers_figure() -> None:
    assert not evaluator().condition("WatchRemainingUnits")
    resolved = evaluator(RemainingUnitsAlarmThreshold=500)
    assert resolved.condition("WatchRemainingUnits")
    alarm = resolved.template["Resources"]["RemainingUnitsAlarm"]
    assert alarm["Condition"] == "WatchRemainingUnits"
    properties = resolved.resolve(alarm["Properties"])
    assert (properties["MetricName"], properties["ComparisonOperator"]) == ("RemainingUnits", "LessThanThreshold")
    assert str(properties["Threshold"]) == "500"
    assert properties["Dimensions"] == [{"Name": "service", "Value": "kling-pipeline"}]  # as the poller publishes it
    assert properties["Namespace"] == resolved.resolve(
        resolved.template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    )


def test_the_daily_budget_reaches_the_submit_function_and_only_the_counters_are_writable() -> None:
    resolved = evaluator(DailyBudgetUnits=25)
    submit = resolved.template["Resources"]["SubmitFunction"]["Properties"]
    assert str(resolved.resolve(submit["Environment"]["Variables"]["DAILY_BUDGET_UNITS"])) == "25"
    statements = submit["Policies"][0]["Statement"]
    on_stats = [resolved.resolve(s) for s in statements if s.get("Resource") == {"Fn::GetAtt": ["StatsTable", "Arn"]}]
    assert on_stats == [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            "Resource": on_stats[0]["Resource"],
        }
    ]


def test_the_dashboard_is_json_and_shows_only_metrics_the_pipeline_records() -> None:
    import json
    import re

    from kling_pipeline.observability import Metric

    resolved = evaluator()
    resolved.attributes["JobsDeadLetterQueue.QueueName"] = "dlq"
    body = json.loads(
        resolved.resolve(resolved.template["Resources"]["PipelineDashboard"]["Properties"]["DashboardBody"])
    )
    shown: set[str] = set()
    for widget in body["widgets"]:
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                shown.update(re.findall(r'MetricName="(\w+)"', line[0]["expression"]))
            elif line[0] == "KlingPipeline":
                shown.add(line[1])
    assert {"UnitsCharged", "RemainingUnits", "JobTransitions", "SlotsHeld", "SlotsLimit", "JobsWaiting"} <= shown
    assert shown <= {metric.value for metric in Metric}
