"""Each handler's init, run as Lambda runs it (a fresh interpreter), ends with the garbage collector on
and what init made frozen (kling_pipeline.cold_start): a handler that turned the collector off and
never called init_done() would run every invocation without collecting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.template import ROOT, placeholder_resolver

LAYER = ROOT / "layers" / "common" / "python"


def function_code_dirs() -> dict[str, Path]:
    resources = placeholder_resolver().template["Resources"]
    return {
        logical_id: ROOT / Path(resource["Properties"]["CodeUri"])
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


@pytest.mark.parametrize("function", sorted(function_code_dirs()))
def test_each_handler_ends_its_init_with_the_collector_on_and_init_frozen(function: str) -> None:
    # Given the function's environment as template.yaml gives it, tracing off as in the local stack
    code_dir = function_code_dirs()[function]
    environment = placeholder_resolver().function_environment(function) | {
        "PATH": os.environ.get("PATH", os.defpath),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    # When its handler module is imported in a fresh interpreter, as Lambda's init imports it
    probe = (
        f"import sys; sys.path[:0] = [{str(code_dir)!r}, {str(LAYER)!r}]; import app, gc; "
        "print(gc.isenabled(), gc.get_freeze_count())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, cwd=code_dir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    enabled, frozen = done.stdout.split()
    # Then the collector is on again, and what init made is out of its reach
    assert enabled == "True", f"{function}'s app.py left the garbage collector off: it must call init_done() last"
    assert int(frozen) > 0, f"{function}'s app.py did not freeze what its init made (init_done())"


# What a function needs only on a rare path stays out of its cold start: a module listed here is imported
# when that path first runs (docs/architecture.md, "Cold start").
RARE_PATH_MODULES = {
    # a request with URL or S3 input images (submit.resolve_images)
    "SubmitFunction": ["kling_pipeline.adapters.input_images", "kling_pipeline.adapters.video_transfer"],
    # a DOWNLOADING job's repair (poll.settle_download)
    "PollerFunction": ["kling_pipeline.adapters.video_transfer", "kling_pipeline.download"],
}


@pytest.mark.parametrize("function", sorted(RARE_PATH_MODULES))
def test_a_handlers_init_leaves_out_what_only_its_rare_paths_use(function: str) -> None:
    # Given the function's environment as template.yaml gives it, tracing off as in the local stack
    code_dir = function_code_dirs()[function]
    environment = placeholder_resolver().function_environment(function) | {
        "PATH": os.environ.get("PATH", os.defpath),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    # When its handler module is imported in a fresh interpreter
    probe = (
        f"import sys; sys.path[:0] = [{str(code_dir)!r}, {str(LAYER)!r}]; import app; "
        f"print(*[name for name in {RARE_PATH_MODULES[function]!r} if name in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, cwd=code_dir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Then none of its rare paths' modules was imported
    assert done.stdout.split() == [], f"{function}'s cold start imports {done.stdout.split()}"
