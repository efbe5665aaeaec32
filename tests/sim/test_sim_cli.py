"""`kling-pipeline sim`: one ready line, serves until SIGTERM, every knob reachable as a flag."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest

from kling_local.cli import build_parser
from kling_local.sim import SimConfig, make_token
from kling_local.sim.cli import build_config


def _parse(*argv: str):
    return build_parser().parse_args(["sim", *argv])


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_runs_prints_one_ready_line_and_stops_on_a_signal(stop_signal):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kling_local.cli",
            "sim",
            "--port",
            "0",
            "--access-key",
            "cli-ak",
            "--secret-key",
            "cli-secret-sk",
            "--speed",
            "500",
            "--concurrency-limit",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"Kling simulator ready at (http://127\.0\.0\.1:\d+) \(CDN (http://127\.0\.0\.1:\d+)\)\n", line
        )
        assert match, line
        base_url, cdn_url = match.groups()
        assert base_url != cdn_url
        token = make_token("cli-ak", "cli-secret-sk")
        response = httpx.post(
            f"{base_url}/v1/videos/text2video",
            json={"prompt": "from the cli"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200
        assert httpx.get(f"{base_url}/_sim/config", timeout=10).json()["concurrency_limit"] == 1
    finally:
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out == ""  # nothing after the ready line
    assert "cli-secret-sk" not in err


def test_bad_knob_value_exits_2_without_echoing_the_secret():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kling_local.cli",
            "sim",
            "--port",
            "0",
            "--secret-key",
            "hush-hush",
            "--fail-rate",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "fail_rate" in proc.stderr
    assert "hush-hush" not in proc.stderr + proc.stdout


def test_every_knob_is_a_flag():
    options = {
        a
        for action in build_parser()._subparsers._group_actions[0].choices["sim"]._actions
        for a in action.option_strings
    }
    for name in SimConfig.model_fields:
        if name == "extra_accounts":
            assert "--extra-account" in options
        else:
            assert "--" + name.replace("_", "-") in options, name


def test_flags_become_config():
    args = _parse(
        "--access-key",
        "a",
        "--secret-key",
        "s",
        "--speed",
        "200",
        "--known-models",
        "m1, m2",
        "--no-query-faults",
        "--fail-rate",
        "0.2",
        "--force-create-errors",
        "1303,5001",
        "--unit-budget",
        "10",
        "--cdn-body",
        "html",
        "--extra-account",
        "k2=s2",
        "--seed",
        "7",
        "--knobs",
        '{"slow_rate": 0.1, "fail_rate": 0.9}',
    )
    config = build_config(args)
    assert config.access_key == "a" and config.secret_key == "s"
    assert config.speed == 200.0
    assert config.known_models == ["m1", "m2"]
    assert config.query_faults is False
    assert config.fail_rate == 0.2  # a flag beats --knobs
    assert config.slow_rate == 0.1
    assert config.force_create_errors == [1303, 5001]
    assert config.unit_budget == 10.0
    assert config.cdn_body == "html"
    assert config.extra_accounts == {"k2": "s2"}
    assert config.seed == 7
    assert _parse().port == 8765 and _parse().handler is not None


def test_defaults_match_simconfig():
    config = build_config(_parse())
    assert config.model_dump(exclude={"access_key", "secret_key"}) == SimConfig().model_dump(
        exclude={"access_key", "secret_key"}
    )


def test_bad_cdn_body_choice_is_an_argparse_error():
    with pytest.raises(SystemExit):
        _parse("--cdn-body", "gif")


def test_the_newer_designs_flags_become_config():
    # Given the API key, a rotation window of webhook secrets and the /tasks knobs as flags
    secret = "whsec_" + "c2ltdWxhdG9yLXdlYmhvb2stc2VjcmV0LTAxMjM0NTY="
    old = "whsec_" + "dGhlLXByZXZpb3VzLXdlYmhvb2stc2VjcmV0LTQ1Njc="
    args = _parse(
        "--api-key",
        "key-1",
        "--webhook-secret",
        secret,
        "--webhook-secret-previous",
        old,
        "--unsigned-callback-rate",
        "0.3",
        "--tasks-max-ids",
        "20",
        "--tasks-include-legacy",
        "--billing-currency",
        "USD",
    )
    # Then they are the simulator's config
    config = build_config(args)
    assert config.api_keys() == {"key-1": config.access_key}
    assert config.webhook_secrets() == (secret, old)
    assert (config.unsigned_callback_rate, config.tasks_max_ids, config.tasks_include_legacy) == (0.3, 20, True)
    assert config.billing_currency == "USD"
