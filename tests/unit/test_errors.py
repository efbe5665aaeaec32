"""The pipeline's errors have one root, and the names the state machine's Retry/Catch match exist."""

from __future__ import annotations

import inspect
import json

from kling_pipeline import errors
from tests.support.template import ROOT

# Error names that AWS raises or Step Functions defines, not the pipeline.
AWS_PREFIXES = ("States.", "Lambda.", "DynamoDB.", "Sfn.", "SFN.", "EventBridge.", "S3.")


def asl_error_names() -> set[str]:
    definition = json.loads((ROOT / "statemachine" / "download.asl.json").read_text(encoding="utf-8"))
    names: set[str] = set()
    for state in definition["States"].values():
        for rule in state.get("Retry", []) + state.get("Catch", []):
            names.update(rule["ErrorEquals"])
    return names


def test_every_error_derives_from_pipeline_error() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 5
    assert all(issubclass(c, errors.PipelineError) for c in classes)


def test_the_state_machine_retries_the_download_error_the_code_raises() -> None:
    # The Retry keys on the Lambda error's type name: a rename of the class would stop retries silently.
    assert errors.TransientDownloadError.__name__ == "TransientDownloadError"
    assert "TransientDownloadError" in asl_error_names()


def test_every_pipeline_error_name_in_the_state_machine_is_a_class_of_ours() -> None:
    ours = {name for name in asl_error_names() if not name.startswith(AWS_PREFIXES)}
    assert ours, "the state machine should retry at least one of the pipeline's own errors"
    for name in ours:
        assert issubclass(getattr(errors, name), errors.PipelineError), name


def retries_of(state: str) -> set[str]:
    definition = json.loads((ROOT / "statemachine" / "download.asl.json").read_text(encoding="utf-8"))
    return {name for rule in definition["States"][state].get("Retry", []) for name in rule["ErrorEquals"]}


def test_the_workflow_retries_every_transient_class_by_the_names_step_functions_raises() -> None:
    # Lambda's own faults, including timeouts and out-of-memory (Lambda.Unknown).
    assert {"Lambda.ServiceException", "Lambda.Unknown", "Lambda.ClientExecutionTimeoutException"} <= retries_of(
        "Download"
    )
    # DynamoDB throttling and 5xx on the one write.
    assert {"DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException"} <= retries_of(
        "RecordOutcome"
    )
    # SDK integrations raise `Sfn.<Error>` (PascalCase service name), never `SFN.<Error>`.
    assert "Sfn.SfnException" in retries_of("ResumeCallerWithVideo")
    assert not any(name.startswith("SFN.") for name in asl_error_names())
