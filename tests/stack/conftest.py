"""Fixtures for the local stack's tests: one synthetic stack and one real-template stack per module.

moto's state is process-wide, so at most one LocalStack runs at a time (module-scoped fixtures run
one after another). Deadlines are generous: the suite runs on a loaded 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from kling_local.stack import LocalStack, StackOptions
from tests.stack.synthetic import write_project

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_project(root)
    return root


@pytest.fixture(scope="module")
def synthetic_stack(synthetic_root: Path) -> Iterator[LocalStack]:
    options = StackOptions(
        template_path=synthetic_root / "template.yaml",
        project_root=synthetic_root,
        clock_speed=60.0,  # rate(1 minute) fires about once a second
        parameter_overrides={"RecordDir": str(synthetic_root / "records")},
        stack_name="synthetic",
        kling_url="http://127.0.0.1:9",  # no Kling here: these functions never call it
        kling_access_key="unused",
        kling_secret_key="unused",
        max_concurrency=3,
    )
    with LocalStack(options) as stack:
        yield stack
