"""What fal charges for a Kling video: USD per second of video, by endpoint, with and without sound.

Prices move (providers.md: "change often"), so each figure carries the date it was checked and where
it comes from, and a deployment overrides any of them without a release (`FalPrices` setting: JSON,
`{"<fal model id>": 0.112}` for one price, or `{"<fal model id>": {"usd_per_s": 0.112,
"usd_per_s_audio": 0.168}}`). The charge of a finished video is its seconds x the price, in USD, never
added to Kling's units (providers.Charge carries the unit).

Figures not in the contract notes are marked UNCONFIRMED: they are the best public figure known when
written, for the budget's estimate; check fal.ai/models/<model id> and override them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from kling_pipeline.capabilities import Source
from kling_pipeline.providers import Charge

NOTES = Source(
    "2026-12-07", "docs/fal-contract.md (Kling's models on fal: v3 pro about $0.11-0.17/s, v2.5-turbo std $0.042/s)"
)
MODEL_PAGE = Source("2026-12-07", "fal.ai model page pricing as last seen (UNCONFIRMED: override with FalPrices)")
OVERRIDE = Source("", "this deployment's FalPrices setting")


@dataclass(frozen=True)
class SecondPrice:
    """USD per second of video on one fal endpoint; `usd_per_s_audio` when sound changes the price."""

    usd_per_s: float
    source: Source
    usd_per_s_audio: float | None = None

    def per_second(self, audio: bool) -> float:
        return self.usd_per_s_audio if audio and self.usd_per_s_audio is not None else self.usd_per_s


_KV = "fal-ai/kling-video"
PRICES: dict[str, SecondPrice] = {
    f"{_KV}/v2.1/standard/image-to-video": SecondPrice(0.05, MODEL_PAGE),
    f"{_KV}/v2.1/pro/image-to-video": SecondPrice(0.09, MODEL_PAGE),
    f"{_KV}/v2.5-turbo/standard/image-to-video": SecondPrice(0.042, NOTES),
    f"{_KV}/v2.5-turbo/pro/text-to-video": SecondPrice(0.07, MODEL_PAGE),
    f"{_KV}/v2.5-turbo/pro/image-to-video": SecondPrice(0.07, MODEL_PAGE),
    f"{_KV}/v2.6/pro/text-to-video": SecondPrice(0.07, MODEL_PAGE, usd_per_s_audio=0.14),
    f"{_KV}/v2.6/pro/image-to-video": SecondPrice(0.07, MODEL_PAGE, usd_per_s_audio=0.14),
    f"{_KV}/v3/standard/text-to-video": SecondPrice(0.084, MODEL_PAGE, usd_per_s_audio=0.126),
    f"{_KV}/v3/standard/image-to-video": SecondPrice(0.084, MODEL_PAGE, usd_per_s_audio=0.126),
    f"{_KV}/v3/pro/text-to-video": SecondPrice(0.112, NOTES, usd_per_s_audio=0.168),
    f"{_KV}/v3/pro/image-to-video": SecondPrice(0.112, NOTES, usd_per_s_audio=0.168),
}


class PriceTableError(ValueError):
    """The deployment's FalPrices setting cannot be read; the message names the entry and the fix."""


def parse_overrides(text: str, *, setting: str = "FalPrices") -> dict[str, SecondPrice]:
    """The FalPrices setting (JSON; "" or "{}" for none) as prices; PriceTableError naming the entry. Other
    per-second doors (providers/replicate_prices.py) read their own setting, named by `setting`, the same way."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceTableError(f"{setting} is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, Mapping):
        raise PriceTableError(f'{setting} must be an object: {{"<model id>": <USD per second>, ...}}')
    source = OVERRIDE if setting == "FalPrices" else Source("", f"this deployment's {setting} setting")
    prices: dict[str, SecondPrice] = {}
    for model_id, value in data.items():
        if isinstance(value, Mapping):
            plain, audio = value.get("usd_per_s"), value.get("usd_per_s_audio")
        else:
            plain, audio = value, None
        if not _price(plain) or (audio is not None and not _price(audio)):
            raise PriceTableError(
                f"{setting}[{model_id!r}]: a price is a number of USD per second, at least 0 "
                '(e.g. 0.112, or {"usd_per_s": 0.112, "usd_per_s_audio": 0.168})'
            )
        assert isinstance(plain, int | float)
        prices[str(model_id)] = SecondPrice(float(plain), source, None if audio is None else float(audio))
    return prices


def _price(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 100


@dataclass(frozen=True)
class PriceTable:
    """The dated table (`base`: fal's unless given) with this deployment's overrides on top."""

    overrides: Mapping[str, SecondPrice]
    base: Mapping[str, SecondPrice] = field(default_factory=lambda: PRICES)

    @classmethod
    def from_setting(cls, text: str) -> PriceTable:
        return cls(parse_overrides(text))

    def price(self, model_id: str) -> SecondPrice | None:
        override = self.overrides.get(model_id)
        base = self.base.get(model_id)
        if override is not None and override.usd_per_s_audio is None and base is not None:
            # One number overrides both prices: sound is then charged the same (the operator's word).
            return replace(override, usd_per_s_audio=None)
        return override or base

    def charge(self, model_id: str, seconds: float, *, audio: bool) -> Charge | None:
        """What a finished video of `seconds` costs on `model_id`; None when no price is known."""
        price = self.price(model_id)
        if price is None:
            return None
        rate = price.per_second(audio)
        when = f", {price.source.checked}" if price.source.checked else ""
        basis = f"{seconds:g} s x ${rate:g}/s{' with sound' if audio else ''} ({price.source.where}{when})"
        return Charge(round(seconds * rate, 6), "USD", basis)
