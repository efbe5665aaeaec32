"""Task lifecycle, answer shapes, look-ups, paging, charges, video-extend and callbacks."""

from __future__ import annotations

import re
import socket
import time

import pytest

from kling_local.sim import png_base64

ORDER = {"submitted": 0, "processing": 1, "succeed": 2, "failed": 2}


def test_create_answer_has_kling_shape(api):
    before_ms = int(time.time() * 1000)
    response = api.create(external_task_id="job-42")
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["code"] == 0
    assert envelope["message"] == "SUCCEED"
    assert isinstance(envelope["request_id"], str) and envelope["request_id"]
    data = envelope["data"]
    assert set(data) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert isinstance(data["task_id"], str)
    assert data["task_status"] == "submitted"
    assert data["task_info"] == {"external_task_id": "job-42"}
    # Milliseconds, not seconds.
    assert before_ms - 60_000 <= data["created_at"] <= before_ms + 60_000
    assert data["updated_at"] == data["created_at"]


def test_task_ids_are_strings_in_both_styles(api):
    ids = [api.create_ok() for _ in range(24)]
    assert len(set(ids)) == len(ids)
    numeric = [t for t in ids if re.fullmatch(r"\d{18}", t)]
    base64_like = [t for t in ids if re.fullmatch(r"[A-Za-z0-9]{22}", t)]
    assert len(numeric) + len(base64_like) == len(ids)
    assert numeric and base64_like


def test_task_moves_submitted_processing_succeed(make_sim, make_api):
    # About 1 s per task, a third of it in "submitted".
    sim = make_sim(speed=60.0, generation_min_s=60.0, generation_max_s=60.0, submitted_fraction=0.3)
    api = make_api(sim)
    task_id = api.create_ok()
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        data = api.task("text2video", task_id)
        if not seen or seen[-1] != data["task_status"]:
            seen.append(data["task_status"])
        if data["task_status"] in ("succeed", "failed"):
            break
        time.sleep(0.02)
    assert seen[-1] == "succeed"
    assert [ORDER[s] for s in seen] == sorted(ORDER[s] for s in seen), seen
    assert data["task_status_msg"] == ""
    assert data["final_unit_deduction"] == "1"
    assert data["updated_at"] > data["created_at"]
    [video] = data["task_result"]["videos"]
    assert set(video) == {"id", "url", "duration"}
    assert video["duration"] == "5.1"
    assert re.fullmatch(
        rf"{re.escape(sim.cdn_base_url)}/bs2/upload-kling-api/\d+/text2video/{task_id}-0_raw_video_1\.mp4"
        r"\?x-kcdn-pid=\d+&pkey=[A-Za-z0-9_-]+",
        video["url"],
    )


def test_unfinished_tasks_carry_no_result(make_sim, make_api):
    sim = make_sim(generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    data = api.task("text2video", api.create_ok())
    assert data["task_status"] in ("submitted", "processing")
    assert "task_result" not in data
    assert data["final_unit_deduction"] == "1"


@pytest.mark.parametrize(
    ("mode", "duration", "units", "video_duration"),
    [("std", "5", "1", "5.1"), ("std", "10", "2", "10.1"), ("pro", "5", "2", "5.1"), ("pro", "10", "4", "10.1")],
)
def test_units_by_mode_and_duration(api, sim, mode, duration, units, video_duration):
    task_id = api.create_ok(mode=mode, duration=duration)
    data = api.wait_terminal("text2video", task_id)
    assert data["final_unit_deduction"] == units
    assert data["task_result"]["videos"][0]["duration"] == video_duration
    assert sim.stats()["units_charged_total"] == float(units)


def test_failed_tasks_say_why_and_are_not_charged(make_sim, make_api):
    sim = make_sim(fail_rate=1.0)
    api = make_api(sim)
    data = api.wait_terminal("text2video", api.create_ok(mode="pro"))
    assert data["task_status"] == "failed"
    assert data["task_status_msg"]
    assert data["final_unit_deduction"] == "0"
    assert "task_result" not in data
    stats = sim.stats()
    assert stats["units_charged_total"] == 0
    assert stats["tasks_by_status"]["failed"] == 1
    assert stats["concurrency"]["current"] == 0


def test_lookup_by_external_task_id(api, sim):
    task_id = api.create_ok(external_task_id="job-7")
    response = api.http.get("/v1/videos/text2video", params={"external_task_id": "job-7"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert isinstance(data, dict)
    assert data["task_id"] == task_id
    assert data["task_info"]["external_task_id"] == "job-7"
    assert sim.stats()["calls"]["GET text2video?external_task_id"] == 1


@pytest.mark.parametrize(("kind", "external_task_id"), [("text2video", "never-submitted"), ("image2video", "job-8")])
def test_lookup_of_unknown_external_task_id_is_404(api, kind, external_task_id):
    api.create_ok(external_task_id="job-8")
    response = api.http.get(f"/v1/videos/{kind}", params={"external_task_id": external_task_id})
    assert response.status_code == 404
    assert response.json()["code"] == 1203


def test_a_reused_external_task_id_is_a_second_billed_task_by_default(api, sim):
    # Kling's contract does not promise to refuse a reused external_task_id: assume the worst.
    first = api.create_ok(external_task_id="job-twice")
    second = api.create_ok(external_task_id="job-twice")
    assert second != first
    stats = sim.stats()
    assert stats["tasks_by_external_task_id"] == {"job-twice": 2}
    assert stats["double_charged_external_ids"] == 1
    # A look-up by the id finds one of them (the oldest); only the list shows both.
    found = api.http.get("/v1/videos/text2video", params={"external_task_id": "job-twice"}).json()["data"]
    assert found["task_id"] == first
    listed = api.http.get("/v1/videos/text2video", params={"pageSize": 10}).json()["data"]
    assert {t["task_id"] for t in listed} >= {first, second}


def test_external_task_id_is_unique_per_account_with_refusal_on(api, sim):
    sim.configure(refuse_reused_external_id=True)
    first = api.create_ok(external_task_id="job-dup")
    again = api.create(external_task_id="job-dup")
    assert again.status_code == 400
    assert again.json()["code"] == 1201
    assert "external_task_id" in again.json()["message"]
    # Another kind does not make it reusable either: the id is per account.
    assert api.create("image2video", {"image": png_base64(), "external_task_id": "job-dup"}).status_code == 400
    stats = sim.stats()
    assert stats["create_attempts_by_external_task_id"]["job-dup"] == 3
    assert stats["tasks_by_external_task_id"] == {"job-dup": 1}
    assert (
        api.http.get("/v1/videos/text2video", params={"external_task_id": "job-dup"}).json()["data"]["task_id"] == first
    )


@pytest.mark.parametrize(("kind", "task_id"), [("text2video", "123456789012345678"), ("image2video", None)])
def test_unknown_task_or_wrong_kind_is_404(api, kind, task_id):
    task_id = task_id or api.create_ok()
    response = api.get(kind, task_id)
    assert response.status_code == 404
    assert response.json()["code"] == 1203


def test_list_pages_newest_first(api):
    ids = [api.create_ok() for _ in range(7)]
    api.create_ok("image2video", {"image": "https://example.com/a.png"})
    pages = [
        api.http.get("/v1/videos/text2video", params={"pageNum": n, "pageSize": 3}).json()["data"] for n in (1, 2, 3, 4)
    ]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    listed = [t["task_id"] for page in pages for t in page]
    assert listed == list(reversed(ids))
    assert all("task_status" in t and "final_unit_deduction" in t for page in pages for t in page)
    default = api.http.get("/v1/videos/text2video").json()["data"]
    assert [t["task_id"] for t in default] == list(reversed(ids))
    assert len(api.http.get("/v1/videos/image2video").json()["data"]) == 1


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"pageNum": 0}, "pageNum"),
        ({"pageNum": 1001}, "pageNum"),
        ({"pageNum": "one"}, "pageNum"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 501}, "pageSize"),
        ({"pageSize": "many"}, "pageSize"),
    ],
)
def test_list_paging_is_validated(api, params, name):
    response = api.http.get("/v1/videos/text2video", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == 1201
    assert name in response.json()["message"]


def test_list_accepts_the_extremes(api):
    assert api.http.get("/v1/videos/text2video", params={"pageNum": 1000, "pageSize": 500}).json()["data"] == []


def test_video_extend_continues_an_earlier_video(api):
    source = api.wait_terminal("text2video", api.create_ok())
    video = source["task_result"]["videos"][0]
    response = api.create("video-extend", {"video_id": video["id"], "prompt": "and then", "external_task_id": "ext"})
    assert response.status_code == 200, response.text
    data = api.wait_terminal("video-extend", response.json()["data"]["task_id"])
    assert data["task_status"] == "succeed"
    assert data["task_info"]["parent_video"] == video
    assert data["task_info"]["external_task_id"] == "ext"
    assert data["task_result"]["videos"][0]["duration"] == "9.7"


def test_video_extend_needs_a_video_of_this_account(make_sim, make_api):
    sim = make_sim(extra_accounts={"other-ak": "other-sk"})
    api = make_api(sim)
    other = make_api(sim, "other-ak", "other-sk")
    video_id = api.wait_terminal("text2video", api.create_ok())["task_result"]["videos"][0]["id"]
    refused = other.create("video-extend", {"video_id": video_id})
    assert (refused.status_code, refused.json()["code"]) == (400, 1201)
    assert "video_id" in refused.json()["message"]


def test_video_extend_stops_at_3_minutes(make_sim, make_api):
    api = make_api(make_sim(generation_min_s=0.0, generation_max_s=0.0))
    # Extend the same video repeatedly: 5.1 s + 4.6 s per extension passes 180 s after 38 rounds.
    video = api.wait_terminal("text2video", api.create_ok())["task_result"]["videos"][0]
    for _ in range(38):
        task_id = api.create_ok("video-extend", {"video_id": video["id"]})
        video = api.wait_terminal("video-extend", task_id)["task_result"]["videos"][0]
    assert float(video["duration"]) <= 180
    refused = api.create("video-extend", {"video_id": video["id"]})
    assert refused.json()["code"] == 1201
    assert "3 minutes" in refused.json()["message"]


def test_callbacks_report_each_status_in_order(api, sim, receiver, wait):
    task_id = api.create_ok(callback_url=receiver.url, external_task_id="job-cb")
    bodies = wait(lambda: len(receiver.for_task(task_id)) >= 3 and receiver.for_task(task_id), what="3 callbacks")
    assert [b["task_status"] for b in bodies] == ["submitted", "processing", "succeed"]
    for body in bodies:
        assert "code" not in body and "data" not in body  # bare task objects
        assert body["task_id"] == task_id
        assert body["task_info"]["external_task_id"] == "job-cb"
    assert bodies[-1]["task_result"]["videos"][0]["url"]
    assert bodies[-1]["final_unit_deduction"] == "1"
    assert receiver.paths[0] == "/callbacks/job-1?token=abc"
    wait(lambda: sim.stats()["callbacks"]["delivered"] == 3, what="delivered count")
    time.sleep(0.2)
    assert len(receiver.for_task(task_id)) == 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "http-500", "timeout"])
def test_failing_callbacks_never_break_the_task(make_sim, make_api, receiver, wait, failure):
    sim = make_sim(callback_timeout_s=0.3)
    api = make_api(sim)
    url = receiver.url
    if failure == "refused":
        url = f"http://127.0.0.1:{_closed_port()}/cb"
    elif failure == "http-500":
        receiver.status = 500
    else:
        receiver.delay_s = 1.0
    task_id = api.create_ok(callback_url=url)
    # The API answers while callbacks fail or hang.
    assert api.wait_terminal("text2video", task_id)["task_status"] == "succeed"
    stats = wait(lambda: (s := sim.stats())["callbacks"]["failed"] == 3 and s, timeout=20, what="3 failures")
    assert stats["callbacks"]["delivered"] == 0
    assert stats["callbacks"]["sent"] == 3


def test_queries_do_not_count_against_concurrency(make_sim, make_api):
    sim = make_sim(concurrency_limit=1, generation_min_s=60000, generation_max_s=60000)
    api = make_api(sim)
    task_id = api.create_ok(external_task_id="slot")
    for _ in range(10):
        assert api.get("text2video", task_id).status_code == 200
        assert api.http.get("/v1/videos/text2video").status_code == 200
        assert api.http.get("/v1/videos/text2video", params={"external_task_id": "slot"}).status_code == 200
    assert api.create().json()["code"] == 1303
    stats = sim.stats()
    assert stats["gets_per_task"] == {task_id: 10}
    assert stats["calls"]["GET text2video list"] == 10
    assert stats["concurrency"] == {"limit": 1, "current": 1, "high_water": 1}
