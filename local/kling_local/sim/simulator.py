"""`KlingSimulator`: the API server, the CDN server, the scheduler and callback workers as one
object that starts on free ports in threads and stops cleanly (tests, benches, the CLI)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

from kling_local.sim.cdn import base_url as _base_url
from kling_local.sim.config import SimConfig
from kling_local.sim.server import SimHTTPServer
from kling_local.sim.state import CreateHook, SimState


def _wake(server: SimHTTPServer) -> None:
    """Connect once so a serve loop blocked in select() notices shutdown now, not at its next poll."""
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", ""):  # noqa: S104 - a comparison, not a bind
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    with contextlib.suppress(OSError), socket.create_connection((str(host), int(port)), timeout=0.5):
        pass


class KlingSimulator:
    """A Kling look-alike on `host:port` (API) and `host:cdn_port` (result videos); 0 = a free port."""

    def __init__(
        self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, cdn_port: int = 0
    ) -> None:
        self.host = host
        self._requested = (port, cdn_port)
        self.state = SimState(config or SimConfig())
        self._stopping = threading.Event()
        self._servers: list[SimHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> KlingSimulator:
        """Bind both ports and serve; returns once both servers are listening."""
        with self._lock:
            if self._started:
                return self
            api = SimHTTPServer((self.host, self._requested[0]), "api", self.state, self._stopping)
            try:
                cdn = SimHTTPServer((self.host, self._requested[1]), "cdn", self.state, self._stopping)
            except OSError:
                api.server_close()
                raise
            self._servers = [api, cdn]
            self.state.cdn_address = (self.host, int(cdn.server_address[1]))
            self.state.start()
            for server in self._servers:
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.5},
                    name=f"kling-sim-{server.role}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            self._started = True
        return self

    def stop(self) -> None:
        """Stop servers, scheduler and callback workers; safe to call twice."""
        with self._lock:
            if not self._started or self._stopped:
                self._stopped = True
                return
            self._stopped = True
            self._stopping.set()
            # shutdown() waits for the serve loop's next poll: stop both loops in parallel.
            stoppers = [threading.Thread(target=server.shutdown, daemon=True) for server in self._servers]
            for stopper in stoppers:
                stopper.start()
            for server in self._servers:
                _wake(server)
            for stopper in stoppers:
                stopper.join(timeout=5.0)
            for server in self._servers:
                server.close_connections()
                server.server_close()
            for thread in self._threads:
                thread.join(timeout=2.0)
            self.state.stop()

    def __enter__(self) -> KlingSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._require()[0].server_address[1])

    @property
    def cdn_port(self) -> int:
        return int(self._require()[1].server_address[1])

    @property
    def base_url(self) -> str:
        """The API base; clients append /v1/videos/..."""
        return _base_url(self.host, self.port)

    @property
    def cdn_base_url(self) -> str:
        """Where result videos live (a separate port); host from `cdn_host` when set."""
        self._require()
        return self.state.cdn_base_url()

    def _require(self) -> list[SimHTTPServer]:
        if not self._servers:
            raise RuntimeError("the simulator is not started; call start() first")
        return self._servers

    # -- knobs and inspection --------------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        return self.state.config

    def configure(self, **knobs: Any) -> SimConfig:
        """Change knobs at runtime (same as POST /_sim/config); returns the new config."""
        return self.state.configure(knobs)

    def stats(self) -> dict[str, Any]:
        """Same dict as GET /_sim/stats."""
        return self.state.stats()

    def reset(self) -> None:
        """Forget tasks and counters (same as POST /_sim/reset); knobs stay."""
        self.state.reset()

    def on_create(self, hook: CreateHook) -> None:
        """Call `hook(answer_data, client_address)` after every accepted create, before it is answered."""
        self.state.create_hooks.append(hook)

    def callback_url(self, task_id: str) -> str | None:
        """The callback URL a task was created with (what Kling holds)."""
        return self.state.callback_url(task_id)

    def task_object(self, task_id: str) -> dict[str, Any] | None:
        """The task as a query answers it (not counted as a call)."""
        return self.state.task_object(task_id)

    def video_sha256(self, task_id: str) -> str | None:
        """SHA-256 of the video a succeeded task serves."""
        return self.state.video_sha256(task_id)
