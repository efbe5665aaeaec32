"""The simulator's webhook signing: an Ed25519 key pair of its own, published as a JWKS, and fal's
signed message (`request_id \\n user_id \\n timestamp \\n hex(sha256(body))`, hex signature)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SigningKey:
    """One Ed25519 key pair and its JWK."""

    def __init__(self, private: Ed25519PrivateKey | None = None, kid: str | None = None) -> None:
        self.private = private or Ed25519PrivateKey.generate()
        self.kid = kid or uuid.uuid4().hex[:16]

    def jwk(self) -> dict[str, str]:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": self.kid, "use": "sig", "alg": "EdDSA"}

    def sign(self, message: bytes) -> str:
        return self.private.sign(message).hex()


def jwks(keys: list[SigningKey]) -> bytes:
    return json.dumps({"keys": [key.jwk() for key in keys]}).encode()


def webhook_headers(
    key: SigningKey, request_id: str, user_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """fal's four webhook headers for `body`."""
    timestamp = str(int(time.time() if now is None else now))
    message = "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": key.sign(message),
    }
