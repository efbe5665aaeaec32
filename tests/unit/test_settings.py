"""Each function's settings model against the environment template.yaml gives it.

A template change that drops or renames a variable fails here, not at a production cold start; a
variable the template sets that no model reads fails too, so the template holds no stale settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kling_pipeline import settings as settings_module
from kling_pipeline.errors import ConfigError
from kling_pipeline.settings import DownloadSettings, FunctionSettings, SubmitSettings
from tests.support.template import ROOT, load_template, placeholder_resolver

# Read by Powertools itself, not by the pipeline's settings.
POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


def functions_and_models() -> list[tuple[str, type[FunctionSettings]]]:
    """Every function of the template with the settings model its handler validates at cold start."""
    found = []
    for logical_id, resource in load_template()["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        handler = Path(ROOT, resource["Properties"]["CodeUri"], "app.py").read_text(encoding="utf-8")
        match = re.search(r"(\w+Settings)\.from_environment\(\)", handler)
        assert match, f"{logical_id}'s handler validates no settings model at cold start"
        found.append((logical_id, getattr(settings_module, match.group(1))))
    return found


@pytest.mark.parametrize(("function", "model"), functions_and_models())
def test_the_template_gives_each_function_every_setting_its_model_requires(
    function: str, model: type[FunctionSettings]
) -> None:
    environment = placeholder_resolver().function_environment(function)
    model.from_environment(environment)  # raises ConfigError naming any missing or malformed variable
    unread = set(environment) - set(model.variable_names()) - POWERTOOLS_VARIABLES
    assert not unread, f"template.yaml sets {sorted(unread)} for {function}, which {model.__name__} does not read"


def test_every_function_is_checked() -> None:
    assert {name for name, _ in functions_and_models()} >= {"SubmitFunction", "CallbackFunction", "DownloadFunction"}


def test_a_missing_variable_fails_with_its_name() -> None:
    environment = placeholder_resolver().function_environment("SubmitFunction")
    del environment["JOBS_QUEUE_URL"]
    with pytest.raises(ConfigError, match="JOBS_QUEUE_URL is not set"):
        SubmitSettings.from_environment(environment)


def test_a_malformed_variable_fails_with_its_name_and_the_rule() -> None:
    environment = placeholder_resolver().function_environment("DownloadFunction") | {
        "MAX_VIDEO_BYTES": "12",
        "PIPELINE_MODE": "x",
    }
    with pytest.raises(ConfigError) as info:
        DownloadSettings.from_environment(environment)
    assert "MAX_VIDEO_BYTES" in str(info.value) and "1024" in str(info.value)
    assert "PIPELINE_MODE" in str(info.value)


def test_models_have_no_defaults_to_drift_from_the_template() -> None:
    for _, model in functions_and_models():
        defaulted = [name for name, field in model.model_fields.items() if not field.is_required()]
        assert not defaulted, f"{model.__name__} has defaults for {defaulted}; template.yaml is where defaults live"


def test_the_poll_schedule_is_the_same_for_every_function_that_reads_it() -> None:
    # POLL_SCHEDULE is written out once per function (CloudFormation refuses YAML aliases): no copy drifts
    resolver = placeholder_resolver()
    schedules = {
        function: environment["POLL_SCHEDULE"]
        for function, _ in functions_and_models()
        if "POLL_SCHEDULE" in (environment := resolver.function_environment(function))
    }
    assert len(schedules) >= 2
    assert len(set(schedules.values())) == 1, schedules
