"""The deploy check's state machine step (deploy_check.asl_check): the template's definitions, their
substitutions filled in, through the real asl-validator (npm), which refuses what Step Functions would."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy_check.asl_check import VALIDATOR, main, render_definitions
from tests.support.template import TEMPLATE_PATH


@pytest.fixture(scope="module")
def validator() -> Path:
    """asl-validator as `make deploy-check` installs it (npm ci from the lock file), installed here if missing."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the asl-validator npm package cannot run (make deploy-check needs node)")
    if not VALIDATOR.exists():
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: install npm to run the ASL check"
        subprocess.run(
            [npm, "ci", "--prefix", str(VALIDATOR.parents[2]), "--no-audit", "--no-fund"], check=True, timeout=300
        )
    return VALIDATOR


def write_template(folder: Path, states: dict[str, object], substitutions: str) -> Path:
    """A SAM template with a download function and a state machine of these states."""
    (folder / "machine.asl.json").write_text(json.dumps({"StartAt": "Download", "States": states}), encoding="utf-8")
    template = folder / "template.yaml"
    template.write_text(
        f"""\
Transform: AWS::Serverless-2016-10-31
Resources:
  DownloadFunction:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: src/
  JobsTable:
    Type: AWS::DynamoDB::Table
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
{substitutions}
""",
        encoding="utf-8",
    )
    return template


CALL = {"FunctionName": "${DownloadFunctionArn}", "Payload.$": "$"}
DOWNLOAD = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": CALL}
FUNCTION_ARN = "        DownloadFunctionArn: !GetAtt DownloadFunction.Arn"


def test_a_next_to_a_missing_state_is_refused_with_the_validators_message(
    validator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a definition whose only state goes on to a state that does not exist
    template = write_template(tmp_path, {"Download": {**DOWNLOAD, "Next": "RecordOutcome"}}, FUNCTION_ARN)
    # When the check runs, Then it fails with asl-validator's reason
    assert main([str(template), "--validator", str(validator)]) == 1
    error = capsys.readouterr().err
    assert "Machine: asl-validator refuses the definition" in error
    assert "MISSING_TRANSITION_TARGET" in error and "RecordOutcome" in error


def test_the_same_definition_ending_there_passes(
    validator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = write_template(tmp_path, {"Download": {**DOWNLOAD, "End": True}}, FUNCTION_ARN)
    assert main([str(template), "--validator", str(validator)]) == 0
    assert "Machine: valid ASL" in capsys.readouterr().out


def test_a_placeholder_without_a_substitution_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a definition that names the table, and substitutions that do not
    states = {
        "Download": {**DOWNLOAD, "Parameters": {**DOWNLOAD["Parameters"], "Table": "${JobsTableName}"}, "End": True}
    }  # type: ignore[dict-item]
    template = write_template(tmp_path, states, FUNCTION_ARN)
    # Then the check fails before any validator runs: Step Functions would get "${JobsTableName}" as text
    assert main([str(template), "--validator", str(tmp_path / "no-validator")]) == 1
    assert "${JobsTableName} in the definition but not in DefinitionSubstitutions" in capsys.readouterr().err


def test_the_download_workflow_is_valid_asl_with_its_substitutions_filled_in(validator: Path) -> None:
    (definition,) = render_definitions(TEMPLATE_PATH).values()
    download = json.loads(definition)["States"]["Download"]
    assert download["Parameters"]["FunctionName"].startswith("arn:aws:lambda:us-east-1:123456789012:function:")
    assert main([str(TEMPLATE_PATH), "--validator", str(validator)]) == 0
