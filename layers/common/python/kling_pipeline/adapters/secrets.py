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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, on_reset
from kling_pipeline.errors import ConfigError, KlingKeysInvalidError, KlingKeysMissingError

MIN_SIGNING_SECRET_CHARS = 32


def kling_credentials(secret_name: str, *, max_age_s: int) -> KlingCredentials:
    """The Kling credentials in the KlingCredentials secret: an API key, access + secret keys, or both."""
    return parse_kling_credentials(
        parameters.get_secret(secret_name, transform="json", max_age=max_age_s),
        where=f"secret {secret_name}",
        how=f"with aws secretsmanager put-secret-value --secret-id {secret_name} --secret-string '...' "
        "(README, 'Deploy')",
    )


def parse_kling_credentials(secret: Any, *, where: str, how: str) -> KlingCredentials:
    """Read `{"api_key"}`, `{"access_key", "secret_key"}` or all three; anything else is one error that
    names the fields and the fix. The stack creates the secret with empty keys (template.yaml,
    KlingCredentials): that, or the README's "..." pasted as it stands, is KlingKeysMissingError. `how`:
    how the operator stores them where they are read from."""
    fix = f"{_SHAPES}, {how}"
    if not isinstance(secret, dict):
        raise KlingKeysInvalidError(f"the Kling credentials in {where} are not a JSON object: {fix}")
    problems = [f"{k} must be a string" for k in KLING_SECRET_FIELDS if k in secret and not isinstance(secret[k], str)]
    unknown = sorted(set(secret) - set(KLING_SECRET_FIELDS))
    if unknown:
        # A misspelt field ("apikey", "secret") would otherwise leave the deployment without the key meant.
        problems.append(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
    if problems:
        raise KlingKeysInvalidError(f"the Kling credentials in {where} are not usable: {'; '.join(problems)}. {fix}")
    api_key, access_key, secret_key = (_value(secret.get(k)) for k in KLING_SECRET_FIELDS)
    if access_key is None and api_key is None:
        # The stack's own first value is an empty access key beside a generated secret key.
        raise KlingKeysMissingError(f"the Kling keys are not stored yet in {where}: {fix}")
    if access_key is not None and secret_key is None:
        raise KlingKeysInvalidError(
            f"the Kling credentials in {where} have access_key without secret_key: set both. {fix}"
        )
    # Without an access key a secret key alone signs nothing (the stack's generated one, say): not used.
    credentials = KlingCredentials(api_key, access_key, secret_key if access_key else None)
    return credentials


KLING_SECRET_FIELDS = ("api_key", "access_key", "secret_key")
_SHAPES = (
    """store '{"api_key": "..."}' (Kling's API key: every model, both API designs), or """
    """'{"access_key": "...", "secret_key": "..."}' (the legacy design only), or all three"""
)


@dataclass(frozen=True)
class KlingCredentials:
    """What the client signs with: the API key when there is one (it works for both designs), else a JWT
    from the access and secret keys (the legacy design only)."""

    api_key: str | None = None
    access_key: str | None = None
    secret_key: str | None = None

    @property
    def serves_new_design(self) -> bool:
        return self.api_key is not None

    def __repr__(self) -> str:  # never print a key
        held = [k for k in KLING_SECRET_FIELDS if getattr(self, k)]
        return f"KlingCredentials({', '.join(held)})"


def _value(value: object) -> str | None:
    """A key as stored, or None for a missing key or a placeholder."""
    return None if value is None or _placeholder(str(value)) else str(value).strip()


def _placeholder(value: str) -> bool:
    """Empty, or the README's example ("...") or a <placeholder> pasted as it stands."""
    value = value.strip()
    return not value or value == "..." or (value.startswith("<") and value.endswith(">"))


def fal_api_key(secret_name: str, *, max_age_s: int) -> str:
    """fal's key from the FalCredentials secret ({"api_key": "..."}); "" when it holds none (fal not enabled)."""
    value = parameters.get_secret(secret_name, transform="json", max_age=max_age_s)
    key = value.get("api_key") if isinstance(value, dict) else None
    return key.strip() if isinstance(key, str) and not _placeholder(key.strip()) else ""


def provider_secret_field(secret_name: str, field: str, *, max_age_s: int) -> str:
    """One field of a provider's credentials secret (ReplicateCredentials and AceDataCredentials {"api_token"});
    "" when it holds none or a placeholder (that door not enabled)."""
    value = parameters.get_secret(secret_name, transform="json", max_age=max_age_s)
    found = value.get(field) if isinstance(value, dict) else None
    return found.strip() if isinstance(found, str) and not _placeholder(found.strip()) else ""


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
    return webhook_secrets(secret_name, max_age_s=max_age_s, whose="Kling")


def webhook_secrets(secret_name: str, *, max_age_s: int, whose: str) -> tuple[str, ...]:
    """A provider's `whsec_` webhook secrets, stored in a secret of their own (KlingWebhookSecret,
    ReplicateWebhookSecret) that only the callback function reads: none (`none`, as the stack creates it),
    one, or, during a rotation, the old and the new separated by spaces. ConfigError when it cannot be read."""
    try:
        value = parameters.get_secret(secret_name, max_age=max_age_s)
    except parameters.exceptions.GetParameterError as exc:
        raise ConfigError(
            f"cannot read the {whose} webhook secret {secret_name}: {type(exc.__cause__).__name__}"
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


def _forget_secrets() -> None:
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with _signing_lock:
        _signing.clear()
        _clients.clear()


on_reset(_forget_secrets)
