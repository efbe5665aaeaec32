"""Fixtures for the fal door's tests over HTTP: a fal simulator on free ports (fast), our fal client
pointed at it, and a webhook receiver that keeps what it was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from kling_local.fal_sim import FalSimConfig, FalSimulator
from kling_pipeline.adapters.fal_client import FalClient
from kling_pipeline.adapters.fal_signatures import FalWebhookVerifier

T = TypeVar("T")
KEY = "fal-test-key"
V3_PRO_T2V = "fal-ai/kling-video/v3/pro/text-to-video"
# A 30-60 s generation takes 30-60 ms.
FAST: dict[str, Any] = {"api_key": KEY, "speed": 1000.0, "generation_min_s": 30.0, "generation_max_s": 60.0, "seed": 7}


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Our callback endpoint, as fal sees it: answers 200 and keeps every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(Delivery(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def url(self, job_id: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/callbacks/{job_id}?token=secret-{job_id}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sim() -> Iterator[FalSimulator]:
    with FalSimulator(FalSimConfig(**FAST)) as simulator:
        yield simulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def verifier(sim: FalSimulator) -> FalWebhookVerifier:
    return FalWebhookVerifier(sim.jwks_url)


@pytest.fixture
def client(sim: FalSimulator, verifier: FalWebhookVerifier) -> Iterator[FalClient]:
    fal = FalClient(KEY, queue_base_url=sim.base_url, timeout_s=5.0, result_retention_s=3 * 24 * 3600, verify=verifier)
    yield fal
    fal.close()
