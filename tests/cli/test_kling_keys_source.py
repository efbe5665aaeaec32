"""Where `local up --kling-url` and `demo --kling-url` get real Kling keys: a file or the environment."""

import json
from pathlib import Path

import pytest

from kling_local.stack.serve import kling_keys


def test_the_simulator_needs_no_keys() -> None:
    assert kling_keys(None, None) == (None, None)


def test_keys_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"access_key": "ak", "secret_key": "sk"}))
    assert kling_keys("https://api-singapore.klingai.com", path) == ("ak", "sk")


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk")
    assert kling_keys("https://api-singapore.klingai.com", None) == ("ak", "sk")


def test_missing_keys_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLING_ACCESS_KEY", raising=False)
    monkeypatch.delenv("KLING_SECRET_KEY", raising=False)
    with pytest.raises(SystemExit, match="KLING_ACCESS_KEY"):
        kling_keys("https://api-singapore.klingai.com", None)
    half = tmp_path / "half.json"
    half.write_text('{"access_key": "ak"}')
    with pytest.raises(SystemExit, match="secret_key"):
        kling_keys("https://api-singapore.klingai.com", half)
    with pytest.raises(SystemExit, match="cannot read"):
        kling_keys("https://api-singapore.klingai.com", tmp_path / "absent.json")
