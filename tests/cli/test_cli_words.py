"""What the CLI says to bad input, through its entry point as a user runs it: what is valid instead of
a pattern, no internal provenance, a "did you mean" for a near-miss model, the flag a stack needs."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from kling_local.cli import main

NO_PIPELINE = ["--queue-url", "https://sqs.us-east-1.amazonaws.com/123456789012/jobs", "--table", "jobs"]


def said(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps stderr at the terminal's width


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--duration", "banana"],
            "duration: 'banana' is not a duration; seconds: 5 or 10; 3 to 15 for kling-v3 and the omni models",
        ),
        (["--job-id", "order 1042"], "job_id: 'order 1042' is not a job id; use 1 to 64 letters, digits, '-' or '_'"),
    ],
)
def test_a_value_of_the_wrong_form_is_answered_with_what_is_valid(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = said(capsys, "submit", "--prompt", "a fox", *argv, *NO_PIPELINE)
    assert code == 2 and out == ""
    assert says in err
    assert "pattern" not in err and "^[" not in err


def test_a_refusal_names_the_rule_but_not_where_it_was_read(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = said(capsys, "submit", "--prompt", "a fox", "--model", "kling-v2-6", "--duration", "8", *NO_PIPELINE)
    assert code == 2
    assert "duration: kling-v2-6 takes 5 or 10 seconds, not 8 (rule durations)" in err
    assert "kling-api.md" not in err and "kling-contract.md" not in err and "checked 20" not in err


@mock_aws
def test_a_near_miss_model_is_sent_with_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a queue (moto)
    queue_url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="jobs")["QueueUrl"]
    # When a job names kling-v2.6 (Kling's name is kling-v2-6)
    code, out, err = said(
        capsys, "submit", "--prompt", "a fox", "--model", "kling-v2.6", "--queue-url", queue_url, "--table", "jobs"
    )
    # Then it is sent (Kling may know a model the table does not), with the likely model named
    assert code == 0 and out.strip()
    assert (
        "warning: command line job 1: model kling-v2.6 is not in the capability table "
        "(did you mean kling-2.6 or kling-v2-6?)" in err
    )


def test_a_stack_without_a_region_says_which_flag_gives_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Given no region anywhere (no environment, no profile)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    # When a deployed stack is named, Then the answer names --region
    code, _, err = said(capsys, "status", "some-job", "--stack-name", "kling-pipeline-dev")
    assert code == 2
    assert err == (
        "error: no AWS region for stack kling-pipeline-dev: give --region REGION (or set AWS_REGION, or a region "
        "in your AWS profile)"
    )
