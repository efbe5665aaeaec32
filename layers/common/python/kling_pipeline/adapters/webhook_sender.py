"""Job webhooks: one signed POST (the Standard Webhooks spec) to a checked address.

Where a webhook may point is adapters/webhook_targets.py; each attempt checks it again and connects
to the address that passed. Signing is the `standardwebhooks` package's: `webhook-id` (the
EventBridge event's id, the same on every retry, so receivers can drop duplicates),
`webhook-timestamp` (when this attempt was signed) and `webhook-signature` (`v1,` + HMAC-SHA256 of
`id.timestamp.body`).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from kling_pipeline.adapters.deadlines import within
from kling_pipeline.adapters.pinned_http import pinned_client, pinned_request
from kling_pipeline.adapters.webhook_targets import WebhookPolicy, webhook_target
from kling_pipeline.errors import ConfigError
from kling_pipeline.redaction import redact

MAX_ANSWER_CHARS = 200  # of the receiver's answer, kept for logs


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
        self._http = http or pinned_client(timeout=httpx.Timeout(policy.timeout_s), follow_redirects=False)

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
        every other failure is a Delivery without a 2xx status (worth another attempt later).

        The whole exchange (DNS, connect, the answer's status, headers and first bytes) ends within the
        policy's timeout, or the invocation's deadline if sooner: a receiver that drips its answer is a
        failed delivery, not a held Lambda. The detail never holds the URL's query string (tokens)."""
        with within(self.policy.timeout_s) as given:
            delivery = self._send(url, message_id=message_id, body=body, given_s=given)
        return Delivery(delivery.status, redact(delivery.detail, url)[:MAX_ANSWER_CHARS])

    def _send(self, url: str, *, message_id: str, body: str, given_s: float | None) -> Delivery:
        try:
            target = webhook_target(url, self.policy)
        except OSError as exc:
            return Delivery(None, f"cannot resolve the webhook host: {exc}")
        request = pinned_request(
            self._http, "POST", target, content=body.encode(), headers=self.signed_headers(message_id, body)
        )
        try:
            response = self._http.send(request, stream=True)
            try:
                # Only the start of the answer is read: a receiver cannot make the sender hold a large body.
                answer = next(response.iter_raw(MAX_ANSWER_CHARS), b"")
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            return Delivery(
                None, f"no whole answer within {given_s or self.policy.timeout_s:.3g} s ({type(exc).__name__})"
            )
        except httpx.HTTPError as exc:
            return Delivery(None, f"{type(exc).__name__}: {str(exc)[:MAX_ANSWER_CHARS]}")
        return Delivery(response.status_code, answer[:MAX_ANSWER_CHARS].decode("utf-8", "replace"))
