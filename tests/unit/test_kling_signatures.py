"""Kling's signed callbacks: verified with Kling's own test vector (docs: Callbacks, Signing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kling_pipeline.adapters.kling_signatures import (
    BadSignatureError,
    is_signed,
    kling_signers,
    verify_kling_callback,
)
from kling_pipeline.errors import ConfigError

# Kling's test vector (klingai.com/document-api/api/get-started/callbacks, ../shared/kling-api.md).
SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
WEBHOOK_ID = "9876543210"
TIMESTAMP = 1781080794
BODY = b'{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}'
SIGNATURE = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="
SIGNED_AT = datetime.fromtimestamp(TIMESTAMP, UTC)
OTHER_SECRET = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyc2VjcmV0MTI="


def headers(signature: str = SIGNATURE, timestamp: int = TIMESTAMP, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
    return {"Webhook-Id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_kling_test_vector_verifies() -> None:
    # Given Kling's secret, and its signed example delivered the second it was signed
    signers = kling_signers([SECRET])
    # When it is verified over the raw body
    webhook_id = verify_kling_callback(signers, BODY, headers(), now=SIGNED_AT)
    # Then it is Kling's, and its webhook-id is what de-duplicates it
    assert webhook_id == WEBHOOK_ID


def test_a_changed_body_id_or_timestamp_does_not_verify() -> None:
    # Given Kling's secret
    signers = kling_signers([SECRET])
    # When any signed part differs from what Kling signed, Then it is refused
    with pytest.raises(BadSignatureError, match="no signature matches"):
        verify_kling_callback(signers, BODY.replace(b"succeeded", b"failed"), headers(), now=SIGNED_AT)
    with pytest.raises(BadSignatureError, match="no signature matches"):
        verify_kling_callback(signers, BODY, headers(webhook_id="9876543211"), now=SIGNED_AT)
    with pytest.raises(BadSignatureError, match="no signature matches"):
        verify_kling_callback(signers, BODY, headers(timestamp=TIMESTAMP + 1), now=SIGNED_AT)
    # (nor with a secret that is not the one Kling signed with)
    with pytest.raises(BadSignatureError, match="no signature matches"):
        verify_kling_callback(kling_signers([OTHER_SECRET]), BODY, headers(), now=SIGNED_AT)


@pytest.mark.parametrize("skew_s", [-301, 301, 86400 * 180])
def test_a_timestamp_more_than_five_minutes_off_is_refused(skew_s: int) -> None:
    # Given Kling's genuine example, When it arrives more than 5 minutes from its timestamp
    now = SIGNED_AT + timedelta(seconds=skew_s)
    # Then it is refused, however genuine its signature
    with pytest.raises(BadSignatureError, match="off"):
        verify_kling_callback(kling_signers([SECRET]), BODY, headers(), now=now)


@pytest.mark.parametrize("timestamp", [999_999_999_999, 0])
def test_a_timestamp_centuries_away_is_refused_not_an_error(timestamp: int) -> None:
    with pytest.raises(BadSignatureError, match="off"):
        verify_kling_callback(kling_signers([SECRET]), BODY, headers(timestamp=timestamp), now=SIGNED_AT)


@pytest.mark.parametrize("skew_s", [-300, 0, 300])
def test_a_timestamp_within_five_minutes_verifies(skew_s: int) -> None:
    now = SIGNED_AT + timedelta(seconds=skew_s)
    assert verify_kling_callback(kling_signers([SECRET]), BODY, headers(), now=now) == WEBHOOK_ID


def test_during_a_rotation_either_secret_verifies_the_two_signatures() -> None:
    # Given Kling mid-rotation: it signs with the old secret and the new, space-separated
    new_signature = kling_signers([OTHER_SECRET])[0].sign(WEBHOOK_ID, SIGNED_AT, BODY)
    both = headers(signature=f"{SIGNATURE} {new_signature}")
    # When we hold the old secret, the new one, or both, Then the callback verifies
    for held in ([SECRET], [OTHER_SECRET], [SECRET, OTHER_SECRET]):
        assert verify_kling_callback(kling_signers(held), BODY, both, now=SIGNED_AT) == WEBHOOK_ID
    # and a callback signed with the old secret alone verifies while we hold both (we stored the new first)
    assert verify_kling_callback(kling_signers([OTHER_SECRET, SECRET]), BODY, headers(), now=SIGNED_AT)


@pytest.mark.parametrize(
    "broken",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-timestamp": "1781080794.0"},
        {"webhook-timestamp": "-1781080794"},
        {"webhook-timestamp": "\uff19"},  # a digit, not an ASCII one
        {"webhook-signature": "v1,"},
        {"webhook-id": "9" * 201},
    ],
)
def test_incomplete_or_malformed_signature_headers_are_refused(broken: dict[str, str]) -> None:
    # Given Kling's example with one header broken, When verified, Then it is refused (never another error)
    with pytest.raises(BadSignatureError):
        verify_kling_callback(kling_signers([SECRET]), BODY, headers() | broken, now=SIGNED_AT)


def test_a_callback_is_signed_when_it_carries_a_signature_header() -> None:
    assert is_signed({"Webhook-Signature": SIGNATURE})
    assert not is_signed({"webhook-id": WEBHOOK_ID, "content-type": "application/json"})


@pytest.mark.parametrize("secret", ["dGVzdHNlY3JldA==", "whsec_not*base64!", "whsec_"])
def test_a_secret_of_the_wrong_shape_is_a_config_error_that_names_no_secret(secret: str) -> None:
    with pytest.raises(ConfigError) as raised:
        kling_signers(["whsec_dGVzdHNlY3JldA==", secret])
    assert "#2" in str(raised.value)
    assert secret not in str(raised.value) or secret == "whsec_"
