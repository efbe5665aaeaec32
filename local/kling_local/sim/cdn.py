"""The simulated CDN: result URLs signed with a key of this simulator's (`pkey`: expiry and an HMAC), what a
GET of one is answered, and the CDN's counts. Not locked itself: SimState holds its lock around every call."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from kling_local.sim.config import SimConfig
from kling_local.sim.faults import FaultDice
from kling_local.sim.media import ClipSpec
from kling_local.sim.tasks import Task, _ms

CDN_PID = "112757"
COUNTED = (
    "requests",
    "downloads_started",
    "downloads_completed",
    "downloads_dropped",
    "downloads_aborted",
    "bytes_sent",
    "refused",
    "redirected",
    "not_ready",
)


@dataclass(frozen=True)
class CdnObject:
    """A result video the CDN can serve."""

    seed: str
    size: int
    clip: ClipSpec | None = None  # served as a real MP4 (its size is known once it is made)


class CdnRefusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class Cdn:
    """Signs result URLs and resolves them back to a succeeded task's video."""

    def __init__(self, url_key: bytes) -> None:
        self._url_key = url_key
        self.clear()

    def clear(self) -> None:
        self._counts: Counter[str] = Counter()
        self._gets_per_video: Counter[str] = Counter()  # cdn_cut_first

    def video_url(self, task: Task, base: str) -> str:
        path = f"/bs2/upload-kling-api/{task.bucket}/{task.kind}/{task.task_id}-0_raw_video_1.mp4"
        assert task.expires_wall is not None
        return f"{base.rstrip('/')}{path}?x-kcdn-pid={CDN_PID}&pkey={self._pkey(path, task.expires_wall)}"

    def _pkey(self, path: str, expires_wall: float) -> str:
        expires = struct.pack(">Q", _ms(expires_wall))
        mac = hmac.new(self._url_key, path.encode() + expires, hashlib.sha256).digest()[:18]
        return _b64(expires + mac)

    def resolve(
        self, path: str, query: str, tasks: Mapping[str, Task], config: SimConfig, dice: FaultDice
    ) -> CdnObject:
        """The video behind a result URL, or CdnRefusal: 404 unknown/expired, 403 bad or missing pkey."""
        task = self._task_for_path(path, tasks)
        pkeys = parse_qs(query).get("pkey", [])
        if not pkeys:
            raise CdnRefusal(403, "missing pkey")
        try:
            raw = base64.urlsafe_b64decode(pkeys[0] + "=" * (-len(pkeys[0]) % 4))
        except ValueError:
            raise CdnRefusal(403, "malformed pkey") from None
        expires, mac = raw[:8], raw[8:]
        expected = hmac.new(self._url_key, path.encode() + expires, hashlib.sha256).digest()[:18]
        if len(expires) != 8 or not hmac.compare_digest(mac, expected):
            raise CdnRefusal(403, "bad pkey")
        (expires_ms,) = struct.unpack(">Q", expires)
        if time.time() * 1000 >= expires_ms:
            raise CdnRefusal(404, "expired: results are cleared after their lifetime")
        ended = task.ended_wall or 0.0
        if config.cdn_not_ready_s and time.time() < ended + config.cdn_not_ready_s:
            self._counts["not_ready"] += 1
            dice.record("cdn_not_ready")
            raise CdnRefusal(config.cdn_not_ready_status, "not at this edge yet")
        return CdnObject(seed=task.task_id, size=task.video_size, clip=task.clip)

    @staticmethod
    def _task_for_path(path: str, tasks: Mapping[str, Task]) -> Task:
        prefix = "/bs2/upload-kling-api/"
        suffix = "-0_raw_video_1.mp4"
        wm_suffix = "-0_raw_video_1_wm.mp4"
        if not path.startswith(prefix):
            raise CdnRefusal(404, "not found")
        parts = path[len(prefix) :].split("/")
        if len(parts) != 3:
            raise CdnRefusal(404, "not found")
        bucket, kind, name = parts
        for end in (suffix, wm_suffix):
            if name.endswith(end):
                task = tasks.get(name[: -len(end)])
                if (
                    task is not None
                    and task.status == "succeed"
                    and task.kind == kind
                    and str(task.bucket) == bucket
                    and (end == suffix or task.spec.watermark)
                ):
                    return task
        raise CdnRefusal(404, "not found")

    def cut_first(self, video: str, first: int) -> bool:
        """Whether this GET of the video is one of its first `first` (cdn_cut_first), counting it."""
        if first <= 0:
            return False
        self._gets_per_video[video] += 1
        return self._gets_per_video[video] <= first

    def record(self, event: str, amount: int = 1) -> None:
        self._counts[event] += amount

    def counts(self) -> dict[str, Any]:
        return {key: self._counts.get(key, 0) for key in COUNTED}
