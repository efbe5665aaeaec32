"""The AceData simulator itself, over raw HTTP: its token check and error envelope, per-job create counts,
knobs over HTTP and the CLI."""

from __future__ import annotations

import httpx
import pytest

from kling_local.acedata_sim import AceDataSimulator
from kling_local.cli import build_parser
from tests.acedata_sim.conftest import ARGUMENTS, TOKEN


def create(sim: AceDataSimulator, callback: str, token: str = TOKEN) -> httpx.Response:
    return httpx.post(
        f"{sim.base_url}/kling/videos",
        json=ARGUMENTS | {"callback_url": callback},
        headers={"authorization": f"Bearer {token}"},
    )


def test_a_wrong_token_is_an_invalid_token_envelope_and_makes_nothing(sim: AceDataSimulator) -> None:
    answer = create(sim, "https://h.example/c/j", token="nope")
    assert answer.status_code == 401
    assert answer.json()["success"] is False and answer.json()["error"]["code"] == "invalid_token"
    assert sim.stats()["creates"] == 0


def test_creates_are_counted_per_job_by_the_callback_urls_path(sim: AceDataSimulator) -> None:
    for callback in (
        "https://h.example/callbacks/a?t=1",
        "https://h.example/callbacks/a?t=2",
        "https://h.example/callbacks/b",
    ):
        assert create(sim, callback).json()["task_id"]
    stats = sim.stats()
    assert stats["creates_by_callback"] == {"h.example/callbacks/a": 2, "h.example/callbacks/b": 1}
    assert stats["max_creates_per_callback"] == 2 and stats["sync_creates"] == 0


def test_knobs_change_over_http(sim: AceDataSimulator) -> None:
    answer = httpx.post(f"{sim.base_url}/_sim/config", json={"batch_missing_rate": 0.3}).json()
    assert answer["batch_missing_rate"] == 0.3 and "api_token" not in answer
    assert httpx.post(f"{sim.base_url}/_sim/config", json={"account_error": "nope"}).status_code == 400


def test_the_cli_offers_every_knob() -> None:
    args = build_parser().parse_args(["acedata-sim", "--port", "0", "--early-callback-rate", "0.2"])
    assert (args.early_callback_rate, args.command) == (0.2, "acedata-sim")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["acedata-sim", "--batch-missing-rate", "lots"])
