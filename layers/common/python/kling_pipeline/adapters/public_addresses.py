"""Where the pipeline may connect: the public-address rules, written once for the video download, the
image probe and the webhooks.

A fetched URL names a host, never an IP literal; the host's every DNS answer must be a public
address (no private, loopback or link-local range); and the connection goes to the very address
that passed the check, with the host name kept for the Host header and for TLS (SNI and the
certificate check), so a second DNS answer (a rebinding to a private address) is never used. The
look-up is bounded by the current deadline (adapters/deadlines.py). No HTTP client here: the jobs
API checks webhook URLs through adapters/webhook_targets.py, which builds on this module.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kling_pipeline.adapters.deadlines import getaddrinfo
from kling_pipeline.errors import DownloadRefusedError, TransientDownloadError
from kling_pipeline.redaction import redact_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PinnedTarget:
    """Where to connect for a checked URL. In production that is the address that passed the check,
    with the host name kept for the Host header and for TLS; `host` is None for an unpinned URL (local
    mode), connected to as written."""

    url: str
    host: str | None = None

    def headers(self) -> dict[str, str]:
        return {} if self.host is None else {"Host": self.host}

    def extensions(self) -> dict[str, Any]:
        return {} if self.host is None else {"sni_hostname": self.host}


class NonPublicAddressError(Exception):
    """A host resolves to an address that is not public: each caller words the refusal its own way."""

    def __init__(self, host: str, address: Address) -> None:
        super().__init__(f"{host} resolves to a non-public address ({address})")
        self.host = host
        self.address = address


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns)


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to, within the deadline (the resolver has no timeout of its own).
    Raises OSError when it does not resolve, or resolves to nothing."""
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in getaddrinfo(host, port)]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return addresses


def pin_public(url: str, host: str, addresses: list[Address]) -> PinnedTarget:
    """`url` pointed at the first of `host`'s addresses, once all of them are public. Raises
    NonPublicAddressError naming the first that is not."""
    for address in addresses:
        if not address.is_global:
            raise NonPublicAddressError(host, address)
    parts = urlsplit(url)
    pinned = str(addresses[0]) if addresses[0].version == 4 else f"[{addresses[0]}]"
    return PinnedTarget(urlunsplit(("https", pinned, parts.path or "/", parts.query, "")), host=host)


@dataclass(frozen=True)
class DownloadPolicy:
    """Where videos (and input images) may come from. `local_http_hosts` is honoured only outside production."""

    allowed_hosts: tuple[str, ...]
    max_bytes: int
    production: bool = True
    local_http_hosts: tuple[str, ...] = ()
    timeout_s: float = 30.0

    @classmethod
    def from_setting(cls, allowed: str, *, max_bytes: int, production: bool) -> DownloadPolicy:
        """`*.klingai.com,http://127.0.0.1:8766`: patterns are https hosts; http:// entries are local-only
        (`http://127.0.0.1:*`: any port of that host, for a simulator whose CDN port the stack does not know)."""
        hosts: list[str] = []
        http_hosts: list[str] = []
        for entry in (e.strip().lower() for e in allowed.split(",")):
            if not entry:
                continue
            if entry.startswith("http://"):
                http_hosts.append(entry.removeprefix("http://").rstrip("/"))
            else:
                hosts.append(entry.removeprefix("https://").rstrip("/"))
        return cls(tuple(hosts), max_bytes, production, tuple(http_hosts) if not production else (), timeout_s=30.0)


def check_url(url: str, policy: DownloadPolicy, *, what: str = "video", hosts_parameter: str = "") -> PinnedTarget:
    """Refuse anything but an allowed host; in production also IP literals, ports other than 443 and
    internal addresses. Returns where to connect. `what` and `hosts_parameter` word the refusals for
    other fetches under the same rules (input images)."""
    hint = (
        f"add it to the {hosts_parameter} parameter"
        if hosts_parameter
        else "add it to the AllowedDownloadHosts parameter if Kling (or fal) serves videos from it"
    )
    listing = "download" if what == "video" else f"{what} URL"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise DownloadRefusedError("URL_NOT_ALLOWED", f"the {what} URL has no host: {redact_url(url)}")
    try:
        port = parts.port
    except ValueError:
        raise DownloadRefusedError(
            "URL_NOT_ALLOWED", f"the {what} URL has an invalid port: {redact_url(url)}"
        ) from None
    netloc = f"{host}:{port}" if port else host
    if parts.scheme == "http" and host_allowed(netloc, policy.local_http_hosts):
        return PinnedTarget(url)  # the local stack's simulator, allowed explicitly by configuration
    if parts.scheme != "https":
        raise DownloadRefusedError("URL_NOT_ALLOWED", f"only https {what} URLs are fetched, not {parts.scheme}://")
    if is_ip_literal(host):
        raise DownloadRefusedError("URL_NOT_ALLOWED", f"IP address hosts are not fetched ({host})")
    if not host_allowed(host, policy.allowed_hosts):
        raise DownloadRefusedError(
            "URL_NOT_ALLOWED",
            f"host {host} is not in the {listing} allow-list ({', '.join(policy.allowed_hosts) or 'empty'}); {hint}",
        )
    if not policy.production:
        return PinnedTarget(url)
    if port not in (None, 443):
        raise DownloadRefusedError("URL_NOT_ALLOWED", f"only port 443 is fetched, not {port} ({host})")
    try:
        addresses = resolve(host, 443)
    except OSError as exc:
        raise TransientDownloadError(f"cannot resolve {host}: {exc}") from exc
    try:
        return pin_public(url, host, addresses)
    except NonPublicAddressError as exc:
        raise DownloadRefusedError(
            "URL_NOT_ALLOWED", f"host {host} resolves to a non-public address ({exc.address}); refused"
        ) from None
