"""Fault knobs do what they say: checked with fixed seeds and loose statistical bounds."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

TERMINAL = ("succeed", "failed")


def _wait_all_terminal(sim, wait, total):
    def done():
        by_status = sim.stats()["tasks_by_status"]
        return by_status["succeed"] + by_status["failed"] == total and by_status

    return wait(done, timeout=30, what=f"{total} tasks to end")


def test_fail_rate_fails_about_that_share(make_sim, make_api, wait):
    sim = make_sim(fail_rate=0.3, seed=11)
    api = make_api(sim)
    for _ in range(100):
        api.create_ok()
    by_status = _wait_all_terminal(sim, wait, 100)
    assert 15 <= by_status["failed"] <= 45
    assert by_status["succeed"] == 100 - by_status["failed"]


def test_same_seed_same_story(make_sim, make_api, wait):
    runs = []
    for _ in range(2):
        sim = make_sim(fail_rate=0.5, seed=99)
        api = make_api(sim)
        ids = [api.create_ok() for _ in range(12)]
        _wait_all_terminal(sim, wait, 12)
        runs.append([(task_id, api.task("text2video", task_id)["task_status"]) for task_id in ids])
    assert runs[0] == runs[1]
    assert {status for _, status in runs[0]} == {"succeed", "failed"}


@pytest.mark.parametrize(
    ("field", "text"),
    [("prompt", "a cat [[reject]] on a mat"), ("negative_prompt", "[[reject]]")],
)
def test_reject_marker_gets_1301(api, sim, field, text):
    response = api.create(body={"prompt": "a cat", field: text})
    assert response.status_code == 400
    assert response.json()["code"] == 1301
    assert sim.stats()["tasks_total"] == 0


def test_reject_marker_is_configurable(api, sim):
    sim.configure(reject_marker="FORBIDDEN")
    assert api.create(prompt="a [[reject]] cat").status_code == 200
    assert api.create(prompt="a FORBIDDEN cat").json()["code"] == 1301
    sim.configure(reject_marker="")
    assert api.create(prompt="a FORBIDDEN cat").status_code == 200


def test_fail_marker_accepts_bills_then_fails_only_that_task(api, sim):
    # Given two creates, one whose prompt carries the fail marker
    marked = api.create_ok(prompt="a cat [[fail]]")
    plain = api.create_ok(prompt="a cat")
    # When both end
    failed, succeeded = api.wait_terminal("text2video", marked), api.wait_terminal("text2video", plain)
    # Then only the marked task failed, and both were accepted (and billed)
    assert (failed["task_status"], succeeded["task_status"]) == ("failed", "succeed")
    assert sim.stats()["tasks_total"] == 2


def test_5xx_rate_answers_kling_outage_codes(make_sim, make_api):
    sim = make_sim(error_5xx_rate=0.5, seed=5)
    api = make_api(sim)
    answers = [api.http.get("/v1/videos/text2video") for _ in range(200)]
    failures = [(r.status_code, r.json()["code"]) for r in answers if r.status_code != 200]
    assert 60 <= len(failures) <= 140
    assert set(failures) == {(500, 5000), (503, 5001), (504, 5002)}
    assert all(r.json()["request_id"] for r in answers)
    assert sim.stats()["faults"]["error_5xx"] == len(failures)


def test_query_faults_off_spares_gets(make_sim, make_api):
    sim = make_sim(error_5xx_rate=1.0, query_faults=False)
    api = make_api(sim)
    assert all(api.http.get("/v1/videos/text2video").status_code == 200 for _ in range(20))
    assert all(api.create().status_code in (500, 503, 504) for _ in range(5))
    assert sim.stats()["tasks_total"] == 0  # a 5xx create made no task


def test_slow_responses_outlast_a_short_client_timeout(make_sim, make_api):
    sim = make_sim(slow_rate=1.0, slow_s=1.0)
    api = make_api(sim)
    with pytest.raises(httpx.TimeoutException):
        api.http.post("/v1/videos/text2video", json={"prompt": "p", "external_task_id": "slow-1"}, timeout=0.3)
    # The create was processed before the delay: the task exists (the client must look it up).
    sim.configure(slow_rate=0.0)
    found = api.http.get("/v1/videos/text2video", params={"external_task_id": "slow-1"})
    assert found.status_code == 200
    assert sim.stats()["faults"]["slow"] >= 1
    # Slow, but it does answer when the client waits.
    sim.configure(slow_rate=1.0, slow_s=0.2)
    assert api.http.get("/v1/videos/text2video", timeout=10).status_code == 200


def test_create_response_drop_accepts_but_never_answers(make_sim, make_api):
    sim = make_sim(create_response_drop_rate=1.0)
    api = make_api(sim)
    with pytest.raises(httpx.TransportError):
        api.create(external_task_id="lost-answer")
    found = api.http.get("/v1/videos/text2video", params={"external_task_id": "lost-answer"})
    assert found.status_code == 200
    assert found.json()["data"]["task_info"]["external_task_id"] == "lost-answer"
    stats = sim.stats()
    assert stats["faults"]["create_response_dropped"] == 1
    assert stats["creates"]["accepted"] == 1
    # Queries are not affected, and the server lives on.
    assert api.http.get("/v1/videos/text2video").status_code == 200


def test_callback_loss_drops_about_that_share(make_sim, make_api, receiver, wait):
    sim = make_sim(callback_loss_rate=0.5, seed=3)
    api = make_api(sim)
    for _ in range(30):
        api.create_ok(callback_url=receiver.url)
    _wait_all_terminal(sim, wait, 30)
    # Drained: none pending, and none in flight (a popped delivery is counted once its POST has ended)
    stats = wait(
        lambda: (
            (c := (s := sim.stats())["callbacks"])["pending"] == 0
            and c["delivered"] + c["failed"] + c["dropped"] == c["events"]
            and s
        ),
        what="callbacks to drain",
    )
    callbacks = stats["callbacks"]
    assert callbacks["events"] == 90
    assert 25 <= callbacks["dropped"] <= 65
    assert callbacks["delivered"] + callbacks["failed"] == 90 - callbacks["dropped"]
    wait(lambda: receiver.count() == callbacks["delivered"], what="receiver to see them")


def test_callback_duplication_sends_twice(make_sim, make_api, receiver, wait):
    sim = make_sim(callback_dup_rate=1.0)
    api = make_api(sim)
    ids = [api.create_ok(callback_url=receiver.url) for _ in range(5)]
    wait(lambda: receiver.count() == 30, what="30 callbacks")
    for task_id in ids:
        assert Counter(b["task_status"] for b in receiver.for_task(task_id)) == {
            "submitted": 2,
            "processing": 2,
            "succeed": 2,
        }
    assert sim.stats()["callbacks"]["duplicated"] == 15


def test_callback_reordering_delivers_the_final_status_first(make_sim, make_api, receiver, wait):
    sim = make_sim(callback_reorder_rate=1.0)
    api = make_api(sim)
    ids = [api.create_ok(callback_url=receiver.url) for _ in range(5)]
    wait(lambda: receiver.count() == 15, what="15 callbacks")
    for task_id in ids:
        statuses = [b["task_status"] for b in receiver.for_task(task_id)]
        assert sorted(statuses) == ["processing", "submitted", "succeed"]
        assert statuses[0] == "succeed"
    assert sim.stats()["callbacks"]["reordered"] == 10


def test_callback_delay_keeps_per_task_order(make_sim, make_api, receiver, wait):
    sim = make_sim(callback_max_delay_s=0.3)
    api = make_api(sim)
    ids = [api.create_ok(callback_url=receiver.url) for _ in range(5)]
    wait(lambda: receiver.count() == 15, what="15 callbacks")
    for task_id in ids:
        assert [b["task_status"] for b in receiver.for_task(task_id)] == ["submitted", "processing", "succeed"]
    assert sim.stats()["callbacks"]["delayed"] >= 10


def test_callback_knobs_never_touch_the_task(make_sim, make_api, receiver, wait):
    sim = make_sim(callback_loss_rate=1.0)
    api = make_api(sim)
    task_id = api.create_ok(callback_url=receiver.url)
    assert api.wait_terminal("text2video", task_id)["task_status"] == "succeed"
    assert wait(lambda: sim.stats()["callbacks"]["dropped"] == 3)
    assert receiver.count() == 0


# -- Kling's worst case: what its contract does not promise -------------------------------------


def test_query_lag_hides_a_new_task_from_every_query(api, sim, wait):
    # Given a lag of a second between a create and the task showing to queries
    sim.configure(query_lag_s=1.0)
    # When a task is created
    task_id = api.create_ok(external_task_id="job-lag")
    # Then the get, the look-up by external id and the list do not show it yet
    assert api.get("text2video", task_id).json()["code"] == 1203
    lookup = api.http.get("/v1/videos/text2video", params={"external_task_id": "job-lag"})
    assert lookup.json()["code"] == 1203
    assert api.http.get("/v1/videos/text2video").json()["data"] == []
    # Then, once the lag is over, all three do
    wait(lambda: api.get("text2video", task_id).status_code == 200, timeout=10, what="the task to show")
    assert api.http.get("/v1/videos/text2video", params={"external_task_id": "job-lag"}).json()["data"]["task_id"] == (
        task_id
    )
    assert sim.stats()["faults"]["query_lag_hidden"] >= 3


def test_a_create_can_succeed_and_answer_5000_or_a_bare_502(api, sim):
    # Given every create's answer lost after the task is made
    sim.configure(create_lost_answer_rate=1.0, seed=3)
    # When creates are sent
    answers = [api.create(external_task_id=f"job-lost-{i}") for i in range(12)]
    # Then each got an error (some 5000 in Kling's envelope, some a gateway's HTML) ...
    assert all(a.status_code in (500, 502) for a in answers)
    assert {a.status_code for a in answers} == {500, 502}
    assert all(a.json()["code"] == 5000 for a in answers if a.status_code == 500)
    assert all("json" not in a.headers["content-type"] for a in answers if a.status_code == 502)
    # ... and yet each made a task, billed
    stats = sim.stats()
    assert stats["creates"]["accepted"] == 12
    assert stats["faults"]["create_answer_lost"] == 12


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("unknown_status", lambda task: task["task_status"] not in ("submitted", "processing", "succeed", "failed")),
        ("missing_status", lambda task: "task_status" not in task),
        ("missing_task_id", lambda task: "task_id" not in task),
    ],
)
def test_answers_can_drift_to_shapes_clients_do_not_know(api, sim, mode, check):
    task_id = api.create_ok()
    sim.configure(shape_drift_rate=1.0, shape_drift_mode=mode)
    assert check(api.get("text2video", task_id).json()["data"])
    assert check(api.http.post("/v1/videos/text2video", json={"prompt": "x"}).json()["data"])
    assert check(api.http.get("/v1/videos/text2video").json()["data"][0])


def test_the_lookup_by_external_id_can_be_ignored_or_missing(api, sim):
    task_id = api.create_ok(external_task_id="job-route")
    sim.configure(external_id_lookup="ignored")
    listed = api.http.get("/v1/videos/text2video", params={"external_task_id": "job-route"}).json()["data"]
    assert isinstance(listed, list) and listed[0]["task_id"] == task_id
    sim.configure(external_id_lookup="missing")
    missing = api.http.get("/v1/videos/text2video", params={"external_task_id": "job-route"})
    assert missing.status_code == 404 and "json" not in missing.headers["content-type"]


def test_the_worst_case_preset_is_a_valid_configuration(sim):
    from kling_local.sim.config import WORST_CASE

    config = sim.configure(**WORST_CASE)
    assert config.query_lag_s > 0 and config.create_lost_answer_rate > 0 and not config.refuse_reused_external_id
