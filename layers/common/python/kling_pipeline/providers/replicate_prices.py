"""What Replicate charges for a Kling video: USD per second of output video, by model.

The same shape as fal's table (providers/fal_prices.py): each figure carries the date it was checked and
where it comes from, and a deployment overrides any of them without a release (`ReplicatePrices`
setting: JSON, `{"kwaivgi/kling-v2.1": 0.05}`). Replicate's own docs say only "USD per second of video"
(docs/replicate-contract.md, "Billing"); the figures are the model pages' as last seen, UNCONFIRMED:
check replicate.com/kwaivgi/<name> and override them. kling-v2.1's price depends on its `mode` input:
the `/pro` key (`kwaivgi/kling-v2.1/pro`) prices the pro tier.
"""

from __future__ import annotations

from collections.abc import Mapping

from kling_pipeline.capabilities import Source
from kling_pipeline.providers import Charge
from kling_pipeline.providers.fal_prices import PriceTable, SecondPrice, parse_overrides

SETTING = "ReplicatePrices"
MODEL_PAGE = Source(
    "2026-12-07", "replicate.com/kwaivgi model pages as last seen (UNCONFIRMED: override with ReplicatePrices)"
)

PRICES: dict[str, SecondPrice] = {
    "kwaivgi/kling-v1.6-standard": SecondPrice(0.05, MODEL_PAGE),
    "kwaivgi/kling-v1.6-pro": SecondPrice(0.095, MODEL_PAGE),
    "kwaivgi/kling-v2.0": SecondPrice(0.28, MODEL_PAGE),
    "kwaivgi/kling-v2.1": SecondPrice(0.05, MODEL_PAGE),
    "kwaivgi/kling-v2.1/pro": SecondPrice(0.09, MODEL_PAGE),
    "kwaivgi/kling-v2.1-master": SecondPrice(0.28, MODEL_PAGE),
    "kwaivgi/kling-v2.5-turbo-pro": SecondPrice(0.07, MODEL_PAGE),
}


def price_key(endpoint: str, arguments: Mapping[str, object]) -> str:
    """The table's key for a create: the model, and `/pro` when its `mode` input is pro."""
    return f"{endpoint}/pro" if arguments.get("mode") == "pro" else endpoint


def table(setting: str = "") -> PriceTable:
    """Replicate's dated table with the deployment's ReplicatePrices overrides on top (PriceTableError,
    a ValueError naming the entry, for a setting that cannot be read)."""
    return PriceTable(parse_overrides(setting, setting=SETTING), base=PRICES)


def charge(prices: PriceTable, endpoint: str, arguments: Mapping[str, object], seconds: float) -> Charge | None:
    """A finished video's seconds x its model's price, in USD; None when no price is known."""
    return prices.charge(price_key(endpoint, arguments), seconds, audio=False)
