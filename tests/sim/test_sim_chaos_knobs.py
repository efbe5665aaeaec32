"""The knobs and hooks the chaos suite (bench/chaos/) adds: outages, 5xxx bursts, callbacks held past a
poll, hostile result URLs, a hook between a create and its answer, and what Kling holds (callback URLs,
the served video's checksum)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx


def test_an_outage_answers_5001_and_loses_callbacks_then_kling_recovers(make_sim, make_api, receiver, wait):
    # Given a task with a callback, then an outage of 1.5 simulated seconds (at speed 1: real seconds)
    sim = make_sim(speed=1.0, generation_min_s=30.0, generation_max_s=30.0)
    api = make_api(sim)
    task_id = api.create_ok(callback_url=receiver.url)
    wait(lambda: receiver.count() >= 1, what="the submitted callback")
    sim.configure(outage_s=1.5)
    # When Kling is asked during the outage
    during = api.get("text2video", task_id)
    create = api.create(prompt="made in an outage")
    # Then every request is answered 5001 (HTTP 503), no task is made
    assert during.status_code == 503 and during.json()["code"] == 5001
    assert create.status_code == 503 and sim.stats()["tasks_total"] == 1
    # When the outage is over
    time.sleep(1.6)
    # Then Kling answers again
    assert api.get("text2video", task_id).status_code == 200
    assert sim.stats()["faults"]["outage"] == 2


def test_status_changes_in_an_outage_send_no_callback(make_sim, make_api, receiver, wait):
    # Given an outage longer than a task's whole generation
    sim = make_sim()
    api = make_api(sim)
    task_id = api.create_ok(callback_url=receiver.url)
    sim.configure(outage_s=600.0)  # 0.6 s at speed 1000; generation is 30-60 ms
    # When the task ends inside it
    wait(lambda: sim.task_object(task_id)["task_status"] == "succeed", what="the task to end")
    time.sleep(0.1)
    # Then only the callback sent before the outage arrived; the rest were lost and counted
    assert [body["task_status"] for body in receiver.for_task(task_id)] == ["submitted"]
    assert sim.stats()["faults"]["callback_lost_in_outage"] == 2


def test_error_bursts_answer_every_request_5xxx_for_their_share_of_time(make_sim, make_api):
    # Given 5xxx bursts for the first 0.1 s of every 0.2 s (speed 1: simulated seconds are real)
    sim = make_sim(speed=1.0, error_burst_every_s=0.2, error_burst_s=0.1)
    api = make_api(sim)
    # When the API is asked many times over several periods
    codes = []
    for _ in range(60):
        codes.append(api.create().json()["code"])
        time.sleep(0.01)
    # Then about half are 5000-5002 and the rest succeed
    errors = sum(1 for code in codes if code in (5000, 5001, 5002))
    assert 10 <= errors <= 50
    assert set(codes) <= {0, 5000, 5001, 5002}
    assert sim.stats()["faults"]["error_burst"] == errors


def test_callbacks_wait_at_least_the_minimum_delay(make_sim, make_api, receiver, wait):
    # Given callbacks held at least 0.5 s
    sim = make_sim(callback_min_delay_s=0.5)
    api = make_api(sim)
    # When a task is created with a callback
    started = time.monotonic()
    api.create_ok(callback_url=receiver.url)
    wait(lambda: receiver.count() >= 1, what="the first callback")
    # Then the first arrives no sooner
    assert time.monotonic() - started >= 0.5


def test_result_url_base_puts_result_urls_at_a_hostile_address(make_sim, make_api):
    # Given result URLs under a metadata address
    sim = make_sim(result_url_base="https://169.254.169.254")
    api = make_api(sim)
    # When a task succeeds
    task = api.wait_terminal("text2video", api.create_ok())
    # Then its URL points there, with the CDN's path
    url = task["task_result"]["videos"][0]["url"]
    assert url.startswith("https://169.254.169.254/bs2/upload-kling-api/")


def test_a_create_hook_runs_after_the_task_is_made_and_before_the_answer(make_sim, make_api):
    # Given a hook that records what it saw
    sim = make_sim()
    seen: list[tuple[dict[str, Any], tuple[str, int], int]] = []
    sim.on_create(lambda data, client: seen.append((data, client, sim.stats()["tasks_total"])))
    api = make_api(sim)
    # When a task is created
    task_id = api.create_ok(external_task_id="job-7", callback_url="http://127.0.0.1:9/callbacks/job-7?token=t")
    # Then the hook saw it already made, and from the client's loopback address
    data, client, tasks_then = seen[0]
    assert data["task_id"] == task_id and tasks_then == 1
    assert client[0] == "127.0.0.1" and client[1] > 0
    assert sim.callback_url(task_id) == "http://127.0.0.1:9/callbacks/job-7?token=t"


def test_video_sha256_is_the_checksum_of_the_served_bytes(make_sim, make_api):
    # Given a succeeded task
    sim = make_sim()
    api = make_api(sim)
    task = api.wait_terminal("text2video", api.create_ok())
    # When its video is downloaded
    body = httpx.get(task["task_result"]["videos"][0]["url"]).content
    # Then the simulator's checksum is the body's
    assert sim.video_sha256(task["task_id"]) == hashlib.sha256(body).hexdigest()
    assert sim.task_object(task["task_id"])["task_status"] == "succeed"
