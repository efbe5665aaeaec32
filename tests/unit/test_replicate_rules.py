"""Replicate's door as rules: which of our models Replicate serves under which kwaivgi name, the input its
models take, what is refused (naming the field and the fix) before anything is sent, its statuses in our
words, the one-hour output, and its dated, overridable USD-per-second prices."""

from __future__ import annotations

import json

import pytest

from kling_local.sim import png_base64
from kling_pipeline.errors import ProviderCapabilityError
from kling_pipeline.providers import OUTPUT_EXPIRED
from kling_pipeline.providers.fal_prices import PriceTableError
from kling_pipeline.providers.replicate import MODELS, OUTPUT_LIFETIME_S, build_input, model_for, task_of
from kling_pipeline.providers.replicate_prices import PRICES, price_key, table
from kling_pipeline.requests import JobRequest

PNG = png_base64(400, 400)
DONE = "2026-12-07T10:00:00Z"
DONE_EPOCH = 1796637600.0


def request(**fields: object) -> JobRequest:
    return JobRequest.model_validate({"prompt": "a red fox in snow", **fields})


def refusal(**fields: object) -> str:
    with pytest.raises(ProviderCapabilityError) as caught:
        build_input(request(**fields), default_model="kling-v2-5-turbo")
    return str(caught.value)


@pytest.mark.parametrize(
    ("model", "kind", "mode", "endpoint"),
    [
        ("kling-v1-6", "text2video", "std", "kwaivgi/kling-v1.6-standard"),
        ("kling-v1-6", "image2video", "pro", "kwaivgi/kling-v1.6-pro"),
        ("kling-v2-master", "text2video", "std", "kwaivgi/kling-v2.0"),
        ("kling-v2-1", "image2video", "std", "kwaivgi/kling-v2.1"),
        ("kling-v2-1", "image2video", "pro", "kwaivgi/kling-v2.1"),
        ("kling-v2-1-master", "text2video", "pro", "kwaivgi/kling-v2.1-master"),
        ("kling-v2-5-turbo", "text2video", "pro", "kwaivgi/kling-v2.5-turbo-pro"),
    ],
)
def test_our_models_map_to_replicates_kwaivgi_models(model: str, kind: str, mode: str, endpoint: str) -> None:
    assert model_for(model, kind, mode).endpoint == endpoint


def test_every_row_is_dated_and_sourced_and_has_a_price() -> None:
    for row in MODELS.values():
        assert row.source.checked and row.source.where, row
        assert price_key(row.endpoint, {"mode": row.mode_input}) in PRICES, row.endpoint


def test_the_input_replicates_models_take() -> None:
    # Given kling-v2.1 pro image to video with an end frame, 10 s, a negative prompt
    request_ = request(
        model="kling-v2-1",
        kind="image2video",
        mode="pro",
        image=PNG,
        image_tail=PNG,
        duration=10,
        negative_prompt="blur",
    )
    row, arguments = build_input(request_, default_model="kling-v2-6")
    # Then the input names Replicate's fields: duration a number, mode in Replicate's words, images as data URIs
    assert row.endpoint == "kwaivgi/kling-v2.1"
    assert arguments["duration"] == 10 and arguments["mode"] == "pro" and arguments["negative_prompt"] == "blur"
    assert arguments["start_image"].startswith("data:image/png;base64,")
    assert arguments["end_image"].startswith("data:image/png;base64,")
    # And text to video carries the aspect ratio, and no mode where the model takes none
    _, text = build_input(request(model="kling-v2-5-turbo", mode="pro", aspect_ratio="9:16"), default_model="x")
    assert text == {"prompt": "a red fox in snow", "duration": 5, "aspect_ratio": "9:16"}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"model": "kling-v2-5-turbo", "mode": "std"},
            "mode: Replicate serves kling-v2-5-turbo text2video in mode pro",
        ),
        ({"model": "kling-v2-1", "mode": "pro"}, "kind: Replicate's kling-v2-1 does image2video only"),
        ({"model": "kling-v3", "mode": "pro"}, "model: Replicate does not serve kling-v3"),
        ({"model": "kling-v1-6", "cfg_scale": 0.5}, "cfg_scale: Replicate's Kling models take no"),
        (
            {"model": "kling-v1-6", "kind": "image2video", "mode": "pro", "image": PNG, "image_tail": PNG},
            "image_tail: kwaivgi/kling-v1.6-pro takes no end frame",
        ),
        ({"kind": "omni-video", "model": "kling-v3-omni"}, "kind: Replicate serves Kling's text2video and image2video"),
    ],
)
def test_what_replicate_cannot_do_is_refused_naming_the_field_and_the_fix(
    fields: dict[str, object], words: str
) -> None:
    assert words in refusal(**fields)


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("starting", "queued"),
        ("processing", "running"),
        ("failed", "failed"),
        ("canceled", "failed"),
        ("aborted", "failed"),
    ],
)
def test_replicates_statuses_in_our_words(status: str, ours: str) -> None:
    assert task_of({"id": "p1", "status": status}).status == ours


def test_a_succeeded_prediction_is_one_url_living_an_hour_from_its_completion() -> None:
    task = task_of(
        {"id": "p1", "status": "succeeded", "output": "https://replicate.delivery/x/out.mp4", "completed_at": DONE}
    )
    assert (task.status, task.video_url) == ("succeeded", "https://replicate.delivery/x/out.mp4")
    assert task.video_expires_at == pytest.approx(DONE_EPOCH + OUTPUT_LIFETIME_S)


@pytest.mark.parametrize("removed", [{"data_removed": True, "output": None}, {"output": None}])
def test_a_succeeded_prediction_whose_output_is_gone_is_expired(removed: dict[str, object]) -> None:
    task = task_of({"id": "p1", "status": "succeeded", "completed_at": DONE} | removed)
    assert (task.status, task.error_code) == ("failed", OUTPUT_EXPIRED)


def test_an_unknown_status_is_unknown_and_an_aborted_one_says_it_was_not_charged() -> None:
    assert task_of({"id": "p1", "status": "booting"}).status == "unknown"
    assert "not charged" in (task_of({"id": "p1", "status": "aborted"}).error or "")


def test_prices_are_dated_overridable_and_v21_pro_is_priced_apart() -> None:
    for price in PRICES.values():
        assert price.source.checked and price.source.where
    prices = table(json.dumps({"kwaivgi/kling-v2.5-turbo-pro": 0.1}))
    charge = prices.charge(price_key("kwaivgi/kling-v2.5-turbo-pro", {}), 10, audio=False)
    assert charge is not None and charge.amount == pytest.approx(1.0) and "ReplicatePrices" in charge.basis
    assert price_key("kwaivgi/kling-v2.1", {"mode": "pro"}) == "kwaivgi/kling-v2.1/pro"
    with pytest.raises(PriceTableError, match=r"ReplicatePrices\['x'\]"):
        table('{"x": "cheap"}')


def test_a_duration_replicate_has_no_place_for_is_refused() -> None:
    # Kling's own table lets no Replicate-served model ask for 7 s; the rule still holds for the row's own check
    from kling_pipeline.providers.replicate import replicate_problems

    row = model_for("kling-v2-5-turbo", "text2video", "pro")
    problems = replicate_problems(
        request(model="kling-v2-5-turbo", mode="pro").model_copy(update={"duration": "7"}), row
    )
    assert problems == ["duration: kwaivgi/kling-v2.5-turbo-pro takes 5 or 10 seconds, not 7; set duration"]


def test_the_replicate_settings_part_refuses_unreadable_prices() -> None:
    from pydantic import ValidationError

    from kling_pipeline.settings import ReplicateAccess

    fields = {
        "replicate_base_url": "https://api.replicate.com",
        "replicate_credentials_secret": "replicate",
        "replicate_timeout_s": 10,
        "replicate_max_list_pages": 50,
        "replicate_poll_within_s": 600,
        "job_timeout_minutes": 60,
    }
    with pytest.raises(ValidationError, match="ReplicatePrices"):
        ReplicateAccess.model_validate(fields | {"replicate_prices": '{"x": "cheap"}'})
    assert ReplicateAccess.model_validate(fields | {"replicate_prices": "{}"}).replicate_max_list_pages == 50
