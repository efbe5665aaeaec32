"""Fixtures for the simulator's tests: simulators on free ports, a signed API client, a callback
receiver, and a polling helper with a generous deadline (the suite runs on loaded 2-core CI)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from kling_local.sim import KlingSimulator, SimConfig, make_token

AK = "test-access-key"
SK = "test-secret-key-never-echoed-0123456789abcdef"
TERMINAL = ("succeed", "failed")
T = TypeVar("T")
# Building an SSL context costs ~50 ms; clients here only talk plain HTTP, so share one.
SSL_CONTEXT = ssl.create_default_context()

# Fast by default: a 30-60 s generation takes 30-60 ms.
FAST: dict[str, Any] = {
    "speed": 1000.0,
    "generation_min_s": 30.0,
    "generation_max_s": 60.0,
    "seed": 1234,
    "concurrency_limit": 0,
    "video_size_bytes": 4096,
}


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.02, what: str = "") -> T:
    """Poll until `predicate()` is truthy; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Api:
    """Raw httpx against the simulator, with a valid Kling JWT."""

    def __init__(self, sim: KlingSimulator, access_key: str = AK, secret_key: str = SK) -> None:
        self.sim = sim
        self.http = httpx.Client(
            base_url=sim.base_url,
            headers={"Authorization": f"Bearer {make_token(access_key, secret_key)}"},
            timeout=10.0,
            verify=SSL_CONTEXT,
        )

    def create(self, kind: str = "text2video", body: dict[str, Any] | None = None, **fields: Any) -> httpx.Response:
        payload = {"prompt": "a red fox running through snow"} if kind == "text2video" else {}
        payload.update(body or {})
        payload.update(fields)
        return self.http.post(f"/v1/videos/{kind}", json=payload)

    def create_ok(self, kind: str = "text2video", body: dict[str, Any] | None = None, **fields: Any) -> str:
        response = self.create(kind, body, **fields)
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["task_id"]
        return task_id

    def get(self, kind: str, task_id: str) -> httpx.Response:
        return self.http.get(f"/v1/videos/{kind}/{task_id}")

    def task(self, kind: str, task_id: str) -> dict[str, Any]:
        response = self.get(kind, task_id)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def wait_terminal(self, kind: str, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            data = self.task(kind, task_id)
            return data if data["task_status"] in TERMINAL else None

        return wait_until(done, timeout, what=f"task {task_id} to end")

    def close(self) -> None:
        self.http.close()


class CallbackReceiver:
    """A tiny HTTP server on 127.0.0.1 that records every callback POST."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []  # lower-cased names
        self.status = 200
        self.delay_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.raw.append(body)
                    receiver.paths.append(self.path)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.received.append(json.loads(body))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callbacks/job-1?token=abc"

    def for_task(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for body in self.received if body.get("task_id") == task_id]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Plain `pytest` skips this directory's slow tests; `-m slow` (make test-slow) runs them."""
    if config.getoption("-m"):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., KlingSimulator]]:
    """Start simulators with FAST defaults plus the given knobs; all are stopped afterwards."""
    sims: list[KlingSimulator] = []

    def make(**knobs: Any) -> KlingSimulator:
        config = SimConfig(access_key=AK, secret_key=SK, **{**FAST, **knobs})
        sim = KlingSimulator(config).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., KlingSimulator]) -> KlingSimulator:
    return make_sim()


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    apis: list[Api] = []

    def make(sim: KlingSimulator, access_key: str = AK, secret_key: str = SK) -> Api:
        api = Api(sim, access_key, secret_key)
        apis.append(api)
        return api

    yield make
    for api in apis:
        api.close()


@pytest.fixture
def api(sim: KlingSimulator, make_api: Callable[..., Api]) -> Api:
    return make_api(sim)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    rec = CallbackReceiver()
    yield rec
    rec.close()


@pytest.fixture
def wait() -> Callable[..., Any]:
    """`wait(predicate, timeout=15, what=...)`: poll with a generous deadline."""
    return wait_until
