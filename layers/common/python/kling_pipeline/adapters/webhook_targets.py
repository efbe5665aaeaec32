"""Where job webhooks may point: the rules, checked when a job is accepted and again when it is sent.

The address rules are the downloads' (adapters/public_addresses.py): https on port 443 only, no IP
literals, no private, loopback or link-local addresses, and the connection goes to the very address
that passed the check (no second DNS answer), with the host name kept for TLS. An optional allow-list narrows
it further. Only `PipelineMode: local` lets a webhook go to plain http on 127.0.0.1 (a test's
receiver), never production. Apart from the sender (adapters/webhook_sender.py) so that the jobs
API checks a job's webhook URL without importing an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from kling_pipeline.adapters.public_addresses import (
    NonPublicAddressError,
    PinnedTarget,
    host_allowed,
    is_ip_literal,
    pin_public,
    resolve,
)
from kling_pipeline.errors import WebhookRefusedError

LOCAL_HTTP_HOST = "127.0.0.1"  # the only plain-http webhook host, and only in local mode


@dataclass(frozen=True)
class WebhookPolicy:
    allowed_hosts: tuple[str, ...]  # host patterns (fnmatch); empty = any public host
    production: bool = True
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, allowed: str, *, pipeline_mode: str, timeout_s: float = 10.0) -> WebhookPolicy:
        hosts = tuple(h.strip().lower() for h in allowed.split(",") if h.strip())
        return cls(hosts, production=pipeline_mode != "local", timeout_s=timeout_s)


def check_webhook_url(url: str, policy: WebhookPolicy) -> str:
    """What can be decided without DNS: scheme, host, port, the allow-list. Returns the host name;
    raises WebhookRefusedError saying why not."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise WebhookRefusedError("webhook_url is not a valid URL") from None
    if not host:
        raise WebhookRefusedError("webhook_url has no host")
    if not policy.production and parts.scheme == "http" and host == LOCAL_HTTP_HOST:
        return host  # a receiver on this machine, in local mode only
    if parts.scheme != "https":
        raise WebhookRefusedError(f"webhook_url must be https, not {parts.scheme}://")
    if is_ip_literal(host):
        raise WebhookRefusedError(f"webhook_url must name a host, not an IP address ({host})")
    if port not in (None, 443):
        raise WebhookRefusedError(f"webhook_url must use port 443, not {port}")
    if policy.allowed_hosts and not host_allowed(host, policy.allowed_hosts):
        raise WebhookRefusedError(
            f"webhook host {host} is not in the allow-list ({', '.join(policy.allowed_hosts)}); "
            "see the WebhookAllowedHosts parameter"
        )
    return host


def webhook_target(url: str, policy: WebhookPolicy) -> PinnedTarget:
    """The checked URL and, in production, the public address to connect to. Raises
    WebhookRefusedError for a URL that may not be called, OSError when its name does not resolve (in
    time: the look-up is bounded by the current deadline, adapters/deadlines.py)."""
    host = check_webhook_url(url, policy)
    if not policy.production:
        return PinnedTarget(url)
    try:
        return pin_public(url, host, resolve(host, 443))
    except NonPublicAddressError as exc:
        raise WebhookRefusedError(f"webhook host {host} resolves to a non-public address ({exc.address})") from None
