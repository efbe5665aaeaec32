"""The Kling secret: an API key, an access + secret key pair, or both; the client signs with the API key
when there is one. Any other shape is one error that names the fields and the fix."""

import json
from typing import Any

import boto3
import httpx
import jwt
import pytest
from moto import mock_aws

from kling_pipeline.adapters import reset_container_state
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.secrets import KlingCredentials, kling_credentials, parse_kling_credentials
from kling_pipeline.errors import KlingApiKeyNeededError, KlingKeysInvalidError, KlingKeysMissingError


def parse(secret: Any) -> KlingCredentials:
    return parse_kling_credentials(secret, where="secret kling", how="with put-secret-value")


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"api_key": "k"}, KlingCredentials(api_key="k")),
        ({"access_key": "ak", "secret_key": "sk"}, KlingCredentials(access_key="ak", secret_key="sk")),
        ({"api_key": "k", "access_key": "ak", "secret_key": "sk"}, KlingCredentials("k", "ak", "sk")),
        # The stack's own first value (an empty access key, a generated secret key) beside an API key.
        ({"api_key": "k", "access_key": "", "secret_key": "generated"}, KlingCredentials(api_key="k")),
    ],
)
def test_either_kind_of_credentials_or_both(secret: dict[str, str], expected: KlingCredentials) -> None:
    assert parse(secret) == expected


@pytest.mark.parametrize(
    "secret",
    [{"access_key": "", "secret_key": "generated"}, {}, {"api_key": "..."}, {"api_key": "  "}, {"api_key": "<key>"}],
)
def test_nothing_stored_yet_is_keys_missing(secret: dict[str, str]) -> None:
    with pytest.raises(KlingKeysMissingError, match=r"not stored yet in secret kling.*api_key.*access_key"):
        parse(secret)


@pytest.mark.parametrize(
    ("secret", "named"),
    [
        ({"apikey": "k"}, "unknown field 'apikey'"),
        ({"api_key": "k", "secret": "s"}, "unknown field 'secret'"),
        ({"api_key": 42}, "api_key must be a string"),
        ({"access_key": "ak", "secret_key": None}, "secret_key must be a string"),
        ({"access_key": "ak"}, "access_key without secret_key"),
        (["k"], "not a JSON object"),
    ],
)
def test_a_wrong_shape_is_one_error_naming_the_field_and_the_fix(secret: Any, named: str) -> None:
    with pytest.raises(KlingKeysInvalidError) as raised:
        parse(secret)
    message = str(raised.value)
    assert named in message
    assert '{"api_key": "..."}' in message and '{"access_key": "...", "secret_key": "..."}' in message
    assert "with put-secret-value" in message
    # The submit path and the poller handle it as missing keys (park with the fix / the alarm).
    assert isinstance(raised.value, KlingKeysMissingError)


def test_credentials_never_print_a_key() -> None:
    assert "sk-secret" not in repr(KlingCredentials("k-secret", "ak", "sk-secret"))
    assert "k-secret" not in repr(KlingCredentials("k-secret", "ak", "sk-secret"))


@mock_aws
def test_the_secret_is_read_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the Kling secret in Secrets Manager holding only an API key
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    reset_container_state()
    boto3.client("secretsmanager").create_secret(Name="kling", SecretString=json.dumps({"api_key": "kling-api-key"}))
    # When the functions read it
    credentials = kling_credentials("kling", max_age_s=0)
    # Then the API key is there, and no pair
    assert credentials == KlingCredentials(api_key="kling-api-key")
    reset_container_state()


def recording_client(credentials: KlingCredentials, seen: list[httpx.Request]) -> KlingClient:
    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        task = {"task_id": "t1", "task_status": "processing"}
        return httpx.Response(200, json={"code": 0, "message": "x", "request_id": "r", "data": task})

    return KlingClient.of("https://kling.test", credentials, transport=httpx.MockTransport(reply))


def test_the_api_key_signs_every_call_when_there_is_one() -> None:
    # Given a deployment with an API key and a key pair
    seen: list[httpx.Request] = []
    client = recording_client(KlingCredentials("kling-api-key", "ak", "s" * 40), seen)
    # When it asks Kling about a legacy task
    client.get_task("text2video", "t1")
    # Then the API key is the bearer token, as it stands
    assert seen[0].headers["Authorization"] == "Bearer kling-api-key"


def test_without_an_api_key_the_pair_signs_a_jwt() -> None:
    seen: list[httpx.Request] = []
    client = recording_client(KlingCredentials(access_key="ak", secret_key="s" * 40), seen)
    client.get_task("text2video", "t1")
    token = seen[0].headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims["iss"] == "ak"


def test_a_newer_design_model_without_an_api_key_is_refused_before_anything_is_sent() -> None:
    # Given a deployment with the key pair only
    seen: list[httpx.Request] = []
    client = recording_client(KlingCredentials(access_key="ak", secret_key="s" * 40), seen)
    # When a kling-3.0 task would be created
    with pytest.raises(KlingApiKeyNeededError, match='add "api_key"'):
        client.create_task("image2video", {"contents": []}, model="kling-3.0")
    # Then nothing reached Kling
    assert seen == []
