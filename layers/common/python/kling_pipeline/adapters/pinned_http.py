"""An HTTP client for connections pinned to a checked address: pooled per host name, never per address.

The downloads, the image probes and the webhooks connect to the IP address that passed their checks,
with the host name given for the Host header and for TLS (the `sni_hostname` extension). httpx pools
connections by the URL's origin, which here is that IP: a request to a second host served from the
same address (a CDN) would reuse the first host's TLS connection, and the second host's certificate
would never be checked. `PinnedTransport` keeps one pool per (origin, host name), so every host gets
its own connection, its own SNI and its own certificate check.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import httpx

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
                pool = self._pools[key] = httpx.HTTPTransport(**self._options)
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


def pinned_client(*, verify: Any = True, **client_options: Any) -> httpx.Client:
    """An `httpx.Client` whose connections are kept apart per host name (see the module's docstring)."""
    return httpx.Client(transport=PinnedTransport(verify=verify), **client_options)
