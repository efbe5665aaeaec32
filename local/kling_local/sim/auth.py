"""Kling's JWT check, hand-rolled on the stdlib so every failure maps to Kling's exact code.

Kling: `Authorization: Bearer <jwt>`, HS256 signed with the secret key, `iss` = access key,
`nbf` / `exp` honoured. 1001 empty header, 1002 malformed header or token, 1000 bad signature or
unknown issuer, 1003 not yet valid, 1004 expired. No message ever contains a key.

An API key (`Authorization: Bearer <API_KEY>`) works on every path of both designs; the JWT on the
legacy design's paths only (Kling's authentication page, see the contract's "The newer API design").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from kling_local.sim.errors import SimApiError


class AuthError(SimApiError):
    """A request failed authentication; `code` is Kling's business code (HTTP 401)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message, 401)


def _b64url_decode(part: str) -> bytes:
    padded = part + "=" * (-len(part) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(
    access_key: str,
    secret_key: str,
    *,
    now: float | None = None,
    lifetime_s: int = 1800,
    nbf_offset_s: int = -5,
    extra_claims: Mapping[str, Any] | None = None,
    alg: str = "HS256",
) -> str:
    """Sign a Kling-style token (as the official sample does); tests and benches use it."""
    now_i = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iss": access_key, "exp": now_i + lifetime_s, "nbf": now_i + nbf_offset_s}
    claims.update(extra_claims or {})
    header = _b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret_key.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url_encode(signature)}"


def authenticate(
    header_value: str | None,
    accounts: Mapping[str, str],
    *,
    api_keys: Mapping[str, str] | None = None,
    new_design: bool = False,
    now: float | None = None,
) -> str:
    """Check an Authorization header; return the account (access key) or raise AuthError.

    `api_keys`: API key -> account. On a newer-design path (`new_design`) only an API key passes."""
    if header_value is None or not header_value.strip():
        raise AuthError(1001, "Authorization is empty")
    if not header_value.startswith("Bearer "):
        raise AuthError(1002, "Authorization is invalid: expected 'Bearer <token>'")
    token = header_value[len("Bearer ") :].strip()
    for key, account in (api_keys or {}).items():
        if hmac.compare_digest(key.encode(), token.encode()):
            return account
    if new_design:
        # The contract: "the access key + secret key JWT works for the legacy design only". Kling documents
        # no code of its own for a JWT on a newer-design path; 1000 ("authentication failed", HTTP 401) is the
        # code for a credential that is well-formed but not accepted, where 1002 would say the header is
        # malformed (it is not). A valid JWT and an unknown key get the same answer.
        raise AuthError(1000, "Authentication failed: this API takes an API key (Authorization: Bearer <API_KEY>)")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise AuthError(1002, "Authorization is invalid: the token is not a JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise AuthError(1002, "Authorization is invalid: the token cannot be decoded") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError(1002, "Authorization is invalid: the token cannot be decoded")
    if header.get("alg") != "HS256":
        raise AuthError(1000, "Authentication failed: the token must be signed with HS256")
    issuer = claims.get("iss")
    secret = accounts.get(issuer) if isinstance(issuer, str) else None
    if secret is None or not isinstance(issuer, str):
        raise AuthError(1000, "Authentication failed: unknown access key (iss)")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise AuthError(1000, "Authentication failed: bad signature")
    now_f = time.time() if now is None else now
    nbf = claims.get("nbf")
    exp = claims.get("exp")
    for name, value in (("nbf", nbf), ("exp", exp)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(1002, f"Authorization is invalid: claim {name} must be a number")
    if nbf is not None and now_f < float(nbf):
        raise AuthError(1003, "Authorization is not yet valid (nbf is in the future)")
    if exp is not None and now_f >= float(exp):
        raise AuthError(1004, "Authorization has expired (exp is in the past)")
    return issuer
