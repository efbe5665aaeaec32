"""Job webhooks: where they may point, and one signed POST (the Standard Webhooks spec).

The rules are the downloads' (adapters/video_transfer.py): https on port 443 only, no IP literals, no
private, loopback or link-local addresses, and the connection goes to the very address that passed
the check (no second DNS answer), with the host name kept for TLS. An optional allow-list narrows
it further. Only `PipelineMode: local` lets a webhook go to plain http on 127.0.0.1 (a test's
receiver), never production.

Signing is the `standardwebhooks` package's: `webhook-id` (the EventBridge event's id, the same on
every retry, so receivers can drop duplicates), `webhook-timestamp` (when this attempt was signed)
and `webhook-signature` (`v1,` + HMAC-SHA256 of `id.timestamp.body`).
"""

from __future__ import annotations

import binascii
import fnmatch
import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from kling_pipeline.errors import ConfigError, WebhookRefusedError

LOCAL_HTTP_HOST = "127.0.0.1"  # the only plain-http webhook host, and only in local mode
MAX_ANSWER_CHARS = 200  # of the receiver's answer, kept for logs


@dataclass(frozen=True)
class WebhookPolicy:
    allowed_hosts: tuple[str, ...]  # host patterns (fnmatch); empty = any public host
    production: bool = True
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, allowed: str, *, pipeline_mode: str, timeout_s: float = 10.0) -> WebhookPolicy:
        hosts = tuple(h.strip().lower() for h in allowed.split(",") if h.strip())
        return cls(hosts, production=pipeline_mode != "local", timeout_s=timeout_s)


@dataclass(frozen=True)
class WebhookTarget:
    """Where to connect: the checked address (production), with the host name for Host and TLS."""

    url: str
    host: str | None = None


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
    if _is_ip_literal(host):
        raise WebhookRefusedError(f"webhook_url must name a host, not an IP address ({host})")
    if port not in (None, 443):
        raise WebhookRefusedError(f"webhook_url must use port 443, not {port}")
    if policy.allowed_hosts and not any(fnmatch.fnmatchcase(host, p) for p in policy.allowed_hosts):
        raise WebhookRefusedError(
            f"webhook host {host} is not in the allow-list ({', '.join(policy.allowed_hosts)}); "
            "see the WebhookAllowedHosts parameter"
        )
    return host


def webhook_target(url: str, policy: WebhookPolicy) -> WebhookTarget:
    """The checked URL and, in production, the public address to connect to. Raises
    WebhookRefusedError for a URL that may not be called, OSError when its name does not resolve."""
    host = check_webhook_url(url, policy)
    if not policy.production:
        return WebhookTarget(url)
    addresses = [
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    ]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        if not address.is_global:
            raise WebhookRefusedError(f"webhook host {host} resolves to a non-public address ({address})")
    parts = urlsplit(url)
    pinned = str(addresses[0]) if addresses[0].version == 4 else f"[{addresses[0]}]"
    return WebhookTarget(urlunsplit(("https", pinned, parts.path or "/", parts.query, "")), host=host)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Delivery:
    """What one attempt came to: the receiver's status (None when there was no answer)."""

    status: int | None
    detail: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    def __init__(self, secret: str, policy: WebhookPolicy, *, http: httpx.Client | None = None) -> None:
        try:
            self._signer = Webhook(secret)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("the webhook signing secret is not base64 (optionally prefixed whsec_)") from exc
        self.policy = policy
        self._http = http or httpx.Client(timeout=httpx.Timeout(policy.timeout_s), follow_redirects=False)

    def signed_headers(self, message_id: str, body: str, *, at: datetime | None = None) -> dict[str, str]:
        when = at or datetime.now(UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": self._signer.sign(message_id, when, body),
            "content-type": "application/json",
            "user-agent": "kling-pipeline-webhooks",
        }

    def send(self, url: str, *, message_id: str, body: str) -> Delivery:
        """POST `body`, signed, to `url`. Raises WebhookRefusedError for a URL that may not be called;
        every other failure is a Delivery without a 2xx status (worth another attempt later)."""
        try:
            target = webhook_target(url, self.policy)
        except OSError as exc:
            return Delivery(None, f"cannot resolve the webhook host: {exc}")
        headers = self.signed_headers(message_id, body)
        extensions: dict[str, Any] = {}
        if target.host is not None:
            headers["host"] = target.host
            extensions["sni_hostname"] = target.host
        request = self._http.build_request(
            "POST", target.url, content=body.encode(), headers=headers, extensions=extensions
        )
        try:
            response = self._http.send(request, stream=True)
            try:
                # Only the start of the answer is read: a receiver cannot make the sender hold a large body.
                answer = next(response.iter_raw(MAX_ANSWER_CHARS), b"")
            finally:
                response.close()
        except httpx.HTTPError as exc:
            return Delivery(None, f"{type(exc).__name__}: {str(exc)[:MAX_ANSWER_CHARS]}")
        return Delivery(response.status_code, answer[:MAX_ANSWER_CHARS].decode("utf-8", "replace"))
