"""Kling's JWT rules, code by code (all HTTP 401), and that no key ever leaks into an answer."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from kling_local.sim import make_token


def _list(sim, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(f"{sim.base_url}/v1/videos/text2video", headers=headers, timeout=10)


def _token(sim, **kwargs) -> str:
    return make_token(sim.config.access_key, sim.config.secret_key, **kwargs)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_is_accepted(sim):
    response = _list(sim, f"Bearer {_token(sim)}")
    assert response.status_code == 200
    assert response.json()["code"] == 0
    assert response.json()["data"] == []


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 1001),
        ("", 1001),
        ("Bearer", 1002),
        ("Basic dXNlcjpwYXNz", 1002),
        ("bearer {token}", 1002),
        ("Bearer not-a-jwt", 1002),
        ("Bearer a.b.c", 1002),
        ("Bearer " + _b64({"alg": "HS256"}) + "." + "%%%" + ".sig", 1002),
        ("Bearer {token}x", 1000),
    ],
    ids=[
        "missing",
        "empty",
        "bearer-only",
        "basic",
        "lowercase-bearer",
        "not-jwt",
        "garbage-parts",
        "bad-b64",
        "bad-sig",
    ],
)
def test_malformed_or_missing_authorization(sim, authorization, code):
    if authorization is not None:
        authorization = authorization.replace("{token}", _token(sim))
    response = _list(sim, authorization)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == code
    assert body["request_id"]
    assert "data" not in body


def test_wrong_secret_is_1000(sim):
    token = make_token(sim.config.access_key, "some-other-secret")
    response = _list(sim, f"Bearer {token}")
    assert (response.status_code, response.json()["code"]) == (401, 1000)


def test_wrong_issuer_is_1000(sim):
    token = make_token("unknown-access-key", sim.config.secret_key)
    response = _list(sim, f"Bearer {token}")
    assert (response.status_code, response.json()["code"]) == (401, 1000)


def test_alg_none_is_refused(sim):
    header = _b64({"alg": "none", "typ": "JWT"})
    claims = _b64({"iss": sim.config.access_key, "exp": int(time.time()) + 600})
    response = _list(sim, f"Bearer {header}.{claims}.")
    assert response.status_code == 401
    assert response.json()["code"] in (1000, 1002)


def test_token_not_yet_valid_is_1003(sim):
    token = _token(sim, nbf_offset_s=600)
    response = _list(sim, f"Bearer {token}")
    assert (response.status_code, response.json()["code"]) == (401, 1003)


def test_expired_token_is_1004(sim):
    token = _token(sim, now=time.time() - 3600, lifetime_s=1800)
    response = _list(sim, f"Bearer {token}")
    assert (response.status_code, response.json()["code"]) == (401, 1004)


def test_auth_is_checked_on_creates_too(sim):
    response = httpx.post(f"{sim.base_url}/v1/videos/text2video", json={"prompt": "x"}, timeout=10)
    assert (response.status_code, response.json()["code"]) == (401, 1001)
    assert sim.stats()["creates"]["accepted"] == 0


def test_no_answer_ever_contains_the_secret(sim):
    secret = sim.config.secret_key
    answers = [
        _list(sim, None),
        _list(sim, "Bearer x.y.z"),
        _list(sim, f"Bearer {make_token(sim.config.access_key, 'wrong')}"),
        _list(sim, f"Bearer {_token(sim, nbf_offset_s=600)}"),
        httpx.get(f"{sim.base_url}/_sim/config", timeout=10),
        httpx.get(f"{sim.base_url}/_sim/stats", timeout=10),
        httpx.post(f"{sim.base_url}/_sim/config", json={"secret_key": ""}, timeout=10),
    ]
    for response in answers:
        assert secret not in response.text
    assert "secret_key" not in httpx.get(f"{sim.base_url}/_sim/config", timeout=10).json()


def test_sim_endpoints_need_no_jwt(sim):
    assert httpx.get(f"{sim.base_url}/_sim/stats", timeout=10).status_code == 200
    assert httpx.get(f"{sim.base_url}/_sim/health", timeout=10).json() == {"ok": True}


def test_extra_accounts_authenticate_and_have_their_own_tasks(make_sim, make_api):
    sim = make_sim(
        extra_accounts={"second-ak": "second-sk"}, concurrency_limit=1, generation_min_s=60000, generation_max_s=60000
    )
    first = make_api(sim)
    second = make_api(sim, "second-ak", "second-sk")
    task_id = first.create_ok()
    # Concurrency is per account: the second account still has its slot.
    assert first.create().json()["code"] == 1303
    second.create_ok()
    # Tasks are private to their account.
    assert second.get("text2video", task_id).status_code == 404
    assert len(second.http.get("/v1/videos/text2video").json()["data"]) == 1
