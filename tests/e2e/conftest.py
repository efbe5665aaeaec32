"""One local stack for the whole e2e module: template.yaml in moto, the functions, the simulator."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_local.sim import SimConfig
from kling_local.stack import LocalStack, StackOptions
from tests.support.template import ROOT

SIM_DEFAULTS = {"concurrency_limit": 10, "generation_min_s": 30.0, "generation_max_s": 90.0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root: Path = tmp_path_factory.mktemp("project")
    config = SimConfig(
        access_key=f"e2e-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        speed=120.0,
        video_size_bytes=200_000,
        seed=5,
        **SIM_DEFAULTS,
    )
    options = StackOptions(template_path=ROOT / "template.yaml", project_root=root, sim_config=config)
    with LocalStack(options) as running:
        yield running


@pytest.fixture
def sim_defaults(stack: LocalStack) -> Iterator[None]:
    """Tests that turn knobs get the simulator back as they found it."""
    yield
    assert stack.simulator is not None
    stack.simulator.configure(**SIM_DEFAULTS)
