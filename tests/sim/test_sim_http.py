"""HTTP robustness (malformed, oversized, unknown, wrong method, 1,000 concurrent requests), the
/_sim endpoints and the Python API's lifecycle."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from kling_local.sim import KlingSimulator, SimConfig, SimConfigError, make_token


def _raw(sim, request: bytes, port: int | None = None) -> tuple[int, bytes]:
    """Send bytes on a fresh socket; return the HTTP status and the body."""
    with socket.create_connection(("127.0.0.1", port or sim.port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def _kling_error(response: httpx.Response, status: int, code: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["message"]
    assert body["request_id"]
    assert "Traceback" not in response.text
    return body


def test_malformed_json_is_1200(api):
    response = api.http.post(
        "/v1/videos/text2video", content=b'{"prompt": "unterminated', headers={"Content-Type": "application/json"}
    )
    assert "JSON" in _kling_error(response, 400, 1200)["message"]


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"[1, 2]", b'"prompt"', b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe\x00garbage"]
)
def test_bodies_that_are_not_an_object_are_1200(api, body):
    response = api.http.post("/v1/videos/text2video", content=body, headers={"Content-Type": "application/json"})
    _kling_error(response, 400, 1200)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_1200(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.http.post("/v1/videos/text2video", content=json.dumps({"prompt": "p"}).encode(), headers=headers)
    assert "Content-Type" in _kling_error(response, 400, 1200)["message"]


def test_content_type_with_charset_is_fine(api):
    response = api.http.post(
        "/v1/videos/text2video",
        content=json.dumps({"prompt": "p"}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def test_oversized_body_is_413(api, sim):
    sim.configure(max_body_bytes=2048)
    response = api.http.post("/v1/videos/text2video", json={"prompt": "x" * 4000})
    _kling_error(response, 413, 1200)
    assert api.http.get("/v1/videos/text2video").status_code == 200


def test_oversized_content_length_is_refused_without_reading(sim):
    token = make_token(sim.config.access_key, sim.config.secret_key)
    request = (
        b"POST /v1/videos/text2video HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 30000000\r\n\r\n{"
    )
    status, body = _raw(sim, request)
    assert status == 413
    assert json.loads(body)["code"] == 1200


def test_chunked_bodies_are_read(api, sim):
    def chunks():
        yield b'{"prompt": '
        yield b'"chunked"}'

    response = api.http.post("/v1/videos/text2video", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    sim.configure(max_body_bytes=1024)
    big = api.http.post(
        "/v1/videos/text2video", content=iter([b"x" * 800, b"x" * 800]), headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/videos/text3video", 404, 1203),
        ("GET", "/v1/images/generations", 404, 1203),
        ("GET", "/v1/videos/text2video/a/b", 404, 1203),
        ("GET", "/", 404, 1203),
        ("GET", "/_sim/nothing", 404, 1203),
        ("DELETE", "/v1/videos/text2video/123", 404, 1202),
        ("PUT", "/v1/videos/text2video", 404, 1202),
        ("PATCH", "/v1/videos/image2video/1", 404, 1202),
        ("POST", "/v1/videos/text2video/123", 404, 1202),
        ("GET", "/_sim/reset", 404, 1202),
    ],
)
def test_unknown_paths_and_wrong_methods(api, method, path, status, code):
    _kling_error(api.http.request(method, path), status, code)


def test_garbage_request_lines_get_a_json_error(sim):
    status, body = _raw(sim, b"GARBAGE\r\n\r\n")
    assert status == 400
    assert json.loads(body)["code"] == 1200
    status, body = _raw(sim, b"BREW /v1/videos/text2video HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501
    assert json.loads(body)["code"] == 1202


def test_the_server_survives_abuse(api, sim):
    with socket.create_connection(("127.0.0.1", sim.port)) as conn:
        conn.sendall(b"POST /v1/videos/text2video HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # then hang up
    with socket.create_connection(("127.0.0.1", sim.cdn_port)) as conn:
        conn.sendall(b"\x16\x03\x01\x00\xa5\x01\x00")  # a TLS hello on plain HTTP
    assert api.http.get("/v1/videos/text2video").status_code == 200
    assert httpx.get(f"{sim.base_url}/_sim/health", timeout=10).status_code == 200


def test_a_thousand_concurrent_requests(make_sim):
    """1,000 connections open at once, each sends one request; every one gets a right answer."""
    sim = make_sim()
    token = make_token(sim.config.access_key, sim.config.secret_key)
    request = (
        f"GET /v1/videos/text2video?pageSize=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def main() -> list[bytes]:
        conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", sim.port) for _ in range(1000)))

        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
            writer.write(request)
            await writer.drain()
            data = await reader.read()
            writer.close()
            return data

        return await asyncio.wait_for(asyncio.gather(*(one(r, w) for r, w in conns)), timeout=120)

    answers = asyncio.run(main())
    assert len(answers) == 1000
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        assert json.loads(body)["code"] == 0
    assert sim.stats()["calls"]["GET text2video list"] == 1000


# -- /_sim ---------------------------------------------------------------------------------------


def test_sim_config_get_and_partial_post(sim):
    response = httpx.post(f"{sim.base_url}/_sim/config", json={"fail_rate": 0.25, "speed": 10}, timeout=10)
    assert response.status_code == 200
    assert response.json()["fail_rate"] == 0.25
    current = httpx.get(f"{sim.base_url}/_sim/config", timeout=10).json()
    assert current["fail_rate"] == 0.25
    assert current["speed"] == 10.0
    assert current["reject_marker"] == "[[reject]]"
    assert sim.config.fail_rate == 0.25


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"no_such_knob": 1}, "no_such_knob"),
        ({"fail_rate": 2}, "fail_rate"),
        ({"speed": 0}, "speed"),
        ({"cdn_body": "gif"}, "cdn_body"),
        ({"generation_min_s": 10, "generation_max_s": 5}, "generation_max_s"),
        ({"force_create_errors": [0]}, "force_create_errors"),
    ],
)
def test_sim_config_refuses_bad_knobs(sim, knobs, named):
    response = httpx.post(f"{sim.base_url}/_sim/config", json=knobs, timeout=10)
    body = _kling_error(response, 400, 1201)
    assert named in body["message"]
    with pytest.raises(SimConfigError, match=named):
        sim.configure(**knobs)
    assert sim.config.fail_rate == 0.0


def test_sim_config_needs_an_object(sim):
    _kling_error(httpx.post(f"{sim.base_url}/_sim/config", json=[1], timeout=10), 400, 1200)
    _kling_error(httpx.post(f"{sim.base_url}/_sim/config", content=b"{", timeout=10), 400, 1200)


def test_sim_reset_clears_tasks_and_stats_but_keeps_knobs(api, sim, receiver, wait):
    sim.configure(fail_rate=0.0, concurrency_limit=9)
    task_id = api.create_ok(external_task_id="before-reset", callback_url=receiver.url)
    api.wait_terminal("text2video", task_id)
    assert httpx.post(f"{sim.base_url}/_sim/reset", timeout=10).json() == {"ok": True}
    stats = sim.stats()
    assert stats["tasks_total"] == 0
    assert stats["calls"] == {}
    assert stats["creates"]["accepted"] == 0
    assert stats["units_charged_total"] == 0
    assert api.get("text2video", task_id).status_code == 404
    # The external id is free again, and knobs survived.
    api.create_ok(external_task_id="before-reset")
    assert sim.config.concurrency_limit == 9


def test_stats_report_everything_promised(api, sim, receiver, wait):
    task_id = api.create_ok(callback_url=receiver.url, external_task_id="s-1")
    api.create(prompt="")
    api.wait_terminal("text2video", task_id)
    wait(lambda: sim.stats()["callbacks"]["delivered"] == 3)
    httpx.get(api.task("text2video", task_id)["task_result"]["videos"][0]["url"], timeout=10)
    over_http = httpx.get(f"{sim.base_url}/_sim/stats", timeout=10).json()
    stats = sim.stats()
    assert over_http.keys() == stats.keys()
    assert stats["calls"]["POST text2video"] == 2
    assert stats["calls"]["GET text2video/{id}"] >= 1
    assert stats["gets_per_task"][task_id] >= 1
    assert stats["create_attempts_by_external_task_id"] == {"s-1": 1}
    assert stats["tasks_by_external_task_id"] == {"s-1": 1}
    assert stats["creates"] == {"accepted": 1, "refused": 1, "refused_by_code": {"1201": 1}}
    assert stats["errors_by_code"] == {"1201": 1}
    assert stats["callbacks"]["sent"] == 3 and stats["callbacks"]["delivered"] == 3
    assert stats["units_charged_total"] == 1.0
    assert stats["concurrency"]["high_water"] == 1
    assert stats["tasks_by_status"] == {"submitted": 0, "processing": 0, "succeed": 1, "failed": 0}
    assert stats["cdn"]["downloads_started"] == 1 and stats["cdn"]["downloads_completed"] == 1
    json.dumps(stats)  # JSON-ready


# -- the Python API ------------------------------------------------------------------------------


def test_start_returns_listening_and_stop_is_idempotent():
    sim = KlingSimulator(SimConfig(seed=1))
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.start()
    port, cdn_port = sim.port, sim.cdn_port
    assert port != cdn_port
    assert httpx.get(f"{sim.base_url}/_sim/health", timeout=10).status_code == 200
    assert sim.base_url == f"http://127.0.0.1:{port}"
    assert sim.cdn_base_url == f"http://127.0.0.1:{cdn_port}"
    sim.stop()
    sim.stop()
    for p in (port, cdn_port):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", p), timeout=2):
            pass


def test_stop_does_not_hang_on_open_connections():
    sim = KlingSimulator(SimConfig(slow_rate=1.0, slow_s=30.0)).start()
    token = make_token(sim.config.access_key, sim.config.secret_key)
    outcome: list[str] = []

    def slow_request() -> None:
        try:
            httpx.get(f"{sim.base_url}/v1/videos/text2video", headers={"Authorization": f"Bearer {token}"}, timeout=60)
            outcome.append("answered")
        except httpx.TransportError:
            outcome.append("cut")

    idle = socket.create_connection(("127.0.0.1", sim.port))
    busy = threading.Thread(target=slow_request, daemon=True)
    busy.start()
    wait_deadline = time.monotonic() + 10
    while sim.stats()["faults"].get("slow", 0) < 1 and time.monotonic() < wait_deadline:
        time.sleep(0.02)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 10
    busy.join(timeout=20)
    assert not busy.is_alive()
    assert outcome  # the 30 s response did not hold up stop()
    idle.close()


def test_stop_before_start_is_harmless():
    KlingSimulator().stop()


def test_fixed_ports_are_honoured(make_sim):
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = (a.getsockname()[1], b.getsockname()[1])
    with KlingSimulator(SimConfig(), port=ports[0], cdn_port=ports[1]) as sim:
        assert (sim.port, sim.cdn_port) == ports
