"""Fixtures for the Replicate door's tests over HTTP: a Replicate simulator on free ports (fast), our client
pointed at it with a verifier holding the account's webhook secret, and a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kling_local.replicate_sim import ReplicateSimConfig, ReplicateSimulator
from kling_pipeline.adapters.replicate_client import ReplicateClient
from kling_pipeline.adapters.replicate_signatures import ReplicateWebhookVerifier
from tests.fal_sim.conftest import Receiver

TOKEN = "r8_test_token"
V25 = "kwaivgi/kling-v2.5-turbo-pro"
INPUT = {"prompt": "a red fox running through snow", "duration": 10, "aspect_ratio": "16:9"}
# A 30-60 s generation takes 30-60 ms; the cold boot 0-10 ms.
FAST: dict[str, Any] = {
    "api_token": TOKEN,
    "speed": 1000.0,
    "start_min_s": 0.0,
    "start_max_s": 10.0,
    "generation_min_s": 30.0,
    "generation_max_s": 60.0,
    "seed": 7,
}


@pytest.fixture
def sim() -> Iterator[ReplicateSimulator]:
    with ReplicateSimulator(ReplicateSimConfig(**FAST)) as simulator:
        yield simulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def client(sim: ReplicateSimulator) -> Iterator[ReplicateClient]:
    verifier = ReplicateWebhookVerifier([sim.webhook_secret])
    replicate = ReplicateClient(TOKEN, base_url=sim.base_url, timeout_s=5.0, verify=verifier)
    yield replicate
    replicate.close()
