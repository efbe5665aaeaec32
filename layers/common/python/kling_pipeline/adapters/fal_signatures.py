"""fal.ai's signed webhooks: ED25519 over `request_id \\n user_id \\n timestamp \\n hex(sha256(raw body))`,
verified against the keys of fal's JWKS (docs/fal-contract.md, "Webhooks").

- Headers `X-Fal-Webhook-Request-Id`, `X-Fal-Webhook-User-Id`, `X-Fal-Webhook-Timestamp` (seconds) and
  `X-Fal-Webhook-Signature` (hex). A timestamp more than 300 s from `now` is refused before any
  cryptography (and `now` is injectable, for tests and replays).
- Keys come from the JWKS URL (a setting: fal's docs name two), base64url `x` values of OKP/Ed25519
  keys, cached at most 24 h. A signature no cached key verifies fetches the JWKS once more (fal rotated
  its keys) and is tried again; such refreshes are at most one a minute, so forged webhooks cannot make
  us hammer fal's JWKS. fal's headers carry no key id: "an unknown key" is "no key we hold verifies".
- The de-duplication key is the request_id (returned): fal may deliver a webhook twice.

`cryptography` is imported on first verification only: a callback function's cold start does not pay
for it unless a fal webhook arrives (tests/unit/test_fal_signatures.py checks the import stays lazy).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from kling_pipeline.adapters.deadlines import within
from kling_pipeline.adapters.pinned_http import deadline_transport
from kling_pipeline.errors import ProviderSignatureError

PROVIDER: Final = "fal"
TOLERANCE_S = 300
JWKS_MAX_AGE_S = 24 * 3600
REFRESH_MIN_INTERVAL_S = 60.0  # an unverifiable signature refreshes the keys at most this often
JWKS_TIMEOUT_S = 5.0
MAX_ID_CHARS = 200
HEADERS = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp", "x-fal-webhook-signature")

FetchJwks = Callable[[str], bytes]


def fetch_jwks(url: str) -> bytes:
    """The JWKS document at `url`, within JWKS_TIMEOUT_S in all (the deadline transport)."""
    with httpx.Client(timeout=JWKS_TIMEOUT_S, transport=deadline_transport()) as client, within(JWKS_TIMEOUT_S):
        response = client.get(url)
        response.raise_for_status()
        return response.content


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs for one webhook."""
    return "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()


class FalWebhookVerifier:
    """Verifies fal's webhooks; one per container (its key cache kept while warm)."""

    def __init__(
        self,
        jwks_url: str,
        *,
        fetch: FetchJwks = fetch_jwks,
        max_age_s: float = JWKS_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self._fetch = fetch
        self._max_age_s = min(max_age_s, JWKS_MAX_AGE_S)
        self._clock = clock
        self._keys: list[Any] = []
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def __call__(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        return self.verify(body, headers, now=now)

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> str:
        """The request_id (the de-duplication key) when the webhook verifies; else ProviderSignatureError."""
        lowered = {key.lower(): value for key, value in headers.items()}
        request_id, user_id, timestamp, signature_hex = (lowered.get(name, "") for name in HEADERS)
        if not (request_id and user_id and timestamp and signature_hex):
            raise ProviderSignatureError(PROVIDER, "the four X-Fal-Webhook-* headers are all needed")
        if len(request_id) > MAX_ID_CHARS or len(user_id) > MAX_ID_CHARS:
            raise ProviderSignatureError(PROVIDER, f"a webhook id longer than {MAX_ID_CHARS} characters")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise ProviderSignatureError(PROVIDER, "X-Fal-Webhook-Timestamp is not whole seconds")
        skew = abs((time.time() if now is None else now) - int(timestamp))
        if skew > TOLERANCE_S:
            raise ProviderSignatureError(PROVIDER, f"timestamp {skew:.0f} s off (more than {TOLERANCE_S} s)")
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise ProviderSignatureError(PROVIDER, "X-Fal-Webhook-Signature is not hex") from None
        message = signed_message(request_id, user_id, timestamp, body)
        if self._any_key_verifies(signature, message, self._current_keys()):
            return request_id
        refreshed = self._refresh_if_allowed()
        if refreshed is not None and self._any_key_verifies(signature, message, refreshed):
            return request_id
        raise ProviderSignatureError(PROVIDER, "no key of fal's JWKS verifies the signature")

    # -- keys -----------------------------------------------------------------------------------

    def _current_keys(self) -> list[Any]:
        with self._lock:
            fresh = self._fetched_at is not None and self._clock() - self._fetched_at < self._max_age_s
            if fresh:
                return self._keys
        return self._load()

    def _refresh_if_allowed(self) -> list[Any] | None:
        with self._lock:
            if self._fetched_at is not None and self._clock() - self._fetched_at < REFRESH_MIN_INTERVAL_S:
                return None
        return self._load()

    def _load(self) -> list[Any]:
        try:
            document = self._fetch(self.jwks_url)
        except (httpx.HTTPError, OSError) as exc:
            # A webhook we cannot verify is refused (401): fal tries again, and the poller asks meanwhile.
            raise ProviderSignatureError(PROVIDER, f"fal's JWKS could not be read ({type(exc).__name__})") from None
        keys = parse_jwks(document)
        with self._lock:
            self._keys = keys
            self._fetched_at = self._clock()
            self.fetches += 1
        return keys

    @staticmethod
    def _any_key_verifies(signature: bytes, message: bytes, keys: list[Any]) -> bool:
        from cryptography.exceptions import InvalidSignature

        for key in keys:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return True
        return False


def parse_jwks(document: bytes) -> list[Any]:
    """The Ed25519 public keys of a JWKS document (others skipped); ProviderSignatureError when none."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = json.loads(document)
    except ValueError:
        raise ProviderSignatureError(PROVIDER, "fal's JWKS is not JSON") from None
    keys = []
    for entry in data.get("keys", []) if isinstance(data, Mapping) else []:
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv", "Ed25519") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
    if not keys:
        raise ProviderSignatureError(PROVIDER, "fal's JWKS holds no Ed25519 key")
    return keys
