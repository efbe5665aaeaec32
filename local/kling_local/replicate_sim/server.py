"""The Replicate simulator's HTTP API and media host (docs/replicate-contract.md):

- `POST /v1/models/<owner>/<name>/predictions` `{input, webhook, webhook_events_filter}` (`Cancel-After`
  header) -> 201, the prediction; an unknown model is 404, input the model refuses 422.
- `GET /v1/predictions/<id>`; `GET /v1/predictions[?cursor=]` (newest first, `page_size` a page, `next`);
  `POST /v1/predictions/<id>/cancel` -> 200, the prediction (404 unknown).
- `GET /v1/webhooks/default/secret` -> `{"key": "whsec_..."}`.
Every API route takes `Authorization: Bearer <api_token>` (401 otherwise) and may answer 429
(`throttle_rate`, `Retry-After: 1`). The media host serves `/files/<id>/output.mp4` (404 once the
output is deleted). `/_sim/stats`, `/_sim/config`, `/_sim/reset` need no token.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kling_local.replicate_sim.config import ReplicateSimConfigError
from kling_local.replicate_sim.state import ReplicateState, parse_cancel_after
from kling_local.sim_http import Drop, SimHandler

_CREATE = re.compile(r"^/v1/models/([\w.-]+/[\w.-]+)/predictions/?$")
_PREDICTION = re.compile(r"^/v1/predictions/([\w-]{4,64})(/cancel)?/?$")
_MEDIA = re.compile(r"^/files/([\w-]{4,64})/output\.mp4$")


def input_problems(model: str, values: Any) -> list[dict[str, str]]:
    """What the model's schema refuses (422 `invalid_fields`), as Replicate validates before running."""
    if not isinstance(values, dict):
        return [{"field": "input", "description": "input must be an object"}]
    problems = []
    if not isinstance(values.get("prompt"), str) or not values["prompt"].strip():
        problems.append({"field": "prompt", "description": "prompt is required"})
    if values.get("duration", 5) not in (5, 10):
        problems.append({"field": "duration", "description": "duration must be one of 5, 10"})
    if model.endswith("/kling-v2.1") and not values.get("start_image"):
        problems.append({"field": "start_image", "description": "start_image is required"})
    if model.endswith("/kling-v2.1") and values.get("end_image") and values.get("mode") != "pro":
        problems.append({"field": "end_image", "description": "end_image needs mode pro"})
    return problems


class ReplicateHandler(SimHandler):
    server_version = "replicate-sim"

    @property
    def state(self) -> ReplicateState:
        return self.server.state  # type: ignore[no-any-return]

    def api(self, method: str) -> None:
        state = self.state
        url = urlsplit(self.path)
        path = url.path
        body = self.body()
        if path.startswith("/_sim/"):
            return self._sim(method, path, body)
        if self.headers.get("Authorization", "") != f"Bearer {state.config.api_token}":
            with state.lock:
                state.counts["unauthorized"] += 1
            return self.json(
                401,
                {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401},
            )
        if state.throttled():
            return self.json(
                429,
                {"title": "Too Many Requests", "detail": "Request was throttled.", "status": 429},
                {"Retry-After": "1"},
            )
        if path == "/v1/webhooks/default/secret" and method == "GET":
            return self.json(200, {"key": state.secret()})
        if path.rstrip("/") == "/v1/predictions" and method == "GET":
            cursor = parse_qs(url.query).get("cursor", [None])[0]
            return self.json(200, state.page(int(cursor) if cursor and cursor.isdigit() else None))
        match = _PREDICTION.match(path)
        if match is not None:
            if match.group(2) and method == "POST":
                cancelled = state.cancel(match.group(1))
                return (
                    self.json(200, cancelled) if cancelled else self.json(404, {"detail": "Not found.", "status": 404})
                )
            if not match.group(2) and method == "GET":
                found = state.get(match.group(1))
                return self.json(200, found) if found else self.json(404, {"detail": "Not found.", "status": 404})
            return self.json(405, {"detail": "Method not allowed", "status": 405})
        match = _CREATE.match(path)
        if match is None or method != "POST":
            return self.json(404, {"detail": "Not found.", "status": 404})
        return self._create(match.group(1), body)

    def _create(self, model: str, body: bytes) -> None:
        state = self.state
        if model not in state.config.models:
            with state.lock:
                state.counts["refused"] += 1
            return self.json(
                404, {"title": "Model not found", "detail": f"The model {model} does not exist", "status": 404}
            )
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self.json(400, {"detail": "invalid JSON", "status": 400})
        problems = input_problems(model, request.get("input") if isinstance(request, dict) else None)
        if problems:
            with state.lock:
                state.counts["refused"] += 1
            return self.json(
                422,
                {
                    "title": "Input validation failed",
                    "status": 422,
                    "invalid_fields": problems,
                    "detail": problems[0]["description"],
                },
            )
        prediction, fault = state.create(model, request, parse_cancel_after(self.headers.get("Cancel-After")))
        if fault == "lost":
            raise Drop  # the prediction stands, and runs; its answer never arrives
        if fault == "500":
            return self.json(500, {"detail": "Internal Server Error", "status": 500})
        with state.lock:
            return self.json(201, prediction.doc(state.base_url))

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
            except (ReplicateSimConfigError, ValueError, TypeError) as exc:
                return self.json(400, {"detail": str(exc)})
            return self.json(200, config.model_dump(exclude={"api_token", "webhook_secret"}))
        return self.json(404, {"detail": "Not Found"})

    def media(self, method: str) -> None:
        match = _MEDIA.match(urlsplit(self.path).path)
        prediction = self.state.media(match.group(1)) if match and method in ("GET", "HEAD") else None
        if prediction is None:
            return self.json(404, {"detail": "Not Found"})
        self.video(method, prediction.id, self.state.config.video_size_bytes)
