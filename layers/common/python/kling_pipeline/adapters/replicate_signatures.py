"""Replicate's signed webhooks (Standard Webhooks): `webhook-signature` is `v1,` + base64 HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{raw body}`, keyed by the account's webhook secret (`whsec_...`).

**The secret is stored as a secret, not read from Replicate at run time.** Replicate serves it at
`GET /v1/webhooks/default/secret` (docs/replicate-contract.md, "Webhooks"); the deployment reads it once
(`ReplicateClient.webhook_signing_secret`, at set-up) and keeps it in a secret of its own,
ReplicateWebhookSecret, which the callback function alone reads; the API token (ReplicateCredentials) is
read only by the functions that call Replicate (submit, poller, API), and the callback's role cannot read
it. Why: a token that can create predictions, i.e. spend money, stays out of the one function the
internet calls (adapters/replicate_client.ReplicateWebhooks: its door there); verifying a webhook
makes no call to Replicate, so a Replicate outage or a 429 on its API never turns good webhooks into
401s; and a forged webhook cannot make us call Replicate. Several secrets may be held during a rotation.

- Timestamps more than 300 s from `now` are refused (Standard Webhooks' tolerance), `now` injectable.
- The de-duplication key is `webhook-id`: the same over Replicate's retries of one delivery.
- Signatures computed with the `standardwebhooks` library, as adapters/kling_signatures.py does.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from kling_pipeline.errors import ConfigError, ProviderSignatureError

PROVIDER = "replicate"
TOLERANCE_S = 300
MAX_WEBHOOK_ID_CHARS = 200


class ReplicateWebhookVerifier:
    """Verifies Replicate's webhooks with the account's secret(s), as stored; returns the `webhook-id`."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ConfigError("Replicate's webhook secret is needed (whsec_..., from GET /v1/webhooks/default/secret)")
        signers = []
        for number, secret in enumerate(secrets, start=1):
            if not secret.startswith("whsec_"):
                raise ConfigError(f"Replicate webhook secret #{number} does not start with whsec_")
            try:
                signers.append(Webhook(secret))
            except (ValueError, EmptyWebhookSecretError) as exc:
                raise ConfigError(f"Replicate webhook secret #{number} is not base64 after its whsec_ prefix") from exc
        self._signers = tuple(signers)

    def __call__(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        return self.verify(body, headers, now=now)

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> str:
        """The `webhook-id` when the signature verifies over the raw `body` and the timestamp is within
        TOLERANCE_S of `now`; else ProviderSignatureError (never naming a secret)."""
        lowered = {key.lower(): value for key, value in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        timestamp = lowered.get("webhook-timestamp", "")
        signatures = lowered.get("webhook-signature", "").split()
        if not (webhook_id and timestamp and signatures):
            raise ProviderSignatureError(PROVIDER, "webhook-id, webhook-timestamp and webhook-signature are all needed")
        if len(webhook_id) > MAX_WEBHOOK_ID_CHARS:
            raise ProviderSignatureError(PROVIDER, f"webhook-id longer than {MAX_WEBHOOK_ID_CHARS} characters")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise ProviderSignatureError(PROVIDER, "webhook-timestamp is not whole seconds")
        current = datetime.now(UTC).timestamp() if now is None else now
        skew = abs(current - int(timestamp))
        if skew > TOLERANCE_S:
            raise ProviderSignatureError(PROVIDER, f"webhook-timestamp {skew:.0f} s off (more than {TOLERANCE_S} s)")
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        given = [signature.encode() for signature in signatures]
        for signer in self._signers:
            expected = signer.sign(webhook_id, signed_at, body).encode()
            if any(hmac.compare_digest(expected, signature) for signature in given):
                return webhook_id
        raise ProviderSignatureError(PROVIDER, "no signature matches a Replicate webhook secret we hold")
