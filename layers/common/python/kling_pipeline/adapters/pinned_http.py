"""An HTTP client for connections pinned to a checked address: pooled per host name, never per address.

The downloads, the image probes and the webhooks connect to the IP address that passed their checks,
with the host name given for the Host header and for TLS (the `sni_hostname` extension). httpx pools
connections by the URL's origin, which here is that IP: a request to a second host served from the
same address (a CDN) would reuse the first host's TLS connection, and the second host's certificate
would never be checked. `PinnedTransport` keeps one pool per (origin, host name), so every host gets
its own connection, its own SNI and its own certificate check.

Every socket operation of its connections (connect, TLS, each read and write) is bounded by the
deadline of adapters/deadlines.py as well as by httpx's per-operation timeouts: a server that drips
bytes is cut off when the exchange's total time is spent, not only when one read waits too long.
"""

from __future__ import annotations

import threading
import typing
from collections import OrderedDict
from typing import Any

import httpcore
import httpx

from kling_pipeline.adapters.deadlines import DeadlinePassedError, bounded
from kling_pipeline.adapters.public_addresses import PinnedTarget
from kling_pipeline.redaction import redact_http_library_logs

redact_http_library_logs()  # httpx logs each request's full URL: tokens and signatures live in query strings

MAX_POOLS = 16  # hosts kept warm at once; a webhook sender meets many hosts over a container's life


class PinnedTransport(httpx.BaseTransport):
    """One `httpx.HTTPTransport` (one connection pool) per origin and TLS host name."""

    def __init__(self, **transport_options: Any) -> None:
        self._options = transport_options
        self._pools: OrderedDict[tuple[str, str, int | None, str], httpx.HTTPTransport] = OrderedDict()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        tls_host = str(request.extensions.get("sni_hostname") or request.url.host)
        key = (request.url.scheme, request.url.host, request.url.port, tls_host)
        evicted: httpx.HTTPTransport | None = None
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = deadline_transport(**self._options)
                if len(self._pools) > MAX_POOLS:
                    _, evicted = self._pools.popitem(last=False)
            else:
                self._pools.move_to_end(key)
        if evicted is not None:
            evicted.close()
        return pool.handle_request(request)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()


def deadline_transport(**transport_options: Any) -> httpx.HTTPTransport:
    """An `httpx.HTTPTransport` whose sockets keep the current deadline (see the module's docstring)."""
    transport = httpx.HTTPTransport(**transport_options)
    # httpx builds its httpcore pool without a way to pass a network backend: set it on the pool it built.
    transport._pool._network_backend = DeadlineBackend()
    return transport


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, each operation's timeout cut to what the deadline leaves."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left = _bounded(timeout, httpcore.ConnectTimeout, f"connecting to {host}")
        return DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - the pipeline connects over TCP only
        left = _bounded(timeout, httpcore.ConnectTimeout, "connecting")
        return DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries, unused here
        self._inner.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads, writes and TLS handshake end by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout, "reading the answer"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout, "sending the request"))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = _bounded(timeout, httpcore.ConnectTimeout, "the TLS handshake")
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException], what: str) -> float | None:
    try:
        return bounded(timeout, what=what)
    except DeadlinePassedError as exc:
        raise error(str(exc)) from None


def pinned_client(*, verify: Any = True, **client_options: Any) -> httpx.Client:
    """An `httpx.Client` whose connections are kept apart per host name (see the module's docstring)."""
    return httpx.Client(transport=PinnedTransport(verify=verify), **client_options)


def pinned_request(client: httpx.Client, method: str, target: PinnedTarget, **options: Any) -> httpx.Request:
    """A request to a checked target: its pinned address, with the host name for Host and TLS."""
    headers = {**options.pop("headers", {}), **target.headers()}
    return client.build_request(method, target.url, headers=headers, extensions=target.extensions(), **options)
