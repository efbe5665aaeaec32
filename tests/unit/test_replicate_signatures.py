"""Replicate's webhooks verify with the account's stored secret (Standard Webhooks): a good one gives its
webhook-id, the de-duplication key; a tampered, stale or unsigned one, or one signed with another
secret, is refused without naming a secret."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from kling_pipeline.adapters.replicate_signatures import ReplicateWebhookVerifier
from kling_pipeline.errors import ConfigError, ProviderSignatureError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_b3RoZXItc2VjcmV0LW9mLWFub3RoZXItYWNjb3VudA=="
NOW = 1796637600.0
BODY = b'{"id":"p1","status":"succeeded","output":"https://replicate.delivery/x.mp4"}'


def signed(secret: str = SECRET, at: float = NOW, body: bytes = BODY, webhook_id: str = "msg_1") -> dict[str, str]:
    when = datetime.fromtimestamp(at, UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(webhook_id, when, body),
    }


def test_a_good_signature_gives_the_webhook_id() -> None:
    assert ReplicateWebhookVerifier([SECRET]).verify(BODY, signed(), now=NOW + 10) == "msg_1"


def test_during_a_rotation_either_secret_verifies() -> None:
    assert ReplicateWebhookVerifier([OTHER, SECRET]).verify(BODY, signed(), now=NOW) == "msg_1"


@pytest.mark.parametrize(
    ("body", "headers", "now", "why"),
    [
        (BODY.replace(b"succeeded", b"failed"), signed(), NOW, "no signature matches"),
        (BODY, signed(OTHER), NOW, "no signature matches"),
        (BODY, signed(), NOW + 301, "more than 300 s"),
        (BODY, {"webhook-id": "msg_1"}, NOW, "are all needed"),
    ],
)
def test_a_tampered_foreign_stale_or_unsigned_webhook_is_refused(
    body: bytes, headers: dict[str, str], now: float, why: str
) -> None:
    with pytest.raises(ProviderSignatureError, match=why) as caught:
        ReplicateWebhookVerifier([SECRET]).verify(body, headers, now=now)
    assert SECRET not in str(caught.value)


def test_a_secret_that_is_not_whsec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="whsec_"):
        ReplicateWebhookVerifier(["not-a-secret"])
    with pytest.raises(ConfigError, match="needed"):
        ReplicateWebhookVerifier([])
