"""Where `local up --kling-url` and `demo --kling-url` get real Kling keys: a file or the environment,
either kind of credentials (an API key, or an access + secret key pair), or both."""

import json
from pathlib import Path

import pytest

from kling_local.stack.serve import kling_keys
from kling_pipeline.adapters.secrets import KlingCredentials

KLING = "https://api-singapore.klingai.com"


@pytest.fixture(autouse=True)
def _no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_the_simulator_needs_no_keys() -> None:
    assert kling_keys(None, None) is None


def test_keys_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"access_key": "ak", "secret_key": "sk"}))
    assert kling_keys(KLING, path) == KlingCredentials(access_key="ak", secret_key="sk")


def test_an_api_key_alone_from_a_file(tmp_path: Path) -> None:
    # Given a keys file with only Kling's API key (a team without an access/secret key pair)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"api_key": "kling-api-key"}))
    # Then it is taken as it stands
    assert kling_keys(KLING, path) == KlingCredentials(api_key="kling-api-key")


def test_both_kinds_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"api_key": "k", "access_key": "ak", "secret_key": "sk"}))
    assert kling_keys(KLING, path) == KlingCredentials("k", "ak", "sk")


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk")
    assert kling_keys(KLING, None) == KlingCredentials(access_key="ak", secret_key="sk")


def test_an_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_API_KEY", "kling-api-key")
    assert kling_keys(KLING, None) == KlingCredentials(api_key="kling-api-key")


def test_missing_keys_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="KLING_API_KEY and/or KLING_ACCESS_KEY"):
        kling_keys(KLING, None)
    half = tmp_path / "half.json"
    half.write_text('{"access_key": "ak"}')
    with pytest.raises(SystemExit, match="access_key without secret_key"):
        kling_keys(KLING, half)
    with pytest.raises(SystemExit, match="cannot read"):
        kling_keys(KLING, tmp_path / "absent.json")


def test_a_misspelt_field_is_named(tmp_path: Path) -> None:
    # Given a keys file whose API key field is misspelt
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"apikey": "kling-api-key"}))
    # Then the error names the field and the shapes that work
    with pytest.raises(SystemExit, match=r"""unknown field 'apikey'.*\{"api_key": "\.\.\."\}"""):
        kling_keys(KLING, path)
