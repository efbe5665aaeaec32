"""Secrets from Secrets Manager, cached for `max_age` seconds, so a rotated Kling key or callback
secret is picked up by warm functions without a redeploy.

The Kling keys come through Powertools Parameters. The callback signing secret is read here with
boto3: after a rotation the previous version (stage AWSPREVIOUS) still verifies callbacks for a
while, the way payment providers roll webhook secrets, and Parameters caches by secret name alone,
so it cannot hold two stages of one secret apart.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, on_reset
from kling_pipeline.errors import ConfigError, KlingKeysMissingError

MIN_SIGNING_SECRET_CHARS = 32


def kling_credentials(secret_name: str, *, max_age_s: int) -> tuple[str, str]:
    """(access key, secret key) from the KlingCredentials secret."""
    secret = _secret_json(secret_name, max_age_s)
    access_key, secret_key = str(secret.get("access_key", "")), str(secret.get("secret_key", ""))
    if _placeholder(access_key) or _placeholder(secret_key):
        # The stack creates the secret with an empty access key (template.yaml, KlingCredentials).
        raise KlingKeysMissingError(
            f"the Kling keys are not stored yet in secret {secret_name}: store them with aws secretsmanager "
            f"put-secret-value --secret-id {secret_name} --secret-string "
            """'{"access_key": "...", "secret_key": "..."}' (README, 'Deploy')"""
        )
    return access_key, secret_key


def _placeholder(value: str) -> bool:
    """Empty, or the README's example ("...") or a <placeholder> pasted as it stands."""
    value = value.strip()
    return not value or value == "..." or (value.startswith("<") and value.endswith(">"))


def callback_signing_secret(secret_name: str, *, max_age_s: int) -> str:
    """The secret new callback URLs are signed with (the current version)."""
    return callback_signing_secrets(secret_name, max_age_s=max_age_s, previous_for_s=0)[0]


def webhook_signing_secret(secret_name: str, *, max_age_s: int) -> str:
    """The Standard Webhooks signing secret (base64, optionally `whsec_`-prefixed) job webhooks are signed with."""
    value = parameters.get_secret(secret_name, max_age=max_age_s)
    if not isinstance(value, str) or len(value.removeprefix("whsec_")) < MIN_SIGNING_SECRET_CHARS:
        raise ConfigError(
            f"the webhook signing secret must be base64 of at least {MIN_SIGNING_SECRET_CHARS} characters"
        )
    return value


def kling_webhook_secrets(secret_name: str, *, max_age_s: int) -> tuple[str, ...]:
    """The `whsec_` secrets Kling signs callbacks with, as stored in the KlingWebhookSecret secret:
    none (the stack's placeholder `none`: Kling's callbacks are unsigned), one, or, while Kling rotates
    it, the old and the new separated by spaces. ConfigError when it cannot be read."""
    try:
        value = parameters.get_secret(secret_name, max_age=max_age_s)
    except parameters.exceptions.GetParameterError as exc:
        raise ConfigError(
            f"cannot read the Kling webhook secret {secret_name}: {type(exc.__cause__).__name__}"
        ) from exc
    if not isinstance(value, str) or value.strip().lower() == "none" or _placeholder(value):
        return ()
    return tuple(value.split())


_signing_lock = threading.Lock()
_signing: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}


def callback_signing_secrets(secret_name: str, *, max_age_s: int, previous_for_s: int) -> tuple[str, ...]:
    """The secrets a callback URL may have been signed with: the current one, and the previous one
    while the current is younger than `previous_for_s` (URLs handed to Kling before a rotation)."""
    key = (secret_name, previous_for_s)
    now = time.monotonic()
    with _signing_lock:
        cached = _signing.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
    client = _secrets_client()
    current = client.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")
    secrets = [_signing_secret(current)]
    created = current.get("CreatedDate")
    age_s = (datetime.now(UTC) - created).total_seconds() if isinstance(created, datetime) else float("inf")
    if previous_for_s > 0 and age_s < previous_for_s:
        try:
            secrets.append(_signing_secret(client.get_secret_value(SecretId=secret_name, VersionStage="AWSPREVIOUS")))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise  # no previous version: never rotated
    value = tuple(secrets)
    with _signing_lock:
        _signing[key] = (now + max_age_s, value)
    return value


def _signing_secret(response: dict[str, Any]) -> str:
    value = response.get("SecretString")
    if not isinstance(value, str) or len(value) < MIN_SIGNING_SECRET_CHARS:
        raise ConfigError(
            f"the callback signing secret must be a string of at least {MIN_SIGNING_SECRET_CHARS} characters"
        )
    return value


_clients: dict[str, Any] = {}


def _secrets_client() -> Any:
    with _signing_lock:
        if "secretsmanager" not in _clients:
            _clients["secretsmanager"] = aws_clients.client("secretsmanager")
        return _clients["secretsmanager"]


def _secret_json(name: str, max_age_s: int) -> dict[str, Any]:
    value = parameters.get_secret(name, transform="json", max_age=max_age_s)
    if not isinstance(value, dict):
        raise ConfigError(f"secret {name} must hold a JSON object")
    return value


def _forget_secrets() -> None:
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with _signing_lock:
        _signing.clear()
        _clients.clear()


on_reset(_forget_secrets)
