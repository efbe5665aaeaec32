"""Concurrency (1303), rate limit (1302), unit budget (1102) and forced create errors."""

from __future__ import annotations

import time

import pytest


@pytest.mark.parametrize("fail_rate", [0.0, 1.0], ids=["succeeding", "failing"])
def test_a_task_holds_its_slot_until_it_ends(make_sim, make_api, fail_rate):
    # Tasks of about 1.5 s; failures hold their slot too.
    sim = make_sim(
        concurrency_limit=2, speed=100.0, generation_min_s=150.0, generation_max_s=150.0, fail_rate=fail_rate
    )
    api = make_api(sim)
    first, second = api.create_ok(), api.create_ok()
    refused = api.create()
    assert refused.status_code == 429
    assert refused.json()["code"] == 1303
    assert "parallel task" in refused.json()["message"].lower()
    stats = sim.stats()
    assert stats["concurrency"]["current"] == 2
    assert stats["creates"]["refused_by_code"] == {"1303": 1}
    assert stats["tasks_total"] == 2
    for task_id in (first, second):
        assert api.wait_terminal("text2video", task_id)["task_status"] == ("failed" if fail_rate else "succeed")
    api.create_ok()
    assert sim.stats()["concurrency"]["high_water"] == 2


def test_concurrency_limit_zero_means_unlimited(make_sim, make_api):
    sim = make_sim(concurrency_limit=0, generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    for _ in range(25):
        api.create_ok()
    assert sim.stats()["concurrency"]["high_water"] == 25


def test_concurrency_limit_can_change_at_runtime(make_sim, make_api):
    sim = make_sim(concurrency_limit=1, generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    api.create_ok()
    assert api.create().json()["code"] == 1303
    sim.configure(concurrency_limit=2)
    api.create_ok()
    assert api.create().json()["code"] == 1303


def test_rate_limit_answers_1302_and_recovers(make_sim, make_api):
    sim = make_sim(rate_limit_per_s=1.0)
    api = make_api(sim)
    started = time.monotonic()
    answers = [api.http.get("/v1/videos/text2video") for _ in range(10)]
    elapsed = time.monotonic() - started
    ok = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(ok) + len(limited) == 10
    assert 1 <= len(ok) <= 2 + int(elapsed)
    assert all(r.json()["code"] == 1302 for r in limited)
    assert limited
    time.sleep(1.1)
    assert api.http.get("/v1/videos/text2video").status_code == 200
    assert sim.stats()["errors_by_code"]["1302"] == len(limited)


def test_rate_limit_hits_creates(make_sim, make_api):
    sim = make_sim(rate_limit_per_s=2.0)
    api = make_api(sim)
    codes = [api.create().json()["code"] for _ in range(8)]
    assert codes.count(0) >= 1
    assert 1302 in codes
    assert sim.stats()["creates"]["accepted"] == codes.count(0)


def test_unit_budget_runs_out_with_1102(make_sim, make_api):
    sim = make_sim(unit_budget=3.0)
    api = make_api(sim)
    api.create_ok(duration="10")  # 2 units
    api.create_ok()  # 1 unit
    refused = api.create()
    assert (refused.status_code, refused.json()["code"]) == (429, 1102)


def test_forced_create_errors_are_consumed_in_order(api, sim):
    sim.configure(force_create_errors=[1303, 5001, 1101, 1201])
    answers = [api.create() for _ in range(5)]
    assert [(r.status_code, r.json()["code"]) for r in answers] == [
        (429, 1303),
        (503, 5001),
        (429, 1101),
        (400, 1201),
        (200, 0),
    ]
    assert sim.config.force_create_errors == []
    assert sim.stats()["faults"]["forced_create_error"] == 4


def test_account_costs_list_the_pack_and_what_is_left(make_sim, make_api):
    # Given a pack of 10 units, with a 10 s video (2 units) running
    sim = make_sim(unit_budget=10.0, speed=100.0, generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    api.create_ok(duration="10")
    now_ms = int(time.time() * 1000)
    # When the account's costs are asked for
    answer = api.http.get("/account/costs", params={"start_time": now_ms - 86_400_000, "end_time": now_ms})
    # Then the one pack shows its total and what the running task left of it
    assert answer.status_code == 200 and answer.json()["code"] == 0
    (pack,) = answer.json()["data"]["resource_pack_subscribe_infos"]
    assert (pack["total_quantity"], pack["remaining_quantity"], pack["status"]) == (10.0, 8.0, "online")
    assert sim.stats()["calls"]["GET account/costs"] == 1


def test_account_costs_need_their_time_range_and_the_right_keys(make_sim, make_api):
    sim = make_sim()
    api = make_api(sim)
    missing = api.http.get("/account/costs", params={"start_time": 1})
    assert (missing.status_code, missing.json()["code"]) == (400, 1201)
    assert "end_time is required" in missing.json()["message"]
    stranger = make_api(sim, access_key="someone-else", secret_key="x" * 32)
    assert stranger.http.get("/account/costs", params={"start_time": 1, "end_time": 2}).status_code == 401


def test_a_used_up_pack_shows_run_out(make_sim, make_api):
    sim = make_sim(unit_budget=1.0, speed=100.0, generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    api.create_ok()
    (pack,) = api.http.get("/account/costs", params={"start_time": 0, "end_time": 1}).json()["data"][
        "resource_pack_subscribe_infos"
    ]
    assert (pack["remaining_quantity"], pack["status"]) == (0.0, "runOut")


def test_concurrency_is_counted_per_model_version_as_kling_counts_it(make_sim, make_api):
    # Given an account limit of one task at once, and a kling-v2-6 task running
    sim = make_sim(concurrency_limit=1, generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    api.create_ok(model_name="kling-v2-6")
    # When a task of another model version comes, and then another of the same version (its newer name)
    other = api.create(model_name="kling-v3")
    same = api.create(model_name="kling-v2-6")
    # Then the other version has a slot of its own, and the same version is over its limit (1303)
    assert other.status_code == 200
    assert (same.status_code, same.json()["code"]) == (429, 1303)
    assert sim.stats()["concurrency"]["current"] == 2 and sim.stats()["concurrency"]["high_water"] == 1
