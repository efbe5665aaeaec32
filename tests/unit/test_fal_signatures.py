"""fal's webhook signatures: ED25519 over request_id, user_id, timestamp and the body's SHA-256, verified
against fal's JWKS (cached at most a day, refreshed once when no key verifies), within 300 s. The key
pairs are made here; the JWKS is served by a function that counts its calls."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kling_pipeline.adapters.fal_signatures import FalWebhookVerifier
from kling_pipeline.errors import ProviderSignatureError
from tests.support.template import ROOT

NOW = 1_796_000_000
BODY = b'{"request_id":"req-1","status":"OK","payload":{"video":{"url":"https://v3.fal.media/v.mp4"}}}'


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def signed(key: Ed25519PrivateKey, body: bytes = BODY, *, at: int = NOW, request_id: str = "req-1") -> dict[str, str]:
    timestamp = str(at)
    message = f"{request_id}\nuser-7\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": "user-7",
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


class Jwks:
    """fal's JWKS endpoint: the keys it serves now, and how often it was asked."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys = list(keys)
        self.calls = 0

    def __call__(self, url: str) -> bytes:
        self.calls += 1
        return json.dumps({"keys": [jwk(k) for k in self.keys]}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(jwks: Jwks, clock: Clock | None = None) -> FalWebhookVerifier:
    return FalWebhookVerifier("https://jwks.test/.well-known/jwks.json", fetch=jwks, clock=clock or Clock())


def test_a_good_signature_verifies_and_gives_the_request_id_to_deduplicate_on() -> None:
    key = Ed25519PrivateKey.generate()
    assert verifier(Jwks(key)).verify(BODY, signed(key), now=NOW) == "req-1"


def test_a_tampered_body_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ProviderSignatureError, match="no key"):
        verifier(Jwks(key)).verify(BODY.replace(b"OK", b"ERROR"), signed(key), now=NOW)


def test_a_signature_by_a_key_fal_does_not_publish_is_refused() -> None:
    published, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(ProviderSignatureError):
        verifier(Jwks(published)).verify(BODY, signed(other), now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 10_000_000])
def test_a_stale_or_future_timestamp_is_refused_before_any_key_is_fetched(skew: int) -> None:
    key = Ed25519PrivateKey.generate()
    jwks = Jwks(key)
    with pytest.raises(ProviderSignatureError, match="more than 300 s"):
        verifier(jwks).verify(BODY, signed(key, at=NOW - skew), now=NOW)
    assert jwks.calls == 0


def test_a_timestamp_within_300_s_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    assert verifier(Jwks(key)).verify(BODY, signed(key, at=NOW - 299), now=NOW) == "req-1"


def test_missing_headers_or_a_signature_that_is_not_hex_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    headers = signed(key)
    with pytest.raises(ProviderSignatureError, match="headers"):
        verifier(Jwks(key)).verify(BODY, {k: v for k, v in headers.items() if "User" not in k}, now=NOW)
    with pytest.raises(ProviderSignatureError, match="not hex"):
        verifier(Jwks(key)).verify(BODY, headers | {"X-Fal-Webhook-Signature": "zz"}, now=NOW)


def test_a_key_fal_rotated_in_is_fetched_once_and_then_verifies() -> None:
    # Given a verifier that cached fal's old key a few minutes ago
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    jwks, clock = Jwks(old), Clock()
    check = verifier(jwks, clock)
    assert check.verify(BODY, signed(old), now=NOW) == "req-1"
    # When fal rotates to a new key and signs with it
    jwks.keys = [new]
    clock.now += 120
    # Then the JWKS is fetched once more, and the webhook verifies
    assert check.verify(BODY, signed(new), now=NOW) == "req-1"
    assert jwks.calls == 2
    # And forged webhooks right after do not make us fetch again
    for _ in range(5):
        with pytest.raises(ProviderSignatureError):
            check.verify(BODY, signed(Ed25519PrivateKey.generate()), now=NOW)
    assert jwks.calls == 2


def test_the_keys_are_kept_at_most_a_day() -> None:
    key = Ed25519PrivateKey.generate()
    jwks, clock = Jwks(key), Clock()
    check = verifier(jwks, clock)
    check.verify(BODY, signed(key), now=NOW)
    clock.now += 23 * 3600
    check.verify(BODY, signed(key), now=NOW)
    assert jwks.calls == 1
    clock.now += 3601
    check.verify(BODY, signed(key), now=NOW)
    assert jwks.calls == 2


def test_a_jwks_without_an_ed25519_key_verifies_nothing() -> None:
    class Empty(Jwks):
        def __call__(self, url: str) -> bytes:
            self.calls += 1
            return b'{"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}'

    with pytest.raises(ProviderSignatureError, match="no Ed25519 key"):
        verifier(Empty()).verify(BODY, signed(Ed25519PrivateKey.generate()), now=NOW)


def test_importing_the_fal_adapters_does_not_import_cryptography() -> None:
    # Given a fresh interpreter, as a callback function's cold start
    probe = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'layers' / 'common' / 'python')!r}]; "
        "import kling_pipeline.adapters.fal_signatures, kling_pipeline.adapters.fal_client; "
        "print('cryptography' in sys.modules)"
    )
    # When the fal adapters are imported
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    # Then cryptography waits for the first fal webhook
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
