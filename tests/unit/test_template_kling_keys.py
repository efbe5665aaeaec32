"""template.yaml before the Kling keys are stored: one alarm on the poller's KlingKeysMissing count, and
a scheduled poller run is never retried (neither EventBridge's delivery nor Lambda's asynchronous
retries): the next run, a schedule period later, looks at the same jobs."""

from __future__ import annotations

from typing import Any

from kling_local.stack.sam_translation import localise_uris, sam_transform
from kling_pipeline.observability import Metric
from tests.support.template import ROOT, load_template


def translated() -> dict[str, Any]:
    """template.yaml as the SAM transform makes it (code locations as the local stack marks them)."""
    template = load_template()
    localise_uris(template, ROOT)
    return sam_transform(template, {}, "us-east-1")


def test_missing_kling_keys_raise_one_alarm_on_the_metric_the_functions_publish() -> None:
    template = load_template()
    alarm = template["Resources"]["KlingKeysMissingAlarm"]["Properties"]
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, Metric.KLING_KEYS_MISSING.value)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == ("Sum", "GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "notBreaching"
    assert "put-secret-value" in alarm["AlarmDescription"]


def test_a_scheduled_poller_run_is_never_retried() -> None:
    resources = translated()["Resources"]
    poller = resources["PollerFunction"]
    # The schedule's target: a run that could not be delivered is not delivered late
    (rule,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule"
        and any(t["Arn"] == {"Fn::GetAtt": ["PollerFunction", "Arn"]} for t in r["Properties"]["Targets"])
    ]
    (target,) = rule["Properties"]["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # The function's asynchronous invocations: a failed run is not run again (Lambda's default is twice)
    (invoke_config,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": "PollerFunction"}
    ]
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert poller["Type"] == "AWS::Lambda::Function"
