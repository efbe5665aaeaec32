"""`FalSimulator`: the queue API server, the media server, the scheduler and the webhook sender as one
object that starts on free ports in threads and stops cleanly (tests, the CLI, later the local stack)."""

from __future__ import annotations

import hashlib
import threading
from types import TracebackType
from typing import Any

from kling_local.fal_sim.config import FalSimConfig
from kling_local.fal_sim.server import JWKS_PATH, FalHTTPServer
from kling_local.fal_sim.state import FalState
from kling_local.sim.cdn import base_url
from kling_local.sim.media import video_sha256


class FalSimulator:
    """A fal.ai look-alike on `host:port` (queue API, JWKS) and `host:media_port` (result videos)."""

    def __init__(
        self, config: FalSimConfig | None = None, host: str = "127.0.0.1", port: int = 0, media_port: int = 0
    ) -> None:
        self.host = host
        self._requested = (port, media_port)
        self.state = FalState(config or FalSimConfig())
        self._servers: list[FalHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._started = self._stopped = False

    def start(self) -> FalSimulator:
        with self._lock:
            if self._started:
                return self
            api = FalHTTPServer((self.host, self._requested[0]), "api", self.state)
            try:
                media = FalHTTPServer((self.host, self._requested[1]), "media", self.state)
            except OSError:
                api.server_close()
                raise
            self._servers = [api, media]
            self.state.base_url = base_url(self.host, int(api.server_address[1]))
            self.state.media_base_url = base_url(self.host, int(media.server_address[1]))
            self.state.start()
            for server in self._servers:
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.2},
                    name=f"fal-sim-{server.role}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            self._started = True
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._started or self._stopped:
                self._stopped = True
                return
            self._stopped = True
            for server in self._servers:
                server.shutdown()
                server.close_connections()
                server.server_close()
            for thread in self._threads:
                thread.join(timeout=2.0)
            self.state.stop()

    def __enter__(self) -> FalSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The queue base: clients POST `<base_url>/<model id>`."""
        return self.state.base_url

    @property
    def media_base_url(self) -> str:
        return self.state.media_base_url

    @property
    def jwks_url(self) -> str:
        return f"{self.state.base_url}{JWKS_PATH}"

    @property
    def config(self) -> FalSimConfig:
        return self.state.config

    def configure(self, **knobs: Any) -> FalSimConfig:
        """Change knobs at runtime (same as POST /_sim/config)."""
        return self.state.configure(knobs)

    def stats(self) -> dict[str, Any]:
        """Same dict as GET /_sim/stats."""
        return self.state.stats()

    def reset(self) -> None:
        self.state.reset()

    def finish_running(self) -> int:
        """Every running request ends now; how many there were."""
        return self.state.finish_running()

    def outcomes_by_webhook(self) -> dict[str, list[dict[str, Any]]]:
        """Each job's requests, by its webhook URL's path (FalState.outcomes_by_webhook)."""
        return self.state.outcomes_by_webhook()

    def video_sha256(self, request_id: str) -> str | None:
        """SHA-256 of the video a completed request's result URL serves (None: it made no video)."""
        with self.state.lock:
            request = self.state.requests.get(request_id)
            if request is None or not request.billed:
                return None
            size = self.state.config.video_size_bytes
        if size == 0:
            from kling_local.fal_sim.server import _clip
            from kling_local.sim.media import clip_mp4

            return hashlib.sha256(clip_mp4(_clip(request))).hexdigest()
        return video_sha256(request_id, size)

    def rotate_keys(self, *, keep_previous: bool = False) -> str:
        """Sign webhooks with a new key from now on; its kid."""
        return self.state.rotate_keys(keep_previous=keep_previous).kid
