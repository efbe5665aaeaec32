"""API Gateway (REST, Lambda proxy integration) on 127.0.0.1: requests become proxy events.

Every `Api` event of the template is a route under its stage (`/v1/callbacks/{job_id}`), so the
base URL is http://127.0.0.1:PORT/<stage>, exactly where the deployed API would put it. Function
errors and malformed responses answer 502 and a slow function 504 after API Gateway's 29 s, as on
AWS; unknown paths 404 and wrong methods 405 (JSON bodies).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from kling_local.stack.moto_server import ACCOUNT_ID
from kling_local.stack.runtime import Invocation, RuntimeStoppedError
from kling_local.stack.sam_translation import ApiRoute

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT_S = 29.0  # API Gateway's default integration timeout


@dataclass(frozen=True)
class CompiledRoute:
    route: ApiRoute
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    literal_segments: int


def compile_route(route: ApiRoute) -> CompiledRoute:
    """`/callbacks/{job_id}` -> a regex with named groups; `{proxy+}` matches the rest of the path."""
    names: list[str] = []
    parts: list[str] = []
    literal = 0
    for segment in route.path.strip("/").split("/"):
        match = re.fullmatch(r"\{([A-Za-z0-9_.-]+)(\+?)\}", segment)
        if match:
            names.append(match.group(1))
            group = f"g{len(names) - 1}"
            parts.append(f"(?P<{group}>.+)" if match.group(2) else f"(?P<{group}>[^/]+)")
        elif segment:
            literal += 1
            parts.append(re.escape(segment))
    regex = "^/" + "/".join(parts) + "/?$" if parts else "^/?$"
    return CompiledRoute(route=route, pattern=re.compile(regex), names=tuple(names), literal_segments=literal)


class Router:
    def __init__(self, routes: list[ApiRoute]) -> None:
        self.routes = [compile_route(r) for r in routes]
        # Most specific first, as API Gateway prefers /items/new over /items/{id}.
        self.routes.sort(key=lambda r: (-r.literal_segments, -len(r.names)))
        self.stages = sorted({r.stage for r in routes})

    def match(self, method: str, path: str) -> tuple[CompiledRoute | None, dict[str, str], bool]:
        """(route, path parameters, path_exists). `path` includes the stage prefix."""
        stage, _, rest = path.lstrip("/").partition("/")
        rest = "/" + rest
        path_exists = False
        for compiled in self.routes:
            if compiled.route.stage != stage:
                continue
            found = compiled.pattern.match(rest)
            if not found:
                continue
            path_exists = True
            if compiled.route.method in (method, "ANY"):
                params = {name: unquote(found.group(f"g{i}")) for i, name in enumerate(compiled.names)}
                return compiled, params, True
        return None, {}, path_exists


def proxy_event(
    *,
    route: ApiRoute,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    path_parameters: dict[str, str],
    source_ip: str,
    request_id: str,
    host: str,
) -> dict[str, Any]:
    """The REST API (v1) Lambda proxy integration event for one request. `path` excludes the stage."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    query_pairs = parse_qsl(query, keep_blank_values=True)
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for name, value in query_pairs:
        query_single[name] = value
        query_multi.setdefault(name, []).append(value)
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    is_binary = bool(body) and _is_binary(content_type, route.binary_media_types)
    if not body:
        body_text: str | None = None
    elif is_binary:
        body_text = base64.b64encode(body).decode("ascii")
    else:
        body_text = body.decode("utf-8", errors="replace")
    now = datetime.now(UTC)
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": query_single or None,
        "multiValueQueryStringParameters": query_multi or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": uuid.uuid5(uuid.NAMESPACE_URL, route.path).hex[:6],
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{route.stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": route.stage,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": next((v for k, v in headers if k.lower() == "user-agent"), None),
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
            },
            "domainName": host,
            "apiId": f"local-{route.api}",
        },
        "body": body_text,
        "isBase64Encoded": is_binary,
    }


def _is_binary(content_type: str, binary_types: tuple[str, ...]) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatch(mime, pattern.lower()) for pattern in binary_types)


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the callback token in its query string: never log that part.
        log.debug("api %s - %s", self.address_string(), re.sub(r"\?\S*", "?***", format % args))

    def _handle(self) -> None:
        api = self.server
        request_id = str(uuid.uuid4())
        url = urlsplit(self.path)
        method = self.command.upper()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"message": "Request Too Long"}, request_id)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        route, params, exists = api.router.match(method, url.path)
        if route is None:
            status, message = (405, "Method Not Allowed") if exists else (404, "Not Found")
            self._reply(status, {"message": message}, request_id)
            return
        stage_prefix = "/" + route.route.stage
        path = url.path[len(stage_prefix) :] or "/"
        headers = list(self.headers.items())
        peer = self.client_address[0]
        headers += [("X-Forwarded-For", peer), ("X-Forwarded-Proto", "http"), ("X-Forwarded-Port", str(api.port))]
        event = proxy_event(
            route=route.route,
            method=method,
            path=path,
            query=url.query,
            headers=headers,
            body=body,
            path_parameters=params,
            source_ip=peer,
            request_id=request_id,
            host=self.headers.get("Host") or f"127.0.0.1:{api.port}",
        )
        future = api.executor.submit(api.invoke, route.route.function, event)
        try:
            result = future.result(timeout=api.integration_timeout_s)
        except FutureTimeout:
            self._reply(504, {"message": "Endpoint request timed out"}, request_id)
            return
        except RuntimeStoppedError:
            self._reply(503, {"message": "Service Unavailable"}, request_id)
            return
        except Exception:
            log.exception("api: invoking %s failed", route.route.function)
            self._reply(502, {"message": "Internal server error"}, request_id)
            return
        self._write_response(result, request_id)

    def _write_response(self, result: Invocation, request_id: str) -> None:
        payload = result.payload
        if not result.ok or not isinstance(payload, dict) or not isinstance(payload.get("statusCode", 200), int):
            if result.ok:
                log.warning("api: %s returned a malformed proxy response", self.path.split("?", 1)[0])
            self._reply(502, {"message": "Internal server error"}, request_id)
            return
        body: Any = payload.get("body")
        raw = b""
        if body is not None:
            text = body if isinstance(body, str) else json.dumps(body)
            raw = base64.b64decode(text) if payload.get("isBase64Encoded") else text.encode("utf-8")
        headers: list[tuple[str, str]] = []
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in (values or []))
        multi_names = {name.lower() for name, _ in headers}
        for name, value in (payload.get("headers") or {}).items():
            if str(name).lower() not in multi_names:
                headers.append((str(name), str(value)))
        self.send_response(int(payload.get("statusCode", 200)))
        lowered = {name.lower() for name, _ in headers}
        if "content-type" not in lowered:
            headers.append(("Content-Type", "application/json"))
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _reply(self, status: int, body: dict[str, Any], request_id: str) -> None:
        raw = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("x-amzn-ErrorType", body.get("message", "").replace(" ", ""))
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)


class ApiServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (Kling's callback timeout) is routine: no traceback on the terminal."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            log.debug("api client %s went away: %s", client_address, type(exc).__name__)
            return
        log.exception("api: unexpected error serving %s", client_address)

    """The stack's API Gateway. Bind first (`bind()`), so the URL is known before the deploy."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        integration_timeout_s: float = INTEGRATION_TIMEOUT_S,
    ) -> None:
        super().__init__((host, port), _Handler, bind_and_activate=True)
        self.router = Router([])
        self.invoke: Callable[[str, Any], Invocation] = _not_ready
        self.integration_timeout_s = integration_timeout_s
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="api-invoke")
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, routes: list[ApiRoute], invoke: Callable[[str, Any], Invocation]) -> None:
        self.router = Router(routes)
        self.invoke = invoke
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.name = "local-api"
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def _not_ready(function: str, event: Any) -> Invocation:
    return Invocation("", False, {"errorMessage": "the API is not serving yet", "errorType": "NotReady"}, 0.0)
