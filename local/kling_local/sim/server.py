"""The simulator's two HTTP servers: Kling's API (JWT, envelopes, faults) and the result CDN.

Stdlib only: a ThreadingHTTPServer with daemon threads and a deep accept queue takes a thousand
concurrent connections on a small machine. Every failure is answered Kling's way
(`{code, message, request_id}`), never with a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from kling_local.sim.auth import authenticate
from kling_local.sim.cdn import CdnObject, CdnRefusal
from kling_local.sim.config import SimConfigError
from kling_local.sim.errors import KLING_ERRORS, SimApiError, bad_request, invalid
from kling_local.sim.fetch import fetch_images
from kling_local.sim.media import HTML_BODY, clip_mp4, iter_video, sample_image
from kling_local.sim.state import SimState
from kling_local.sim.validation import KINDS

log = logging.getLogger("kling_local.sim.server")

_TASK_PATH = re.compile(r"^/v1/videos/([A-Za-z0-9-]+)(?:/([^/]+))?/?$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SAMPLE = re.compile(r"^/samples/(\d{3,4})x(\d{3,4})\.(png|jpg)$")
FIVE_XX = (5000, 5001, 5002)
ACCOUNT_COSTS_PATH = "/account/costs"


class _DropConnection(Exception):
    """Close the connection without an answer (models "Kling accepted but we never heard")."""


class SimHTTPServer(ThreadingHTTPServer):
    """A threading server that knows its role and can cut every open connection on stop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], role: str, state: SimState, stopping: threading.Event) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.role = role
        self.state = state
        self.stopping = stopping
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut keep-alive and streaming connections so their threads end promptly."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answer garbage with a status line, not HTTP/0.9 bare bytes
    server_version = "kling-sim"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end by themselves
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    error_content_type = "application/json"
    server: SimHTTPServer
    _responded: bool = False
    _delay_s: float = 0.0
    _request_id: str = ""

    # -- plumbing --------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib raises before routing (bad request line, unknown verb), as JSON."""
        kling_code = 1202 if code in (405, 501) else 1200
        self.close_connection = True
        self._send_json(
            code,
            {"code": kling_code, "message": message or "Invalid request", "request_id": str(uuid.uuid4())},
            head=False,
        )

    def _dispatch(self, method: str) -> None:
        self._responded = False
        self._delay_s = 0.0
        self._request_id = str(uuid.uuid4())
        try:
            if self.server.role == "cdn":
                self._cdn(method)
            else:
                self._api(method)
        except _DropConnection:
            self._drop()
        except SimApiError as exc:
            self._error(exc)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("unexpected error handling %s %s", method, self.path.split("?")[0])
            self._error(SimApiError(5000))

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _error(self, exc: SimApiError) -> None:
        if self._responded:
            self.close_connection = True
            return
        if self.server.role == "api":
            self.server.state.record_error(exc.code)
        body = {"code": exc.code, "message": exc.message, "request_id": self._request_id}
        self._send_json(exc.http_status, body)

    def _send_json(self, status: int, payload: Any, head: bool | None = None) -> None:
        if self._delay_s > 0:
            self.server.stopping.wait(self._delay_s)
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._responded = True
        if head is None:
            head = getattr(self, "command", "") == "HEAD"
        if not head:
            self.wfile.write(data)

    def _ok(self, data: Any) -> None:
        state = self.server.state
        if self.server.role == "api" and state.chance(state.config.shape_drift_rate):
            state.record_fault("shape_drift")
            modes = {"unknown_status": (0,), "missing_status": (1,), "missing_task_id": (2,)}
            data = _drift(data, state.pick(modes.get(state.config.shape_drift_mode, (0, 1, 2))))
        if self.server.role == "api" and (state.config.omit_unit_deduction or state.config.succeed_without_videos):
            data = _quirks(
                data, no_units=state.config.omit_unit_deduction, no_videos=state.config.succeed_without_videos
            )
        self._send_json(200, {"code": 0, "message": "SUCCEED", "request_id": self._request_id, "data": data})

    def _plain_api(self, status: int, html: str) -> None:
        """An answer from something in front of Kling (a gateway): not Kling's JSON envelope."""
        data = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self._responded = True
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        """The request body, capped; oversized bodies get 413 and the connection is closed."""
        limit = self.server.state.config.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise bad_request("Content-Length is not a valid number") from None
        if length > limit:
            self.close_connection = True
            raise SimApiError(1200, f"request body too large: at most {limit} bytes", 413)
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise bad_request("malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise SimApiError(1200, f"request body too large: at most {limit} bytes", 413)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    # -- the API ---------------------------------------------------------------------------------

    def _api(self, method: str) -> None:
        state = self.server.state
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if path.startswith("/_sim/"):
            self._admin(method, path, body)
            return
        params = parse_qs(query, keep_blank_values=True)
        route = self._new_design_route(path)
        if route is not None:
            self._new_design(method, route, params, body)
            return
        match = _TASK_PATH.match(path)
        kind = match.group(1) if match else None
        task_id = match.group(2) if match else None
        endpoint = (
            f"{method} account/costs"
            if path.rstrip("/") == ACCOUNT_COSTS_PATH
            else self._endpoint_name(method, kind, task_id, params)
        )
        state.record_call(
            endpoint, task_id if kind in KINDS and method == "GET" else None, query=kind in KINDS and method == "GET"
        )
        if state.down():
            state.record_fault("outage")
            raise SimApiError(5001)
        if path.rstrip("/") == ACCOUNT_COSTS_PATH:
            self._account_costs(method, params)
            return
        if not path.startswith("/v1/"):
            raise SimApiError(1203, f"no such resource: {path[:100]}")
        account = self._authenticate(new_design=False)
        state.check_rate(account)
        if match is None or kind not in KINDS:
            raise SimApiError(1203, f"no such resource: {path[:100]}")
        assert kind is not None
        if method not in ("GET", "POST") or (method == "POST" and task_id is not None):
            raise SimApiError(1202, f"method {method} is not allowed on {path[:100]}")
        self._faults(method)
        if method == "POST":
            self._create(account, kind, body)
        elif task_id is not None:
            self._ok(state.get(account, kind, task_id))
        elif "external_task_id" in params and state.config.external_id_lookup != "ignored":
            if state.config.external_id_lookup == "missing":
                self.close_connection = True
                self._plain_api(404, "<html><body><h1>404 Not Found</h1></body></html>")
                return
            self._ok(state.find_external(account, kind, params["external_task_id"][0]))
        else:
            page_num = _int_param(params, "pageNum", 1, 1, 1000)
            page_size = _int_param(params, "pageSize", 30, 1, 500)
            self._ok(state.list(account, kind, page_num, page_size))

    def _authenticate(self, *, new_design: bool) -> str:
        config = self.server.state.config
        return authenticate(
            self.headers.get("Authorization"), config.accounts(), api_keys=config.api_keys(), new_design=new_design
        )

    # -- the newer design ------------------------------------------------------------------------

    def _new_design_route(self, path: str) -> str | None:
        """`tasks` for /tasks, `<product>/<model>` for a configured create path, else None (legacy routing)."""
        trimmed = path.strip("/")
        if trimmed == "tasks" or trimmed in self.server.state.config.new_design_routes:
            return trimmed
        return None

    def _new_design(self, method: str, route: str, params: dict[str, list[str]], body: bytes) -> None:
        """The newer design: creates at /<product>/<model>, queries at /tasks; API keys only."""
        state = self.server.state
        if route == "tasks":
            which = "task_ids" if "task_ids" in params else "external_task_ids"
            endpoint = f"GET tasks?{which}" if method == "GET" else f"{method} tasks"
        else:
            endpoint = f"{method} {route}"
        state.record_call(endpoint, query=route == "tasks" and method in ("GET", "POST"))
        if state.down():
            state.record_fault("outage")
            raise SimApiError(5001)
        account = self._authenticate(new_design=True)
        state.check_rate(account)
        if method not in ("GET", "POST") or (method == "GET" and route != "tasks"):
            raise SimApiError(1202, f"method {method} is not allowed on /{route}")
        query = route == "tasks"
        self._faults(method, query=query)
        if route != "tasks":
            self._create(account, route.split("/", 1)[0], body, route=route)
        elif method == "GET":
            self._tasks_by_ids(account, params)
        else:
            self._tasks_sweep(account, body)

    def _tasks_by_ids(self, account: str, params: dict[str, list[str]]) -> None:
        """GET /tasks?task_ids=a,b | external_task_ids=x,y: one kind of id a call, at most `tasks_max_ids`."""
        state = self.server.state
        given = [name for name in ("task_ids", "external_task_ids") if name in params]
        if len(given) != 1:
            raise invalid("give exactly one of task_ids and external_task_ids (comma-separated)")
        ids = list(dict.fromkeys(p.strip() for v in params[given[0]] for p in v.split(",") if p.strip()))
        if not ids:
            raise invalid(f"{given[0]} is empty")
        limit = state.config.tasks_max_ids
        if len(ids) > limit:
            # Kling documents no maximum and no code for exceeding one; a parameter error (1201) naming the
            # count is what an over-long parameter gets everywhere else in its API.
            raise invalid(f"{given[0]}: too many ids ({len(ids)}); at most {limit} per call")
        self._ok(state.tasks_by_ids(account, ids, external=given[0] == "external_task_ids"))

    def _tasks_sweep(self, account: str, body: bytes) -> None:
        """POST /tasks {start_time, end_time, cursor, limit, filters}: one page, `{result, count, next_cursor,
        has_more}`, in no promised order; `count` is this page's."""
        state = self.server.state
        parsed = _parse_json(body) if body.strip() else {}
        if not isinstance(parsed, dict):
            raise bad_request("the request body must be a JSON object")
        unknown = sorted(set(parsed) - {"start_time", "end_time", "cursor", "limit", "filters"})
        if unknown:
            raise invalid(f"unknown field(s): {', '.join(str(u)[:64] for u in unknown[:5])}")
        limit = parsed.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise invalid("limit must be an integer from 1 to 500")
        statuses = _sweep_filters(parsed.get("filters"))
        cursor = parsed.get("cursor")
        if cursor not in (None, ""):
            start_ms, end_ms, after = _read_cursor(cursor)
        else:
            now_ms = int(time.time() * 1000)
            end_ms = _ms_field(parsed, "end_time", now_ms)
            start_ms = _ms_field(parsed, "start_time", end_ms - SWEEP_DEFAULT_WINDOW_MS)
            if start_ms > end_ms:
                raise invalid("start_time is after end_time")
            after = None
        if statuses is not None and not statuses:
            result: list[dict[str, Any]] = []
            last = None
        else:
            result, last = state.sweep(account, start_ms, end_ms, after, limit, statuses)
        next_cursor = _write_cursor(start_ms, end_ms, last) if last is not None else ""
        self._ok({"result": result, "count": len(result), "next_cursor": next_cursor, "has_more": last is not None})

    def _account_costs(self, method: str, params: dict[str, list[str]]) -> None:
        """`GET /account/costs?start_time=&end_time=`: the account's resource packs (Kling: one call a second)."""
        state = self.server.state
        account = self._authenticate(new_design=False)
        state.check_rate(account)
        if method != "GET":
            raise SimApiError(1202, f"method {method} is not allowed on {ACCOUNT_COSTS_PATH}")
        times = {}
        for name in ("start_time", "end_time"):
            value = (params.get(name) or [""])[0]
            if not value.isdigit():
                raise invalid(f"{name} is required: epoch milliseconds")
            times[name] = int(value)
        if times["start_time"] > times["end_time"]:
            raise invalid("start_time is after end_time")
        data = {"code": 0, "msg": "", "resource_pack_subscribe_infos": state.resource_packs(account)}
        self._send_json(200, {"code": 0, "message": "SUCCEED", "request_id": self._request_id, "data": data})

    @staticmethod
    def _endpoint_name(method: str, kind: str | None, task_id: str | None, params: dict[str, list[str]]) -> str:
        if kind is None or kind not in KINDS:
            return f"{method} other"
        if task_id is not None:
            return f"{method} {kind}/{{id}}"
        if method == "GET":
            return f"GET {kind}?external_task_id" if "external_task_id" in params else f"GET {kind} list"
        return f"{method} {kind}"

    def _faults(self, method: str, *, query: bool | None = None) -> None:
        """5xxx and slow answers; `query` (default: a GET) decides whether `query_faults` spares it."""
        state = self.server.state
        config = state.config
        if state.in_error_burst():
            state.record_fault("error_burst")
            raise SimApiError(state.pick(FIVE_XX))
        if (method == "GET" if query is None else query) and not config.query_faults:
            return
        if state.chance(config.error_5xx_rate):
            state.record_fault("error_5xx")
            raise SimApiError(state.pick(FIVE_XX))
        if state.chance(config.slow_rate):
            state.record_fault("slow")
            self._delay_s = config.slow_s

    def _create(self, account: str, kind: str, body: bytes, route: str | None = None) -> None:
        state = self.server.state
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "application/json" not in content_type:
            raise bad_request("Content-Type must be application/json")
        parsed = _parse_json(body)
        fetched = None
        if state.config.fetch_image_urls:
            try:
                # Outside the state's lock: an image may live on this simulator's own CDN.
                fetched = fetch_images(kind, parsed, state.record_image_fetch)
            except SimApiError as exc:
                state.record_refused_create(exc.code)
                raise
        data = state.create(account, kind, parsed, fetched, route=route)
        state.run_create_hooks(data, (str(self.client_address[0]), int(self.client_address[1])))
        if state.chance(state.config.create_response_drop_rate):
            state.record_fault("create_response_dropped")
            raise _DropConnection
        if state.chance(state.config.create_lost_answer_rate):
            # The task exists and is billed; the answer says otherwise (or nothing Kling-shaped at all).
            state.record_fault("create_answer_lost")
            if state.chance(0.5):
                raise SimApiError(5000)
            self.close_connection = True
            self._plain_api(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
            return
        self._ok(data)

    def _admin(self, method: str, path: str, body: bytes) -> None:
        """/_sim/*: inspection and knobs for tests; not Kling's API, no JWT."""
        state = self.server.state
        if path == "/_sim/stats" and method == "GET":
            self._send_json(200, state.stats())
        elif path == "/_sim/config" and method == "GET":
            self._send_json(200, state.config.public_dict())
        elif path == "/_sim/config" and method == "POST":
            knobs = _parse_json(body)
            if not isinstance(knobs, dict):
                raise bad_request("the body must be a JSON object of knobs")
            try:
                config = state.configure(knobs)
            except SimConfigError as exc:
                raise invalid(str(exc)) from None
            self._send_json(200, config.public_dict())
        elif path == "/_sim/reset" and method == "POST":
            state.reset()
            self._send_json(200, {"ok": True})
        elif path == "/_sim/health" and method == "GET":
            self._send_json(200, {"ok": True})
        elif path in ("/_sim/stats", "/_sim/config", "/_sim/reset", "/_sim/health"):
            raise SimApiError(1202, f"method {method} is not allowed on {path}")
        else:
            raise SimApiError(1203, f"no such resource: {path[:100]}")

    # -- the CDN ---------------------------------------------------------------------------------

    def _cdn(self, method: str) -> None:
        state = self.server.state
        config = state.config
        self._read_body()
        path, _, query = self.path.partition("?")
        state.record_cdn("requests")
        if method not in ("GET", "HEAD"):
            self._plain(405, "Method Not Allowed")
            return
        sample = _SAMPLE.match(path)
        if sample:
            # Sample input images (tests, demos): /samples/640x360.png or .jpg
            width, height, image_format = int(sample.group(1)), int(sample.group(2)), sample.group(3)
            self._serve_bytes(method, sample_image(width, height, image_format), f"image/{image_format}")
            return
        try:
            obj = state.resolve_cdn(path, query)
        except CdnRefusal as refusal:
            state.record_cdn("refused")
            self._plain(refusal.status, refusal.reason)
            return
        if config.cdn_redirect_url:
            state.record_cdn("redirected")
            self.send_response(302)
            self.send_header("Location", config.cdn_redirect_url)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._stream(method, obj)

    def _serve_bytes(self, method: str, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._responded = True
        if method != "HEAD":
            self.wfile.write(data)

    def _plain(self, status: int, text: str) -> None:
        data = f"{status} {text}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, method: str, obj: CdnObject) -> None:
        """Serve the video (or a range of it) chunk by chunk; maybe cut it mid-body."""
        state = self.server.state
        config = state.config
        html = config.cdn_body == "html"
        clip = clip_mp4(obj.clip) if obj.clip is not None and not html else None
        size = len(HTML_BODY) if html else len(clip) if clip is not None else obj.size
        start, end = 0, size
        status = 200
        wanted = self.headers.get("Range")
        if wanted:
            parsed = _parse_range(wanted, size)
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = parsed
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", config.cdn_content_type or ("text/html" if html else "video/mp4"))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{obj.seed}-{size}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        self._responded = True
        if method == "HEAD":
            return
        state.record_cdn("downloads_started")
        drop_at = end + 1
        if state.chance(config.cdn_drop_rate) or state.cut_first(obj.seed, config.cdn_cut_first):
            drop_at = start + config.cdn_drop_after_bytes
        if html:
            chunks = iter([HTML_BODY[start:end]])
        elif clip is not None:
            chunks = iter([clip[pos : min(end, pos + 65536)] for pos in range(start, end, 65536)])
        else:
            chunks = iter_video(obj.seed, size, start, end)
        sent = 0
        pos = start
        try:
            for chunk in chunks:
                if self.server.stopping.is_set():
                    raise _DropConnection
                if pos + len(chunk) >= drop_at:
                    chunk = chunk[: max(0, drop_at - pos)]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    state.record_cdn("downloads_dropped")
                    raise _DropConnection
                self.wfile.write(chunk)
                sent += len(chunk)
                pos += len(chunk)
            state.record_cdn("downloads_completed")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            state.record_cdn("downloads_aborted")
            self.close_connection = True
        finally:
            state.record_cdn("bytes_sent", sent)


def _drift(data: Any, how: int) -> Any:
    """A task object (or the first of a list, or of a sweep page) in a shape clients may not know: 0 an
    unknown status, 1 no status, 2 no task id (either design's field names)."""
    if isinstance(data, dict) and isinstance(data.get("result"), list):
        return {**data, "result": _drift(data["result"], how)}
    target = data[0] if isinstance(data, list) and data else data
    if not isinstance(target, dict):
        return data
    drifted = dict(target)
    status, ident = ("task_status", "task_id") if "task_id" in drifted else ("status", "id")
    if how == 0:
        drifted[status] = "queueing"
    else:
        drifted.pop(status if how == 1 else ident, None)
    return [drifted, *data[1:]] if isinstance(data, list) else drifted


def _quirks(data: Any, *, no_units: bool, no_videos: bool) -> Any:
    """Task objects as Kling has been seen to answer them: no final_unit_deduction, or a `succeed`
    with no video."""
    if isinstance(data, list):
        return [_quirks(item, no_units=no_units, no_videos=no_videos) for item in data]
    if isinstance(data, dict) and isinstance(data.get("result"), list):
        return {**data, "result": _quirks(data["result"], no_units=no_units, no_videos=no_videos)}
    if isinstance(data, dict) and "outputs" in data:  # the newer design: billing[] and outputs[]
        changed = dict(data)
        if no_units:
            changed.pop("billing", None)
        if no_videos and changed.get("status") == "succeeded":
            changed["outputs"] = []
        return changed
    if not isinstance(data, dict) or "task_status" not in data:
        return data
    changed = dict(data)
    if no_units:
        changed.pop("final_unit_deduction", None)
    if no_videos and changed.get("task_status") == "succeed":
        changed["task_result"] = {"videos": []}
    return changed


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise bad_request("the request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise bad_request("the request body is not valid JSON") from None


SWEEP_DEFAULT_WINDOW_MS = 30 * 86_400_000
SWEEP_STATUSES = ("submitted", "processing", "succeeded", "failed")


def _ms_field(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{name} must be epoch milliseconds (an integer)")
    return value


def _sweep_filters(filters: Any) -> set[str] | None:
    """The statuses a sweep keeps (None: all); an empty set when product_type excludes video."""
    if filters is None:
        return None
    if not isinstance(filters, list):
        raise invalid('filters must be a list of {"key": ..., "values": [...]}')
    statuses: set[str] | None = None
    video = True
    for i, item in enumerate(filters):
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise invalid(f'filters[{i}] must be {{"key": ..., "values": [...]}}')
        values = item["values"]
        if not all(isinstance(v, str) for v in values):
            raise invalid(f"filters[{i}].values must be strings")
        if item.get("key") == "status":
            bad = sorted(set(values) - set(SWEEP_STATUSES))
            if bad:
                raise invalid(f"filters[{i}]: status must be among {', '.join(SWEEP_STATUSES)}")
            statuses = set(values) if statuses is None else statuses & set(values)
        elif item.get("key") == "product_type":
            video = video and "video" in values
        else:
            raise invalid(f"filters[{i}].key must be status or product_type")
    return statuses if video else set()


def _write_cursor(start_ms: int, end_ms: int, after: str) -> str:
    raw = json.dumps([start_ms, end_ms, after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(cursor: Any) -> tuple[int, int, str]:
    """A cursor holds its sweep's window and the last key served (it overrides start_time/end_time)."""
    try:
        if not isinstance(cursor, str):
            raise ValueError
        start_ms, end_ms, after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(start_ms, int) and isinstance(end_ms, int) and isinstance(after, str)):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise invalid("cursor is not one this API gave (use next_cursor as it was answered)") from None
    return start_ms, end_ms, after


def _int_param(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise invalid(f"{name} must be an integer between {low} and {high}") from None
    if not low <= value <= high:
        raise invalid(f"{name} must be an integer between {low} and {high}")
    return value


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` range as [start, end); None when unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        return (max(0, size - suffix), size) if suffix > 0 else None
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    return (start, end) if start < end else None


__all__ = ["KLING_ERRORS", "SimHTTPServer"]
