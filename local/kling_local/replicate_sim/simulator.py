"""`ReplicateSimulator`: the API server, the media server, the scheduler and the webhook sender as one
object that starts on free ports in threads and stops cleanly (tests, the CLI, later the local stack)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from kling_local.replicate_sim.config import ReplicateSimConfig
from kling_local.replicate_sim.server import ReplicateHandler
from kling_local.replicate_sim.state import ReplicateState
from kling_local.sim.media import video_sha256
from kling_local.sim_http import ServerPair


class ReplicateSimulator:
    """A Replicate look-alike on `host:port` (the API) and `host:media_port` (output videos)."""

    def __init__(
        self, config: ReplicateSimConfig | None = None, host: str = "127.0.0.1", port: int = 0, media_port: int = 0
    ) -> None:
        self.state = ReplicateState(config or ReplicateSimConfig())
        self._pair = ServerPair("replicate-sim", self.state, ReplicateHandler, host, (port, media_port), self._bound)
        self._lock = threading.Lock()
        self._started = self._stopped = False

    def _bound(self, api: str, media: str) -> None:
        self.state.base_url, self.state.media_base_url = api, media

    def start(self) -> ReplicateSimulator:
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

    def __enter__(self) -> ReplicateSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The API base: clients call `<base_url>/v1/...`."""
        return self.state.base_url

    @property
    def media_base_url(self) -> str:
        return self.state.media_base_url

    @property
    def webhook_secret(self) -> str:
        return self.state.config.webhook_secret

    def configure(self, **knobs: Any) -> ReplicateSimConfig:
        """Change knobs at runtime (same as POST /_sim/config)."""
        return self.state.configure(knobs)

    def stats(self) -> dict[str, Any]:
        """Same dict as GET /_sim/stats."""
        return self.state.stats()

    def reset(self) -> None:
        self.state.reset()

    def outcomes_by_webhook(self) -> dict[str, list[dict[str, Any]]]:
        """Each job's predictions, by its webhook URL's path (ReplicateState.outcomes_by_webhook)."""
        return self.state.outcomes_by_webhook()

    def video_sha256(self, prediction_id: str) -> str | None:
        """SHA-256 of the video a succeeded prediction's output served (None: it made no video)."""
        with self.state.lock:
            prediction = self.state.predictions.get(prediction_id)
            if prediction is None or prediction.status != "succeeded":
                return None
            size = self.state.config.video_size_bytes
        return video_sha256(prediction_id, size)
