"""A hostile HTTP server for tests and the chaos suite: it answers, but one byte at a time.

Each connection's request is read whole, then the answer is sent a byte every `interval_s`: from the
status line on (`phase="status"`), after the status line (`"headers"`) or after the headers
(`"body"`). Every byte comes well within any per-read timeout, so only a total deadline ends the
exchange. A connection is dripped for at most `max_s` and then closed, so a client without a deadline
is held that long (and a test of one still ends).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Literal

Phase = Literal["status", "headers", "body"]
PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (640).to_bytes(4, "big") + (480).to_bytes(4, "big")


class DripServer:
    def __init__(
        self,
        *,
        phase: Phase = "status",
        interval_s: float = 0.2,
        max_s: float = 30.0,
        status: str = "200 OK",
        content_type: str = "image/png",
        body: bytes = PNG_HEAD + b"\x08\x02\x00\x00\x00" + b"\x00" * 64,
    ) -> None:
        self.phase = phase
        self.interval_s = interval_s
        self.max_s = max_s
        self._head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        self._body = body
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, name="drip-server", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> DripServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> DripServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), name="drip-conn", daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        started = time.monotonic()
        answer = self._head + self._body
        at_once = {"status": 0, "headers": self._head.index(b"\r\n") + 2, "body": len(self._head)}[self.phase]
        try:
            conn.settimeout(5.0)
            _read_request(conn)
            conn.sendall(answer[:at_once])
            for i in range(at_once, len(answer)):
                if self._stopped.is_set() or time.monotonic() - started > self.max_s:
                    break
                conn.sendall(answer[i : i + 1])
                time.sleep(self.interval_s)
        except OSError:
            pass
        finally:
            conn.close()


def _read_request(conn: socket.socket) -> None:
    """The request line, headers and (with Content-Length) body: the client has sent it all."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        rest += chunk
