"""Signed callbacks (Standard Webhooks) and the newer design's callback body, over HTTP: what a
receiver holding the webhook secret can verify, and the knobs that make it hard (rotation, unsigned
callbacks from a signed account, duplicates)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from kling_local.sim.callbacks import Message, signature_headers

API_KEY = "test-api-key-0123456789"
SECRET = "whsec_" + base64.b64encode(b"simulator-webhook-secret-0123456").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-previous-webhook-secret-4567").decode()


def _create_new(sim, receiver, **options: Any) -> str:
    body = {"prompt": "a fox", "options": {"callback_url": receiver.url, **options}}
    response = httpx.post(
        f"{sim.base_url}/text-to-video/kling-2.6", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["id"]
    return task_id


def _final(receiver, task_id: str) -> list[int]:
    return [
        i
        for i, body in enumerate(list(receiver.received))
        if body.get("id") == task_id and body.get("status") in ("succeeded", "failed")
    ]


def test_kling_test_vector():
    # Given Kling's published example (callbacks page)
    secret = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
    body = (
        b'{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}'
    )
    # When the simulator's signer signs it
    headers = signature_headers(Message("http://x/cb", body, "9876543210", (secret,)), now=1781080794)
    # Then it is Kling's signature
    assert headers == {
        "webhook-id": "9876543210",
        "webhook-timestamp": "1781080794",
        "webhook-signature": "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4=",
    }


def test_newer_design_callbacks_carry_the_new_body_and_verify(make_sim, receiver, wait):
    # Given an account with a webhook secret
    sim = make_sim(api_key=API_KEY, webhook_secret=SECRET)
    # When a newer-design task with a callback URL runs to its end
    task_id = _create_new(sim, receiver, external_task_id="job-7")
    wait(lambda: _final(receiver, task_id), what="the final callback")
    # Then every callback is the new body, signed with the secret (the library Kling recommends verifies it)
    assert [body["status"] for body in receiver.received] == ["submitted", "processing", "succeeded"]
    final = receiver.received[-1]
    assert set(final) == {"id", "status", "message", "create_time", "update_time", "external_id", "outputs", "billing"}
    assert final["external_id"] == "job-7" and final["outputs"][0]["url"]
    for raw, headers in zip(receiver.raw, receiver.headers, strict=True):
        assert Webhook(SECRET).verify(raw, headers)["id"] == task_id
    assert len({headers["webhook-id"] for headers in receiver.headers}) == 3


def test_legacy_callbacks_are_signed_too(make_sim, make_api, receiver, wait):
    sim = make_sim(webhook_secret=SECRET)
    task_id = make_api(sim).create_ok(callback_url=receiver.url)
    wait(lambda: [b for b in receiver.for_task(task_id) if b["task_status"] == "succeed"], what="the final callback")
    for raw, headers in zip(receiver.raw, receiver.headers, strict=True):
        assert Webhook(SECRET).verify(raw, headers)["task_id"] == task_id


def test_a_duplicate_keeps_its_webhook_id(make_sim, receiver, wait):
    # Given every callback delivered twice
    sim = make_sim(api_key=API_KEY, webhook_secret=SECRET, callback_dup_rate=1.0)
    # When a task runs to its end
    task_id = _create_new(sim, receiver)
    wait(lambda: len(_final(receiver, task_id)) == 2, what="both copies of the final callback")
    # Then the two copies of each event share one webhook-id, and events differ
    ids_by_status: dict[str, set[str]] = {}
    for body, headers in zip(receiver.received, receiver.headers, strict=True):
        ids_by_status.setdefault(body["status"], set()).add(headers["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_by_status.values())
    assert len(set().union(*ids_by_status.values())) == 3


def test_a_rotation_window_sends_both_signatures(make_sim, receiver, wait):
    sim = make_sim(api_key=API_KEY, webhook_secret=SECRET, webhook_secret_previous=OLD_SECRET)
    task_id = _create_new(sim, receiver)
    wait(lambda: _final(receiver, task_id), what="the final callback")
    raw, headers = receiver.raw[-1], receiver.headers[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(SECRET).verify(raw, headers) and Webhook(OLD_SECRET).verify(raw, headers)


@pytest.mark.parametrize(
    "knobs", [{"webhook_secret": SECRET, "unsigned_callback_rate": 1.0}, {}], ids=["share", "none"]
)
def test_unsigned_callbacks(make_sim, receiver, wait, knobs):
    # Given a signed account whose callbacks all go unsigned, or an account with no secret
    sim = make_sim(api_key=API_KEY, **knobs)
    task_id = _create_new(sim, receiver)
    wait(lambda: _final(receiver, task_id), what="the final callback")
    # Then no callback carries a signature header
    assert not any(name.startswith("webhook-") for headers in receiver.headers for name in headers)
    assert sim.stats()["callbacks"]["unsigned"] == 3


def test_a_webhook_secret_must_look_like_one(make_sim):
    from kling_local.sim import SimConfig
    from kling_local.sim.config import SimConfigError

    with pytest.raises(SimConfigError, match="webhook_secret"):
        SimConfig().updated({"webhook_secret": "not-whsec"})
