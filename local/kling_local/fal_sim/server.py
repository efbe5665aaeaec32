"""The fal simulator's HTTP servers: the queue API (with its JWKS and `/_sim/*`) and the media host.

Queue routes, as fal's (docs/fal-contract.md, "Queue: create, status, result, cancel"):
- `POST /<model id>?fal_webhook=<url>` -> `{request_id, status_url, response_url, cancel_url, queue_position}`
  (`X-Fal-Object-Lifecycle-Preference` sets the result's lifetime); an unknown model id is 404.
- `GET /<owner>/<app>/requests/<id>/status` -> `{status: IN_QUEUE | IN_PROGRESS | COMPLETED, queue_position}`.
- `GET /<owner>/<app>/requests/<id>` -> the result: 200 `{video: {url, ...}}`, 422 `{detail}`, 504, or 400
  while the request runs.
- `PUT /<owner>/<app>/requests/<id>/cancel` -> 202 / 400 / 404.
- `GET /.well-known/jwks.json`: the keys the webhooks are signed with.
Every queue route takes `Authorization: Key <api_key>` (401 otherwise). The media host serves
`/files/<id>/output.mp4` (404 once the retention has passed), with HEAD and Range.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kling_local.fal_sim.config import FalSimConfigError
from kling_local.fal_sim.state import FalRequest, FalState
from kling_local.sim.media import ClipSpec, clip_mp4, iter_video
from kling_local.sim_http import RANGE, Drop, SimHandler, SimHTTPServer

log = logging.getLogger("kling_local.fal_sim.server")
_REQUEST = re.compile(r"^/([^/]+/[^/]+)/requests/([0-9a-fA-F-]{8,64})(/status|/cancel)?/?$")
_MEDIA = re.compile(r"^/files/([0-9a-fA-F-]{8,64})/output\.mp4$")
JWKS_PATH = "/.well-known/jwks.json"


class FalHTTPServer(SimHTTPServer):
    def __init__(self, address: tuple[str, int], role: str, state: FalState) -> None:
        super().__init__(address, role, state, _Handler)


class _Handler(SimHandler):
    server_version = "fal-sim"
    timeout = 60
    server: FalHTTPServer

    # -- the queue API ----------------------------------------------------------------------------

    def api(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        path = url.path
        body = self.body()
        if path == JWKS_PATH and method == "GET":
            return self.raw(200, state.jwks(), "application/json")
        if path.startswith("/_sim/"):
            return self._sim(method, path, body)
        if self.headers.get("Authorization", "") != f"Key {state.config.api_key}":
            with state.lock:
                state.counts["unauthorized"] += 1
            return self.json(401, {"detail": "Invalid API key"})
        match = _REQUEST.match(path)
        if match is not None:
            return self._request(method, match.group(1), match.group(2), match.group(3) or "")
        if method != "POST":
            return self.json(405, {"detail": "Method Not Allowed"})
        model_id = path.strip("/")
        if model_id not in state.config.model_ids:
            return self.json(404, {"detail": f"Application '{model_id}' not found"})
        try:
            arguments = json.loads(body or b"{}")
        except ValueError:
            return self.json(422, {"detail": [{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}]})
        if not isinstance(arguments, dict):
            return self.json(422, {"detail": [{"loc": ["body"], "msg": "an object is needed", "type": "dict"}]})
        webhook = parse_qs(url.query).get("fal_webhook", [None])[0]
        request, fault = state.create(model_id, arguments, webhook, _retention(self.headers))
        if fault == "lost":
            raise Drop  # the request stands, and runs; its answer never arrives
        if fault == "500":
            return self.json(500, {"detail": "Internal Server Error"})  # ...or proves nothing
        with state.lock:
            handle = state.handle(request)
        return self.json(200, handle)

    def _request(self, method: str, app: str, request_id: str, action: str) -> None:
        state = self.server.state
        request = state.find(app, request_id)
        if request is None:
            if action == "/cancel" and method == "PUT":
                with state.lock:
                    state.counts["cancels"] += 1
            return self.json(404, {"status": "NOT_FOUND", "detail": "Request not found"})
        if action == "/status" and method == "GET":
            return self.json(200, state.status(request))
        if action == "/cancel" and method == "PUT":
            return self.json(*state.cancel(request))
        if action == "" and method == "GET":
            return self.json(*state.result(request))
        return self.json(405, {"detail": "Method Not Allowed"})

    def _sim(self, method: str, path: str, body: bytes) -> None:
        state = self.server.state
        if path == "/_sim/stats" and method == "GET":
            return self.json(200, state.stats())
        if path == "/_sim/reset" and method == "POST":
            state.reset()
            return self.json(200, {"reset": True})
        if path == "/_sim/config" and method == "POST":
            try:
                config = state.configure(json.loads(body or b"{}"))
            except (FalSimConfigError, ValueError, TypeError) as exc:
                return self.json(400, {"detail": str(exc)})
            return self.json(200, config.model_dump(exclude={"api_key"}))
        if path == "/_sim/rotate-keys" and method == "POST":
            return self.json(200, {"kid": state.rotate_keys().kid})
        return self.json(404, {"detail": "Not Found"})

    # -- the media host ---------------------------------------------------------------------------

    def media(self, method: str) -> None:
        match = _MEDIA.match(urlsplit(self.path).path)
        request = self.server.state.media(match.group(1)) if match and method in ("GET", "HEAD") else None
        if request is None:
            return self.json(404, {"detail": "Not Found"})
        size = self.server.state.config.video_size_bytes
        if size == 0:
            data = clip_mp4(_clip(request))
            chunks: Any = None
            total = len(data)
        else:
            data, total = b"", size
        start, end = 0, total
        status = 200
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
        chunks = [data[start:end]] if size == 0 else iter_video(request.request_id, total, start, end)
        for chunk in chunks:
            self.wfile.write(chunk)


def _retention(headers: Any) -> int | None:
    try:
        value = json.loads(headers.get("X-Fal-Object-Lifecycle-Preference") or "null")
        seconds = value.get("expiration_duration_seconds") if isinstance(value, dict) else None
    except ValueError:
        return None
    return seconds if isinstance(seconds, int) and seconds > 0 else None


def _clip(request: FalRequest) -> ClipSpec:
    arguments = request.arguments
    try:
        seconds = float(arguments.get("duration", 5))
    except (TypeError, ValueError):
        seconds = 5.0
    return ClipSpec(
        task_id=request.request_id,
        kind=request.model_id.rsplit("/", 1)[-1],
        model=request.model_id,
        prompt=str(arguments.get("prompt", ""))[:200],
        seconds=seconds,
        aspect_ratio=str(arguments.get("aspect_ratio", "16:9")),
        sound=bool(arguments.get("generate_audio")),
    )
