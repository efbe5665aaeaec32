"""The HTTP plumbing the Replicate and AceData simulators share (replicate_sim/, acedata_sim/): a threading
server that can cut its open connections, a handler base with JSON answers, a dropped answer, the media
host's ranged video, and starting/stopping an API server and a media server in threads. The fal
simulator's servers (fal_sim/server.py) stand on the same server and handler."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kling_local.sim.cdn import base_url
from kling_local.sim.media import iter_video

log = logging.getLogger("kling_local.sim_http")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_BODY = 1024 * 1024


class Drop(Exception):
    """Cut the connection without an answer."""


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], role: str, state: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.role = role
        self.state = state
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class SimHandler(BaseHTTPRequestHandler):
    """Dispatches to `api(method)` or `media(method)` by the server's role; JSON helpers."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 600
    disable_nagle_algorithm = True
    server: SimHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def api(self, method: str) -> None:
        raise NotImplementedError

    def media(self, method: str) -> None:
        raise NotImplementedError

    def _dispatch(self, method: str) -> None:
        try:
            if self.server.role == "media":
                self.media(method)
            else:
                self.api(method)
        except Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("unexpected error handling %s %s", method, self.path.split("?")[0])
            self.json(500, {"detail": "Internal Server Error"})

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise Drop
        return self.rfile.read(length) if length else b""

    def json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.raw(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers)

    def raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def video(self, method: str, seed: str, total: int) -> None:
        """A synthetic MP4 of `total` bytes for `seed`, with HEAD and Range (as the Kling simulator's CDN)."""
        start, end, status = 0, total, 200
        ranged = RANGE.match(self.headers.get("Range", ""))
        if ranged and (ranged.group(1) or ranged.group(2)):
            if ranged.group(1):
                start = int(ranged.group(1))
                end = min(total, int(ranged.group(2)) + 1) if ranged.group(2) else total
            else:
                start = max(0, total - int(ranged.group(2)))
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(max(end - start, 0)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{total}")
        self.end_headers()
        if method == "HEAD":
            return
        for chunk in iter_video(seed, total, start, end):
            self.wfile.write(chunk)


class ServerPair:
    """An API server and a media server over one state, each in a thread, on free ports unless given."""

    def __init__(
        self,
        name: str,
        state: Any,
        handler: type[BaseHTTPRequestHandler],
        host: str,
        ports: tuple[int, int],
        on_start: Callable[[str, str], None],
    ) -> None:
        self.name = name
        self.host = host
        self._servers: list[SimHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._state = state
        self._handler = handler
        self._ports = ports
        self._on_start = on_start

    def start(self) -> None:
        api = SimHTTPServer((self.host, self._ports[0]), "api", self._state, self._handler)
        try:
            media = SimHTTPServer((self.host, self._ports[1]), "media", self._state, self._handler)
        except OSError:
            api.server_close()
            raise
        self._servers = [api, media]
        self._on_start(
            base_url(self.host, int(api.server_address[1])), base_url(self.host, int(media.server_address[1]))
        )
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"{self.name}-{server.role}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=2.0)


def knob_options(parser: Any, model: Any, skip: tuple[str, ...]) -> None:
    """One `--knob-name` option per scalar field of a simulator's config model."""
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind = int if name == "seed" else info.annotation if info.annotation in (int, float, str) else str
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
