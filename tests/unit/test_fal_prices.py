"""fal charges USD per second of video: a dated, sourced table a deployment can override; a finished
video's charge is its seconds x the price, carried with its unit."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kling_pipeline.providers import Charge
from kling_pipeline.providers.fal_prices import PRICES, PriceTable, PriceTableError
from kling_pipeline.settings import FalAccess

V3_PRO = "fal-ai/kling-video/v3/pro/text-to-video"


def test_every_price_is_dated_and_sourced() -> None:
    for model_id, price in PRICES.items():
        assert price.source.checked and price.source.where, model_id
        assert 0 < price.usd_per_s < 1


def test_a_finished_videos_charge_is_seconds_times_the_price_in_usd() -> None:
    table = PriceTable({})
    # Given the seed's example: v3 pro, 10 s, without and with sound
    charge = table.charge(V3_PRO, 10, audio=False)
    with_sound = table.charge(V3_PRO, 10, audio=True)
    # Then it is 10 x the per-second price, in USD, with how it was computed
    assert charge is not None and with_sound is not None
    assert (charge.amount, charge.unit) == (pytest.approx(1.12), "USD")
    assert with_sound.amount == pytest.approx(1.68)
    assert "10 s x $0.112/s" in charge.basis and "2026-12-07" in charge.basis


def test_a_deployment_overrides_a_price_with_one_number_or_both() -> None:
    # Given FalPrices overriding v3 pro with one number, and v2.6 pro with both prices
    overrides = {V3_PRO: 0.2, "fal-ai/kling-video/v2.6/pro/text-to-video": {"usd_per_s": 0.05, "usd_per_s_audio": 0.1}}
    table = PriceTable.from_setting(json.dumps(overrides))
    # Then the override wins, sound included when one number is given
    assert table.charge(V3_PRO, 5, audio=True) == Charge(1.0, "USD", table.charge(V3_PRO, 5, audio=True).basis)  # type: ignore[union-attr]
    assert table.charge("fal-ai/kling-video/v2.6/pro/text-to-video", 10, audio=True).amount == pytest.approx(1.0)  # type: ignore[union-attr]
    assert "FalPrices" in table.charge(V3_PRO, 5, audio=False).basis  # type: ignore[union-attr]


def test_an_endpoint_without_a_price_has_no_charge_rather_than_a_guess() -> None:
    assert PriceTable({}).charge("fal-ai/kling-video/o3/pro/text-to-video", 5, audio=False) is None


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("[1]", "must be an object"),
        ("{oops", "not JSON"),
        ('{"x": -1}', "FalPrices['x']"),
        ('{"x": {"usd_per_s": "cheap"}}', "FalPrices['x']"),
        ('{"x": true}', "FalPrices['x']"),
    ],
)
def test_an_unreadable_override_is_refused_naming_the_entry(setting: str, names: str) -> None:
    with pytest.raises(PriceTableError, match=names.replace("[", r"\[").replace("]", r"\]")):
        PriceTable.from_setting(setting)


def test_no_override_is_the_table() -> None:
    assert PriceTable.from_setting("").price(V3_PRO) == PRICES[V3_PRO]


def test_the_deployments_price_setting_is_checked_when_the_settings_are_read() -> None:
    # Given fal's settings with a price that is not a number
    fields = {
        "fal_queue_base_url": "https://queue.fal.run",
        "fal_credentials_secret": "fal",
        "fal_timeout_s": 10,
        "fal_jwks_url": "https://rest.alpha.fal.ai/.well-known/jwks.json",
        "fal_result_retention_s": 2592000,
        "fal_webhook_window_s": 3600,
    }
    # Then reading them fails naming the entry; a readable one passes
    with pytest.raises(ValidationError, match=r"FalPrices\['x'\]"):
        FalAccess.model_validate(fields | {"fal_prices": '{"x": "cheap"}'})
    assert FalAccess.model_validate(fields | {"fal_prices": '{"x": 0.1}'}).fal_prices == '{"x": 0.1}'
