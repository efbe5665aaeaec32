"""`local up --kling-webhook-secret-file`: Kling's webhook secret(s) for the stack's KlingWebhookSecret, from a
file (never a flag's value), checked for Kling's form without ever being quoted."""

from pathlib import Path

import pytest

from kling_local.stack.serve import add_arguments, kling_webhook_secret, options_from_args
from kling_local.stack.stack import generate_kling_webhook_secret

OLD = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="


def test_without_the_flag_the_stack_keeps_the_template_s_none() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options_from_args(parser.parse_args([])).kling_webhook_secret is None


def test_one_secret_or_two_during_a_rotation(tmp_path: Path) -> None:
    # Given a file with Kling's secret, and one with the old and the new on two lines
    new = generate_kling_webhook_secret()
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text(OLD + "\n")
    two.write_text(f"{OLD}\n{new}\n")
    # When read, Then the stack stores them as the callback function reads them (space-separated)
    assert kling_webhook_secret(one) == OLD
    assert kling_webhook_secret(two) == f"{OLD} {new}"


def test_a_secret_not_in_kling_s_form_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_text("hunter2-not-a-whsec")
    with pytest.raises(SystemExit, match="whsec_") as raised:
        kling_webhook_secret(path)
    assert "hunter2" not in str(raised.value)
    with pytest.raises(SystemExit, match="cannot read"):
        kling_webhook_secret(tmp_path / "absent")
