"""The Replicate simulator itself, over raw HTTP: its token check, per-job create counts, the list's cursor,
knobs over HTTP and the CLI."""

from __future__ import annotations

import time

import httpx
import pytest

from kling_local.cli import build_parser
from kling_local.replicate_sim import ReplicateSimConfig, ReplicateSimulator
from tests.replicate_sim.conftest import FAST, INPUT, TOKEN, V25

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def create(sim: ReplicateSimulator, webhook: str, token: str = TOKEN) -> httpx.Response:
    return httpx.post(
        f"{sim.base_url}/v1/models/{V25}/predictions",
        json={"input": INPUT, "webhook": webhook, "webhook_events_filter": ["completed"]},
        headers={"Authorization": f"Bearer {token}", "Cancel-After": "1h"},
    )


def test_a_wrong_token_is_401_and_makes_nothing(sim: ReplicateSimulator) -> None:
    assert create(sim, "https://h.example/c/j", token="nope").status_code == 401
    assert sim.stats()["creates"] == 0 and sim.stats()["unauthorized"] == 1


def test_creates_are_counted_per_job_and_the_list_is_walked_by_cursor(sim: ReplicateSimulator) -> None:
    sim.configure(page_size=2)
    for webhook in ("https://h.example/callbacks/a?token=1", "https://h.example/callbacks/a?token=2"):
        assert create(sim, webhook).status_code == 201
    assert create(sim, "https://h.example/callbacks/b?token=3").status_code == 201
    stats = sim.stats()
    assert stats["creates_by_webhook"] == {"h.example/callbacks/a": 2, "h.example/callbacks/b": 1}
    assert stats["max_creates_per_webhook"] == 2
    first = httpx.get(f"{sim.base_url}/v1/predictions", headers=AUTH).json()
    assert [p["webhook"][-1] for p in first["results"]] == ["3", "2"] and first["next"]
    second = httpx.get(first["next"], headers=AUTH).json()
    assert [p["webhook"][-1] for p in second["results"]] == ["1"] and second["next"] is None


def test_the_webhook_secret_is_served_and_knobs_change_over_http(sim: ReplicateSimulator) -> None:
    assert httpx.get(f"{sim.base_url}/v1/webhooks/default/secret", headers=AUTH).json() == {"key": sim.webhook_secret}
    answer = httpx.post(f"{sim.base_url}/_sim/config", json={"webhook_loss_rate": 0.5}).json()
    assert answer["webhook_loss_rate"] == 0.5 and "webhook_secret" not in answer and "api_token" not in answer
    refused = httpx.post(f"{sim.base_url}/_sim/config", json={"no_such_knob": 1})
    assert refused.status_code == 400 and "no_such_knob" in refused.json()["detail"]


def test_the_cli_offers_every_knob() -> None:
    args = build_parser().parse_args(["replicate-sim", "--port", "0", "--output-lifetime-s", "60", "--seed", "3"])
    assert (args.output_lifetime_s, args.seed, args.command) == (60.0, 3, "replicate-sim")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replicate-sim", "--throttle-rate", "lots"])


def test_cancel_after_is_read_in_wall_seconds_when_the_pipeline_sends_them_scaled() -> None:
    # Given a simulator at speed 1000 (a 30-60 s generation takes 30-60 ms) told that Cancel-After arrives
    # already divided by that speed (the local stack deploys the pipeline's job timeout scaled)
    config = ReplicateSimConfig(**(FAST | {"start_max_s": 0.0, "cancel_after_wall_clock": True}))
    with ReplicateSimulator(config) as sim:
        # When a prediction is created with Cancel-After: 1s
        made = httpx.post(
            f"{sim.base_url}/v1/models/{V25}/predictions",
            json={"input": INPUT},
            headers={**AUTH, "Cancel-After": "1s"},
        ).json()
        deadline = time.monotonic() + 5.0
        status = made["status"]
        while status not in ("succeeded", "failed", "canceled", "aborted") and time.monotonic() < deadline:
            time.sleep(0.02)
            status = httpx.get(f"{sim.base_url}/v1/predictions/{made['id']}", headers=AUTH).json()["status"]
    # Then its deadline is a wall second, not a thousandth of one: it succeeds, not cut by its own deadline
    assert status == "succeeded"
