"""/tasks on the simulator, over HTTP: batch look-ups by Kling's ids or ours, the cursor sweep, the
knobs that make them hard (a batch-size cap, legacy tasks absent), and `kling_queries`, the count of
every query call whatever its design or width."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

API_KEY = "test-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _create(sim, prompt: str = "a fox", **options: Any) -> str:
    body: dict[str, Any] = {"prompt": prompt, "options": options}
    response = httpx.post(f"{sim.base_url}/text-to-video/kling-3.0", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["id"]
    return task_id


def _get(sim, **params: str) -> httpx.Response:
    return httpx.get(f"{sim.base_url}/tasks", params=params, headers=AUTH, timeout=10)


def _sweep(sim, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/tasks", json=body or {}, headers=AUTH, timeout=10)


@pytest.fixture
def new_sim(make_sim):
    return make_sim(api_key=API_KEY)


# -- batch look-ups --------------------------------------------------------------------------------------


def test_a_batch_by_task_ids_answers_the_tasks_found(new_sim):
    # Given two tasks
    first, second = _create(new_sim), _create(new_sim)
    # When one call asks for them and for an id Kling never gave
    response = _get(new_sim, task_ids=f"{second},no-such-task,{first}")
    # Then it answers the two, the unknown one simply absent
    assert response.status_code == 200, response.text
    assert [task["id"] for task in response.json()["data"]] == [second, first]


def test_a_batch_by_external_ids_answers_every_task_of_a_reused_id(new_sim):
    # Given our id used by two creates (Kling makes, and bills, a second task) and another id once
    twice = [_create(new_sim, external_task_id="job-a"), _create(new_sim, external_task_id="job-a")]
    once = _create(new_sim, external_task_id="job-b")
    # When one call asks by our ids
    data = _get(new_sim, external_task_ids="job-a,job-b,job-c").json()["data"]
    # Then every task made with them is there
    assert sorted(task["id"] for task in data) == sorted([*twice, once])
    assert {task["external_id"] for task in data} == {"job-a", "job-b"}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"task_ids": "a", "external_task_ids": "b"}, "exactly one"),
        ({}, "exactly one"),
        ({"task_ids": ""}, "empty"),
        ({"task_ids": "a,b,c,d"}, "too many ids (4); at most 3"),
    ],
    ids=["both-kinds", "neither", "empty", "over-the-cap"],
)
def test_a_batch_refused_with_1201(make_sim, params, words):
    sim = make_sim(api_key=API_KEY, tasks_max_ids=3)
    response = _get(sim, **params)
    assert (response.status_code, response.json()["code"]) == (400, 1201)
    assert words in response.json()["message"]


def test_legacy_tasks_are_absent_from_tasks_unless_the_knob_says(make_sim, make_api, wait):
    # Given a legacy task, on a simulator where legacy tasks are absent from /tasks (the default)
    sim = make_sim(api_key=API_KEY)
    legacy = make_api(sim).create_ok(external_task_id="job-old")
    make_api(sim).wait_terminal("text2video", legacy)
    # Then neither a batch nor a sweep shows it
    assert _get(sim, task_ids=legacy).json()["data"] == []
    assert _sweep(sim).json()["data"]["result"] == []
    # And with tasks_include_legacy it is there, in the newer design's shape
    sim.configure(tasks_include_legacy=True)
    (task,) = _get(sim, external_task_ids="job-old").json()["data"]
    assert (task["id"], task["status"], task["outputs"][0]["type"]) == (legacy, "succeeded", "video")


# -- the sweep -------------------------------------------------------------------------------------------


def test_a_sweep_pages_through_every_task_once_in_no_promised_order(new_sim):
    # Given eight tasks
    created = [_create(new_sim, prompt=f"fox {i}") for i in range(8)]
    # When the sweep reads them three at a time, cursor after cursor
    seen: list[str] = []
    body: dict[str, Any] = {"limit": 3, "filters": [{"key": "product_type", "values": ["video"]}]}
    pages = 0
    while True:
        data = _sweep(new_sim, body).json()["data"]
        pages += 1
        assert data["count"] == len(data["result"])
        seen += [task["id"] for task in data["result"]]
        if not data["has_more"]:
            assert data["next_cursor"] == ""
            break
        # a task made mid-sweep never shifts a page
        _create(new_sim, prompt="made mid-sweep")
        body = {"limit": 3, "cursor": data["next_cursor"]}
    # Then each task came once, and not in creation order
    assert set(created) <= set(seen) and len(seen) == len(set(seen))
    assert [t for t in seen if t in created] != created
    assert pages >= 3


def test_a_sweep_filters_by_status_and_window(new_sim, wait):
    task_id = _create(new_sim)
    wait(lambda: _get(new_sim, task_ids=task_id).json()["data"][0]["status"] == "succeeded", what="the task to end")
    done = _sweep(new_sim, {"filters": [{"key": "status", "values": ["succeeded"]}]}).json()["data"]["result"]
    running = _sweep(new_sim, {"filters": [{"key": "status", "values": ["processing"]}]}).json()["data"]["result"]
    before = _sweep(new_sim, {"start_time": 0, "end_time": 1000}).json()["data"]["result"]
    assert ([t["id"] for t in done], running, before) == ([task_id], [], [])


@pytest.mark.parametrize(
    "body",
    [
        {"limit": 501},
        {"limit": 0},
        {"start_time": 2000, "end_time": 1000},
        {"cursor": "not-a-cursor"},
        {"filters": [{"key": "colour", "values": ["red"]}]},
        {"filters": [{"key": "status", "values": ["succeed"]}]},
    ],
    ids=["limit-501", "limit-0", "window-backwards", "bad-cursor", "unknown-filter", "legacy-status"],
)
def test_a_sweep_refused_with_1201(new_sim, body):
    response = _sweep(new_sim, body)
    assert (response.status_code, response.json()["code"]) == (400, 1201), response.text


# -- kling_queries ---------------------------------------------------------------------------------------


def test_kling_queries_counts_every_query_call_of_either_design(new_sim, make_api):
    # Given a legacy task and a newer-design one
    api = make_api(new_sim)
    legacy = api.create_ok(external_task_id="job-l")
    _create(new_sim, external_task_id="job-n")
    assert new_sim.stats()["kling_queries"] == 0  # creates are not queries
    # When each kind of query is called once
    api.get("text2video", legacy)
    api.http.get("/v1/videos/text2video", params={"external_task_id": "job-l"})
    api.http.get("/v1/videos/text2video", params={"pageNum": 1, "pageSize": 500})
    _get(new_sim, external_task_ids="job-n,job-x")
    _sweep(new_sim)
    # Then each counted once, beside the existing per-endpoint counters
    stats = new_sim.stats()
    assert stats["kling_queries"] == 5
    assert stats["calls"]["GET tasks?external_task_ids"] == 1 and stats["calls"]["POST tasks"] == 1
