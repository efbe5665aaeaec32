"""The rules of counting what Kling charges, without AWS: which decisions carry a charge, what Kling's
figure is worth, what a job reserves, what the ledger writes, how the account's packs are read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.ledger import Ledger, day_of
from kling_pipeline.errors import KlingShapeError
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job, JobState, charged_units, observe_task
from kling_pipeline.poll_schedule import Estimate
from kling_pipeline.unit_estimates import DEFAULT_RATE, PRO_FACTOR, table_estimate, units_to_reserve


def job(state: JobState = JobState.PROCESSING, **fields: Any) -> Job:
    request = {"prompt": "p", "job_id": "j"} | fields.pop("request", {})
    return Job(
        job_id="j",
        state=state,
        version=3,
        kind="text2video",
        request=request,
        created_at="2026-11-23T00:00:00Z",
        updated_at="2026-11-23T00:00:00Z",
        task_id="t-1",
        **fields,
    )


def task(status: str, units: str | None) -> KlingTask:
    videos = {"task_result": {"videos": [{"id": "v", "url": "https://cdn.klingai.com/v.mp4"}]}}
    return KlingTask.model_validate(
        {"task_id": "t-1", "task_status": status, "final_unit_deduction": units}
        | (videos if status == "succeed" else {})
    )


# -- which observations carry a charge ----------------------------------------------------------


@pytest.mark.parametrize(("status", "units", "expected"), [("succeed", "2.5", 2.5), ("failed", "0", 0.0)])
def test_a_finished_task_carries_klings_charge(status: str, units: str, expected: float) -> None:
    decision = observe_task(job(), task(status, units))
    assert decision is not None and charged_units(decision) == expected


def test_a_running_task_charges_nothing_yet() -> None:
    decision = observe_task(job(JobState.SUBMITTED), task("processing", "9"))
    assert decision is not None and charged_units(decision) is None


def test_a_finished_task_without_a_figure_counts_nothing_unknown_is_not_zero() -> None:
    decision = observe_task(job(), task("succeed", None))
    assert decision is not None and charged_units(decision) is None


def test_a_succeed_without_a_video_carries_klings_charge() -> None:
    no_video = KlingTask.model_validate(
        {"task_id": "t-1", "task_status": "succeed", "final_unit_deduction": "1.5", "task_result": {"videos": []}}
    )
    decision = observe_task(job(), no_video)
    assert decision is not None and decision.changes["error_code"] == "KLING_NO_VIDEO"
    assert charged_units(decision) == 1.5


@given(st.text(max_size=12))
def test_klings_figure_is_counted_only_when_it_is_a_finite_non_negative_number(raw: str) -> None:
    decision = observe_task(job(), task("succeed", raw or None))
    assert decision is not None
    units = charged_units(decision)
    try:
        value = float(raw) if raw else None
    except ValueError:
        assert units is None
        return
    if value is None:
        assert units is None
        return
    assert units == (value if value >= 0 and value != float("inf") and value == value else None)


# -- what a job reserves ------------------------------------------------------------------------


def test_the_table_estimates_pro_and_longer_videos_in_proportion() -> None:
    assert table_estimate(job()) == DEFAULT_RATE.units
    assert table_estimate(job(request={"mode": "pro"})) == DEFAULT_RATE.units * PRO_FACTOR.units
    assert table_estimate(job(request={"mode": "pro", "duration": "10"})) == DEFAULT_RATE.units * PRO_FACTOR.units * 2
    assert table_estimate(job(request={"duration": "3"})) == DEFAULT_RATE.units  # never less than a 5 s video


def test_a_learned_charge_replaces_the_table() -> None:
    assert units_to_reserve(job(), Estimate(60, 10, 4, units=3.5)) == 3.5
    assert units_to_reserve(job(), Estimate(60, 10, 4)) == DEFAULT_RATE.units
    assert units_to_reserve(job(), None) == DEFAULT_RATE.units


def test_every_rate_says_where_it_comes_from_and_when() -> None:
    for rate in (DEFAULT_RATE, PRO_FACTOR):
        assert rate.source and len(rate.checked) == 10


# -- what the ledger writes ---------------------------------------------------------------------


def ledger() -> Ledger:
    return Ledger("stats", dynamodb=_NoAws())


class _NoAws:
    def Table(self, name: str) -> object:
        return object()


def test_a_charge_adds_units_and_a_task_to_the_days_model_and_mode() -> None:
    (entry,) = ledger().charge_updates(job(model_name="kling-v3", request={"mode": "pro"}), 4.0, now=0)
    update = entry["Update"]
    assert update["Key"] == {"pk": "cost#1970-01-01", "sk": "kling-v3#pro"}
    assert update["UpdateExpression"] == "ADD units :units, tasks :one"
    assert update["ExpressionAttributeValues"] == {":units": Decimal("4.0"), ":one": 1}


def test_a_charge_turns_the_jobs_reservation_into_what_was_charged() -> None:
    held = job(reserved_units=2.0, reserved_day="2026-11-22")
    _, adjust = ledger().charge_updates(held, 0.5, now=0)
    assert adjust["Update"]["Key"] == {"pk": "budget#2026-11-22", "sk": "units"}
    assert adjust["Update"]["ExpressionAttributeValues"] == {":delta": Decimal("-1.5")}


def test_a_release_gives_back_exactly_what_was_reserved_and_nothing_without_a_reservation() -> None:
    (entry,) = ledger().release_update(job(reserved_units=1.5, reserved_day="2026-11-23"))
    assert entry["Update"]["ExpressionAttributeValues"] == {":delta": Decimal("-1.5")}
    assert ledger().release_update(job()) == []


def test_a_reservation_is_conditional_on_the_days_room() -> None:
    entry = ledger().reserve_update("2026-11-23", 2, budget=10)["Update"]
    assert entry["ConditionExpression"] == "attribute_not_exists(reserved) OR reserved <= :room"
    assert entry["ExpressionAttributeValues"] == {":units": Decimal("2"), ":room": Decimal("8")}
    with pytest.raises(ValueError, match="can never fit"):
        ledger().reserve_update("2026-11-23", 11, budget=10)


def test_days_are_utc_dates() -> None:
    assert day_of(86_399) == "1970-01-01" and day_of(86_400) == "1970-01-02"


# -- the account's resource packs ---------------------------------------------------------------


def packs_answer(data: object) -> KlingClient:
    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/account/costs"
        assert set(request.url.params) == {"start_time", "end_time"}
        return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "request_id": "r", "data": data})

    return KlingClient("https://kling.test", "ak", "s" * 40, transport=httpx.MockTransport(reply))


def test_resource_packs_are_read_with_what_is_left() -> None:
    data = {
        "resource_pack_subscribe_infos": [
            {"resource_pack_name": "video", "total_quantity": 100, "remaining_quantity": 42.5, "status": "online"},
            {"resource_pack_name": "old", "total_quantity": 50, "remaining_quantity": 50, "status": "expired"},
        ]
    }
    packs = packs_answer(data).resource_packs(since_ms=0, until_ms=1)
    assert [(p.resource_pack_name, p.remaining_quantity, p.usable) for p in packs] == [
        ("video", 42.5, True),
        ("old", 50.0, False),
    ]


@pytest.mark.parametrize("data", [None, [], {"resource_pack_subscribe_infos": "none"}, {"x": 1}])
def test_an_account_answer_in_an_unknown_shape_is_a_shape_error(data: object) -> None:
    with pytest.raises(KlingShapeError):
        packs_answer(data).resource_packs(since_ms=0, until_ms=1)
