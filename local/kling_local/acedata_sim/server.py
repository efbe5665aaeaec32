"""The AceData simulator's HTTP API and media host (docs/acedata-contract.md):

- `POST /kling/videos` `{action, model, mode, prompt, ..., callback_url | async}` -> `{success, task_id}`;
  without `callback_url` and without `async: true` the answer waits for the task to end, as AceData's
  synchronous mode does, and then carries the video.
- `POST /kling/tasks` `{"action": "retrieve", "id"}` -> the item; `{"action": "retrieve_batch", "ids"}`
  -> `{items, count}`, some ids left out (`batch_missing_rate`).
- Errors `{success: false, error: {code, message}, trace_id}`: 401 `invalid_token`, 400
  `token_mismatched` / `api_not_implemented`, 429 `too_many_requests`, 500 `api_error`.
Every API route takes `authorization: Bearer <api_token>`. The media host serves
`/files/<task id>/output.mp4`. `/_sim/stats`, `/_sim/config`, `/_sim/reset` need no token.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from kling_local.acedata_sim.config import AceDataSimConfigError
from kling_local.acedata_sim.state import AceDataState
from kling_local.sim_http import Drop, SimHandler

_MEDIA = re.compile(r"^/files/([\w-]{4,64})/output\.mp4$")
STATUS = {"invalid_token": 401, "token_mismatched": 400, "api_not_implemented": 400, "too_many_requests": 429}
MESSAGES = {
    "invalid_token": "The token is invalid.",
    "token_mismatched": "The token does not match this API.",
    "api_not_implemented": "The API is not implemented.",
    "too_many_requests": "Too many requests, please try again later.",
    "api_error": "The API encountered an error, please try again later.",
    "bad_request": "The request is invalid.",
}


class AceDataHandler(SimHandler):
    server_version = "acedata-sim"

    @property
    def state(self) -> AceDataState:
        return self.server.state  # type: ignore[no-any-return]

    def error(self, code: str, status: int | None = None, message: str | None = None) -> None:
        envelope = {
            "success": False,
            "error": {"code": code, "message": message or MESSAGES.get(code, code)},
            "trace_id": str(uuid.uuid4()),
        }
        self.json(status or STATUS.get(code, 500), envelope)

    def api(self, method: str) -> None:
        state = self.state
        path = urlsplit(self.path).path.rstrip("/")
        body = self.body()
        if path.startswith("/_sim/"):
            return self._sim(method, path, body)
        if self.headers.get("authorization", "") != f"Bearer {state.config.api_token}":
            with state.lock:
                state.counts["unauthorized"] += 1
            return self.error("invalid_token")
        refused = state.refusal()
        if refused is not None:
            return self.error(refused[1], refused[0])
        if method != "POST" or path not in ("/kling/videos", "/kling/tasks"):
            return self.error("api_not_implemented", 404)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self.error("bad_request", 400, "invalid JSON")
        if not isinstance(request, dict):
            return self.error("bad_request", 400, "an object is needed")
        if path == "/kling/tasks":
            return self._tasks(request)
        return self._create(request)

    def _create(self, request: dict[str, Any]) -> None:
        state = self.state
        if request.get("action") not in ("text2video", "image2video", "extend"):
            return self.error("bad_request", 400, "action must be text2video, image2video or extend")
        if request.get("model", "kling-v1") not in state.config.models:
            return self.error("bad_request", 400, f"unknown model {request.get('model')}")
        if len(str(request.get("negative_prompt") or "")) > 200:
            return self.error("bad_request", 400, "negative_prompt: at most 200 characters")
        task, fault = state.create(request)
        if state.api_error():
            return self.error("api_error", 500)  # the task stands, and runs
        if fault == "lost":
            raise Drop
        if not task.callback_url and request.get("async") is not True:
            task.done.wait(timeout=600)  # AceData's synchronous mode: the connection held until the end
            return self.json(200, task.response() or {"success": False, "task_id": task.id})
        return self.json(200, {"success": True, "task_id": task.id})

    def _tasks(self, request: dict[str, Any]) -> None:
        state = self.state
        if state.api_error():
            return self.error("api_error", 500)
        if request.get("action") == "retrieve":
            item = state.retrieve(str(request.get("id", "")))
            return self.json(200, item) if item else self.error("bad_request", 404, "task not found")
        if request.get("action") == "retrieve_batch":
            ids = request.get("ids")
            if not isinstance(ids, list):
                return self.error("bad_request", 400, "ids must be a list")
            return self.json(200, state.retrieve_batch([str(i) for i in ids]))
        return self.error("api_not_implemented")

    def _sim(self, method: str, path: str, body: bytes) -> None:
        state = self.state
        if path == "/_sim/stats" and method == "GET":
            return self.json(200, state.stats())
        if path == "/_sim/reset" and method == "POST":
            state.reset()
            return self.json(200, {"reset": True})
        if path == "/_sim/config" and method == "POST":
            try:
                config = state.configure(json.loads(body or b"{}"))
            except (AceDataSimConfigError, ValueError, TypeError) as exc:
                return self.json(400, {"detail": str(exc)})
            return self.json(200, config.model_dump(exclude={"api_token"}))
        return self.json(404, {"detail": "Not Found"})

    def media(self, method: str) -> None:
        match = _MEDIA.match(urlsplit(self.path).path)
        task = self.state.media(match.group(1)) if match and method in ("GET", "HEAD") else None
        if task is None:
            return self.json(404, {"detail": "Not Found"})
        self.video(method, task.id, self.state.config.video_size_bytes)
