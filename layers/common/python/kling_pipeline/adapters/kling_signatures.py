"""Kling's signed callbacks (Standard Webhooks): `webhook-signature` is `v1,` + base64 HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{raw body}`, keyed by the account's `whsec_` secret.

A callback that verifies came from Kling, so its body can be acted on without a GET (callback.py).
The signatures are computed with the `standardwebhooks` library (as Kling's docs recommend); the
timestamp is checked here, not by the library's `verify`, because that one reads the wall clock and
the check must take an injectable `now` (Kling's own test vector is dated 2026-06).

During a rotation of Kling's secret the header carries several space-separated signatures, one per
secret, all valid for 7 days: a callback verifies when any signature matches any secret we hold.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from kling_pipeline.errors import ConfigError

TOLERANCE_S = 5 * 60  # Kling's docs: refuse a timestamp beyond 5 minutes of skew
MAX_WEBHOOK_ID_CHARS = 200  # ids are stored on the job for de-duplication (job_store.remember_callback)
SIGNATURE_HEADER = "webhook-signature"


class BadSignatureError(Exception):
    """The callback claims to be signed and does not verify; the message says why (never a secret)."""


def is_signed(headers: Mapping[str, str]) -> bool:
    """The callback carries a signature (Kling sends none for an account without a webhook secret)."""
    return any(key.lower() == SIGNATURE_HEADER for key in headers)


def kling_signers(secrets: Sequence[str]) -> tuple[Webhook, ...]:
    """One signer per `whsec_` secret held; ConfigError (which names no secret) for one that is not base64."""
    signers = []
    for number, secret in enumerate(secrets, start=1):
        if not secret.startswith("whsec_"):
            raise ConfigError(f"Kling webhook secret #{number} does not start with whsec_")
        try:
            signers.append(Webhook(secret))
        except (ValueError, EmptyWebhookSecretError) as exc:  # binascii.Error is a ValueError
            raise ConfigError(f"Kling webhook secret #{number} is not base64 after its whsec_ prefix") from exc
    return tuple(signers)


def verify_kling_callback(
    signers: Sequence[Webhook], body: bytes, headers: Mapping[str, str], *, now: datetime | None = None
) -> str:
    """The callback's `webhook-id` when its signature verifies over the raw `body` with one of
    `signers` and its timestamp is within TOLERANCE_S of `now`; else BadSignatureError."""
    lowered = {key.lower(): value for key, value in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get(SIGNATURE_HEADER, "").split()
    if not (webhook_id and timestamp and signatures):
        raise BadSignatureError("webhook-id, webhook-timestamp and webhook-signature are all needed")
    if len(webhook_id) > MAX_WEBHOOK_ID_CHARS:
        raise BadSignatureError(f"webhook-id longer than {MAX_WEBHOOK_ID_CHARS} characters")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise BadSignatureError("webhook-timestamp is not whole seconds")
    # Compared as numbers first: a timestamp centuries away is refused, not a datetime overflow.
    skew_s = abs((now or datetime.now(UTC)).timestamp() - int(timestamp))
    if skew_s > TOLERANCE_S:
        raise BadSignatureError(f"webhook-timestamp {skew_s:.0f} s off (more than {TOLERANCE_S} s)")
    signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    given = [signature.encode() for signature in signatures]
    for signer in signers:
        expected = signer.sign(webhook_id, signed_at, body).encode()
        if any(hmac.compare_digest(expected, signature) for signature in given):
            return webhook_id
    raise BadSignatureError("no signature matches a Kling webhook secret we hold")
