"""Kling's newer API design on the simulator, over HTTP: API keys on both designs (the JWT on the legacy
design only), model-in-the-path creates with their rules, and the task as GET /tasks answers it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kling_local.sim import make_token

from .conftest import AK, SK

API_KEY = "test-api-key-0123456789"


def _headers(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create(sim, route: str, body: dict[str, Any], key: str = API_KEY) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/{route}", json=body, headers=_headers(key), timeout=10)


def _tasks(sim, key: str = API_KEY, **params: str) -> httpx.Response:
    return httpx.get(f"{sim.base_url}/tasks", params=params, headers=_headers(key), timeout=10)


@pytest.fixture
def new_sim(make_sim):
    return make_sim(api_key=API_KEY)


# -- 1. API keys -----------------------------------------------------------------------------------


def test_an_api_key_works_on_both_designs(new_sim):
    # Given the account's API key
    # When it creates through the legacy design and through the newer one
    legacy = httpx.post(
        f"{new_sim.base_url}/v1/videos/text2video", json={"prompt": "a fox"}, headers=_headers(), timeout=10
    )
    new = _create(new_sim, "text-to-video/kling-2.6", {"prompt": "a fox"})
    # Then both are accepted, and the legacy task is readable with the same key
    assert legacy.status_code == 200, legacy.text
    assert new.status_code == 200, new.text
    task_id = legacy.json()["data"]["task_id"]
    got = httpx.get(f"{new_sim.base_url}/v1/videos/text2video/{task_id}", headers=_headers(), timeout=10)
    assert got.json()["data"]["task_id"] == task_id


def test_a_jwt_is_refused_on_the_newer_design_and_accepted_on_the_legacy(new_sim):
    # Given a valid access-key/secret-key JWT
    token = make_token(AK, SK)
    # When it is sent to a newer-design create and to /tasks
    create = _create(new_sim, "text-to-video/kling-2.6", {"prompt": "a fox"}, key=token)
    query = _tasks(new_sim, key=token, task_ids="1")
    # Then both are 401 with 1000 (authentication failed), and the legacy design still takes it
    assert (create.status_code, create.json()["code"]) == (401, 1000)
    assert (query.status_code, query.json()["code"]) == (401, 1000)
    legacy = httpx.get(f"{new_sim.base_url}/v1/videos/text2video", headers=_headers(token), timeout=10)
    assert legacy.status_code == 200


@pytest.mark.parametrize(("authorization", "code"), [(None, 1001), ("Basic x", 1002), ("Bearer wrong-key", 1000)])
def test_a_missing_or_wrong_key_is_refused_on_the_newer_design(new_sim, authorization, code):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.post(
        f"{new_sim.base_url}/text-to-video/kling-2.6", json={"prompt": "a fox"}, headers=headers, timeout=10
    )
    assert (response.status_code, response.json()["code"]) == (401, code)


# -- 2. newer-design creates and GET /tasks -------------------------------------------------------------


def test_a_newer_design_create_answers_the_new_shape_and_ends_succeeded(new_sim, wait):
    # Given a text-to-video create on kling-2.6 with our own id and a watermark
    body = {
        "prompt": "a red fox running through snow",
        "settings": {"resolution": "1080p", "duration": 10, "audio": "native", "aspect_ratio": "9:16"},
        "options": {"external_task_id": "job-1", "watermark_info": {"enabled": True}},
    }
    # When it is created
    response = _create(new_sim, "text-to-video/kling-2.6", body)
    # Then the answer is data {id, status, create_time, update_time, external_id}
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"id", "status", "create_time", "update_time", "external_id"}
    assert (data["status"], data["external_id"]) == ("submitted", "job-1")

    # And GET /tasks shows it in the new shape until it has succeeded
    def done() -> dict[str, Any] | None:
        tasks = _tasks(new_sim, task_ids=data["id"]).json()["data"]
        return tasks[0] if tasks and tasks[0]["status"] in ("succeeded", "failed") else None

    task = wait(done, what="the task to end")
    assert task["status"] == "succeeded"
    assert set(task) == {"id", "status", "message", "create_time", "update_time", "external_id", "outputs", "billing"}
    (output,) = task["outputs"]
    assert output["type"] == "video" and output["url"] and output["watermark_url"] and output["duration"] == 10.1
    assert httpx.get(output["url"], timeout=10).status_code == 200
    (billing,) = task["billing"]
    assert billing["charge_type"] == "unit" and billing["amount"] > 0


def test_billing_in_cash_carries_the_currency(make_sim, wait):
    sim = make_sim(api_key=API_KEY, billing_currency="USD", cash_per_unit=0.5)
    task_id = _create(sim, "text-to-video/kling-3.0", {"prompt": "a fox", "settings": {"duration": 5}}).json()["data"][
        "id"
    ]
    (task,) = _tasks(sim, task_ids=task_id).json()["data"]
    assert task["billing"] == [
        {"charge_type": "cash", "amount": 0.5, "currency": "USD", "package_type": "", "list_price": 0.5}
    ]


def test_a_newer_design_task_is_not_on_the_legacy_paths(new_sim):
    task_id = _create(new_sim, "omni-video/kling-3.0-omni", {"prompt": "a fox"}).json()["data"]["id"]
    response = httpx.get(f"{new_sim.base_url}/v1/videos/omni-video/{task_id}", headers=_headers(), timeout=10)
    assert (response.status_code, response.json()["code"]) == (404, 1203)


def _png() -> str:
    import base64

    from kling_local.sim.media import sample_image

    return base64.b64encode(sample_image(640, 360, "png")).decode()


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        ("text-to-video/kling-3.0", {"prompt": "x", "settings": {"duration": 16}}, "3 to 15"),
        ("text-to-video/kling-3.0", {"prompt": "x", "settings": {"duration": "5"}}, "integer"),
        ("text-to-video/kling-2.6", {"prompt": "x", "settings": {"duration": 7}}, "5 or 10"),
        ("text-to-video/kling-2.6", {"prompt": "x", "settings": {"audio": "native", "resolution": "720p"}}, "1080p"),
        ("text-to-video/kling-2.6", {"prompt": "x", "settings": {"resolution": "8k"}}, "resolution"),
        ("text-to-video/kling-2.6", {"prompt": "x" * 3073}, "3072"),
        ("text-to-video/kling-2.6", {}, "prompt is required"),
        ("text-to-video/kling-2.6", {"prompt": "x", "callback_url": "http://h/cb"}, "callback_url"),
        ("image-to-video/kling-3.0", {"prompt": "x"}, "first_frame"),
        (
            "image-to-video/kling-3.0-turbo",
            {"contents": [{"type": "first_frame", "image": "{png}"}, {"type": "last_frame", "image": "{png}"}]},
            "first frame only",
        ),
    ],
    ids=[
        "3.0-16s",
        "string-duration",
        "2.6-7s",
        "2.6-audio-720p",
        "8k",
        "long-prompt",
        "no-prompt",
        "misplaced-option",
        "i2v-no-frame",
        "turbo-last-frame",
    ],
)
def test_newer_design_rules_refuse_with_1201(new_sim, route, body, words):
    png = _png()
    if "contents" in body:
        body = {"contents": [{**item, "image": png} for item in body["contents"]]}
    response = _create(new_sim, route, body)
    assert (response.status_code, response.json()["code"]) == (400, 1201), response.text
    assert words in response.json()["message"]


def test_newer_design_accepts_what_the_rules_allow(new_sim):
    png = _png()
    ok = [
        ("text-to-video/kling-3.0", {"prompt": "x" * 3072, "settings": {"duration": 3, "resolution": "4k"}}),
        ("text-to-video/kling-2.6", {"contents": [{"type": "prompt", "text": "x"}], "settings": {"duration": 10}}),
        ("image-to-video/kling-3.0-turbo", {"contents": [{"type": "first_frame", "image": png}], "prompt": "x"}),
        (
            "image-to-video/kling-3.0",
            {"contents": [{"type": "first_frame", "image": png}, {"type": "last_frame", "image": png}]},
        ),
        ("omni-video/kling-3.0-omni", {"settings": {"multi_shot": True, "duration": 15}}),
    ]
    for route, body in ok:
        response = _create(new_sim, route, body)
        assert response.status_code == 200, (route, response.text)


def test_the_newer_design_shares_the_slots_of_the_legacy_one(make_sim):
    # Given an account with one slot per model version, held by a legacy task of kling-v2-6 (the model
    # version the newer design calls kling-2.6) made with the API key
    sim = make_sim(api_key=API_KEY, concurrency_limit=1, speed=1.0)
    legacy = httpx.post(
        f"{sim.base_url}/v1/videos/text2video",
        json={"prompt": "a", "model_name": "kling-v2-6"},
        headers=_headers(),
        timeout=10,
    )
    assert legacy.status_code == 200
    # When a newer-design create comes
    response = _create(sim, "text-to-video/kling-2.6", {"prompt": "b"})
    # Then it is refused with 1303, as any create over the account's concurrency
    assert (response.status_code, response.json()["code"]) == (429, 1303)
