"""Fixtures for the AceData door's tests over HTTP: an AceData simulator on free ports (fast), our client
pointed at it, and a callback receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kling_local.acedata_sim import AceDataSimConfig, AceDataSimulator
from kling_pipeline.adapters.acedata_client import AceDataClient
from tests.fal_sim.conftest import Receiver

TOKEN = "acedata-test-token"
MODEL = "kling-v2-6"
ARGUMENTS: dict[str, Any] = {
    "action": "text2video",
    "model": MODEL,
    "mode": "pro",
    "prompt": "a red fox running through snow",
    "duration": 5,
}
# A 30-60 s generation takes 30-60 ms.
FAST: dict[str, Any] = {
    "api_token": TOKEN,
    "speed": 1000.0,
    "generation_min_s": 30.0,
    "generation_max_s": 60.0,
    "seed": 7,
}


@pytest.fixture
def sim() -> Iterator[AceDataSimulator]:
    with AceDataSimulator(AceDataSimConfig(**FAST)) as simulator:
        yield simulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def client(sim: AceDataSimulator) -> Iterator[AceDataClient]:
    acedata = AceDataClient(TOKEN, base_url=sim.base_url, timeout_s=5.0, batch_size=3)
    yield acedata
    acedata.close()
