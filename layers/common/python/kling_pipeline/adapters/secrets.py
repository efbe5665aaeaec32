"""Secrets from Secrets Manager through Powertools Parameters, cached for `max_age` seconds, so a
rotated Kling key or callback secret is picked up by warm functions without a redeploy."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities import parameters

from kling_pipeline.adapters import on_reset
from kling_pipeline.errors import ConfigError

MIN_SIGNING_SECRET_CHARS = 32


def kling_credentials(secret_name: str, *, max_age_s: int) -> tuple[str, str]:
    """(access key, secret key) from the KlingCredentials secret."""
    secret = _secret_json(secret_name, max_age_s)
    access_key, secret_key = str(secret.get("access_key", "")), str(secret.get("secret_key", ""))
    if not access_key or not secret_key:
        raise ConfigError(
            "the Kling credentials secret needs both 'access_key' and 'secret_key'; set them with "
            "aws secretsmanager put-secret-value (see the README, 'Deploy')"
        )
    return access_key, secret_key


def callback_signing_secret(secret_name: str, *, max_age_s: int) -> str:
    value = parameters.get_secret(secret_name, max_age=max_age_s)
    if not isinstance(value, str) or len(value) < MIN_SIGNING_SECRET_CHARS:
        raise ConfigError(
            f"the callback signing secret must be a string of at least {MIN_SIGNING_SECRET_CHARS} characters"
        )
    return value


def _secret_json(name: str, max_age_s: int) -> dict[str, Any]:
    value = parameters.get_secret(name, transform="json", max_age=max_age_s)
    if not isinstance(value, dict):
        raise ConfigError(f"secret {name} must hold a JSON object")
    return value


def _forget_secrets() -> None:
    parameters.clear_caches()  # type: ignore[no-untyped-call]


on_reset(_forget_secrets)
