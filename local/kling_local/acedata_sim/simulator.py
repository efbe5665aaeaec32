"""`AceDataSimulator`: the API server, the media server, the scheduler and the callback sender as one
object that starts on free ports in threads and stops cleanly (tests, the CLI, later the local stack)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from kling_local.acedata_sim.config import AceDataSimConfig
from kling_local.acedata_sim.server import AceDataHandler
from kling_local.acedata_sim.state import AceDataState
from kling_local.sim.media import video_sha256
from kling_local.sim_http import ServerPair


class AceDataSimulator:
    """An AceData look-alike on `host:port` (the API) and `host:media_port` (result videos)."""

    def __init__(
        self, config: AceDataSimConfig | None = None, host: str = "127.0.0.1", port: int = 0, media_port: int = 0
    ) -> None:
        self.state = AceDataState(config or AceDataSimConfig())
        self._pair = ServerPair("acedata-sim", self.state, AceDataHandler, host, (port, media_port), self._bound)
        self._lock = threading.Lock()
        self._started = self._stopped = False

    def _bound(self, api: str, media: str) -> None:
        self.state.base_url, self.state.media_base_url = api, media

    def start(self) -> AceDataSimulator:
        with self._lock:
            if not self._started:
                self._pair.start()
                self.state.start()
                self._started = True
        return self

    def stop(self) -> None:
        with self._lock:
            if self._started and not self._stopped:
                self._pair.stop()
                self.state.stop()
            self._stopped = True

    def __enter__(self) -> AceDataSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The API base: clients POST `<base_url>/kling/videos` and `<base_url>/kling/tasks`."""
        return self.state.base_url

    @property
    def media_base_url(self) -> str:
        return self.state.media_base_url

    def configure(self, **knobs: Any) -> AceDataSimConfig:
        """Change knobs at runtime (same as POST /_sim/config)."""
        return self.state.configure(knobs)

    def stats(self) -> dict[str, Any]:
        """Same dict as GET /_sim/stats."""
        return self.state.stats()

    def reset(self) -> None:
        self.state.reset()

    def outcomes_by_callback(self) -> dict[str, list[dict[str, Any]]]:
        """Each job's tasks, by its callback URL's path (AceDataState.outcomes_by_callback)."""
        return self.state.outcomes_by_callback()

    def video_sha256(self, task_id: str) -> str | None:
        """SHA-256 of the video a succeeded task's URL serves (None: it made no video)."""
        with self.state.lock:
            task = self.state.tasks.get(task_id)
            if task is None or task.state != "succeed":
                return None
            size = self.state.config.video_size_bytes
        return video_sha256(task_id, size)
