"""`demo --kling-api legacy|new|mixed` and `demo --signed-callbacks`: which of Kling's designs the bundled
batch uses, what the simulator is given (an API key, a webhook secret)."""

from __future__ import annotations

import argparse
from collections import Counter

from kling_local import demo
from kling_pipeline.capabilities import design_of


def demo_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    return parser.parse_args(["demo", *flags])


def designs(kling_api: str) -> Counter[str]:
    jobs = demo.load_jobs(None, 30, "t", kling_api)
    return Counter(design_of(job.get("model")) for job in jobs)


def test_the_default_batch_uses_both_designs() -> None:
    # Given the demo's defaults
    args = demo_args()
    # When its bundled batch of 30 is loaded
    mixed = designs(args.kling_api)
    # Then it is mixed: about half the jobs on each design
    assert args.kling_api == "mixed" and mixed["new"] >= 10 and mixed["legacy"] >= 10


def test_new_moves_every_job_the_newer_design_serves_and_legacy_none() -> None:
    # Given the bundled batch, When loaded for each design, Then `new` has the most newer-design jobs and
    # `legacy` none (jobs no newer-design model serves, a chain, camera control, stay legacy)
    assert designs("legacy")["new"] == 0
    assert designs("new")["new"] > designs("mixed")["new"]


def test_the_simulator_gets_an_api_key_unless_legacy_and_a_webhook_secret_when_signed() -> None:
    # Given the flags, When the simulator's knobs are built from them
    legacy = demo.sim_config_from(demo_args("--kling-api", "legacy"))
    signed = demo_args("--signed-callbacks")
    signed.webhook_secret = "whsec_" + "A" * 44  # what run() generates for --signed-callbacks
    mixed = demo.sim_config_from(signed)
    # Then only a legacy demo has no API key, and a signed one's simulator signs with the secret
    assert legacy.api_key is None and legacy.webhook_secret is None
    assert mixed.api_key and mixed.webhook_secret == signed.webhook_secret and signed.signed_callbacks
