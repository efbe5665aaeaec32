"""Callback URL tokens: Kling signs callbacks only for an account with a webhook secret, so our callback
URL carries an HMAC of the job id.

The token proves that the URL came from us for this job; it does not make the body trustworthy,
which is why a terminal callback is confirmed with a GET (lifecycle.observe_task) unless Kling's
signature verifies (adapters/kling_signatures.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import quote


def job_token(signing_secret: str, job_id: str) -> str:
    if not signing_secret:
        raise ValueError("the callback signing secret is empty; check the CallbackSigningSecret secret")
    message = f"callback:{job_id}".encode("utf-8", "surrogatepass")
    return hmac.new(signing_secret.encode(), message, hashlib.sha256).hexdigest()


def verify_job_token(signing_secrets: Sequence[str], job_id: str, token: str | None) -> bool:
    """Constant-time comparison against each secret that may have signed the URL (the current one,
    and the previous one for a while after a rotation). Compared as bytes: whatever a caller sent
    (API Gateway decodes `%C3%A9` to `é`) is simply wrong, never an error."""
    if isinstance(signing_secrets, str):
        raise TypeError("pass the signing secrets as a sequence (current first), not one string")
    if not token:
        return False
    given = token.encode("utf-8", "surrogatepass")
    return any(hmac.compare_digest(job_token(secret, job_id).encode(), given) for secret in signing_secrets if secret)


def callback_url(api_base_url: str, job_id: str, signing_secret: str) -> str:
    base = api_base_url.rstrip("/")
    return f"{base}/callbacks/{quote(job_id, safe='')}?token={job_token(signing_secret, job_id)}"
