"""The fal simulator itself, over raw HTTP: its key check, JWKS, knobs, counters and CLI."""

from __future__ import annotations

import httpx
import pytest

from kling_local.cli import build_parser
from kling_local.fal_sim import FalSimulator
from tests.fal_sim.conftest import KEY, V3_PRO_T2V, wait_until

V26 = "fal-ai/kling-video/v2.6/pro/text-to-video"


def post(sim: FalSimulator, model_id: str, body: dict[str, object], webhook: str, key: str = KEY) -> httpx.Response:
    return httpx.post(
        f"{sim.base_url}/{model_id}",
        params={"fal_webhook": webhook},
        json=body,
        headers={"Authorization": f"Key {key}"},
    )


def test_a_wrong_key_is_401_and_makes_nothing(sim: FalSimulator) -> None:
    assert post(sim, V3_PRO_T2V, {"prompt": "x"}, "https://h.example/c/j", key="nope").status_code == 401
    assert sim.stats()["creates"] == 0 and sim.stats()["unauthorized"] == 1


def test_the_jwks_is_public_and_holds_an_ed25519_key(sim: FalSimulator) -> None:
    keys = httpx.get(sim.jwks_url).json()["keys"]
    assert [(k["kty"], k["crv"]) for k in keys] == [("OKP", "Ed25519")]
    sim.rotate_keys(keep_previous=True)
    assert len(httpx.get(sim.jwks_url).json()["keys"]) == 2


def test_creates_are_counted_per_job_by_the_webhook_urls_path(sim: FalSimulator) -> None:
    # Given two creates for job a (tokens differ) and one for job b
    for webhook in (
        "https://h.example/callbacks/a?token=1",
        "https://h.example/callbacks/a?token=2",
        "https://h.example/callbacks/b?token=3",
    ):
        assert post(sim, V3_PRO_T2V, {"prompt": "x", "duration": "5"}, webhook).status_code == 200
    # Then the simulator counts them per job
    stats = sim.stats()
    assert stats["creates_by_webhook"] == {"h.example/callbacks/a": 2, "h.example/callbacks/b": 1}
    assert stats["max_creates_per_webhook"] == 2


def test_input_fals_endpoint_refuses_is_accepted_then_completed_with_a_422(sim: FalSimulator) -> None:
    # Given v2.6 asked for 7 s (it takes 5 or 10): fal queues it anyway
    answer = post(sim, V26, {"prompt": "x", "duration": "7"}, "https://h.example/c/j").json()
    headers = {"Authorization": f"Key {KEY}"}
    wait_until(lambda: httpx.get(answer["status_url"], headers=headers).json()["status"] == "COMPLETED")
    # Then its result is the 422, naming the field
    result = httpx.get(answer["response_url"], headers=headers)
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "duration"]


def test_knobs_change_over_http_and_unknown_ones_are_refused(sim: FalSimulator) -> None:
    assert httpx.post(f"{sim.base_url}/_sim/config", json={"webhook_loss_rate": 0.5}).json()["webhook_loss_rate"] == 0.5
    refused = httpx.post(f"{sim.base_url}/_sim/config", json={"no_such_knob": 1})
    assert refused.status_code == 400 and "no_such_knob" in refused.json()["detail"]
    assert "api_key" not in httpx.post(f"{sim.base_url}/_sim/config", json={}).json()


def test_the_cli_offers_every_knob() -> None:
    args = build_parser().parse_args(["fal-sim", "--port", "0", "--result-422-rate", "0.2", "--seed", "3"])
    assert (args.result_422_rate, args.seed, args.command) == (0.2, 3, "fal-sim")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fal-sim", "--result-422-rate", "lots"])
