"""`demo --provider kling|fal|mixed` (which door the bundled jobs go through, what the fal simulator is given) and
`local up --fal-url` (a fal of one's own, its key from FAL_KEY)."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest

from kling_local import demo
from kling_local.stack.serve import add_arguments, options_from_args
from kling_pipeline.doors import DOORS
from kling_pipeline.providers import fal
from kling_pipeline.requests import JobRequest


def demo_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    return parser.parse_args(["demo", *flags])


def doors(provider: str) -> Counter[str]:
    jobs = demo.load_jobs(None, 30, "t", "mixed", provider)
    return Counter(str(job.get("provider") or "kling") for job in jobs)


def test_the_default_door_is_klings_and_no_job_names_fal() -> None:
    # Given the demo's defaults, When its bundled batch is loaded, Then every job goes through Kling's own API
    args = demo_args()
    assert args.provider == "kling"
    assert doors(args.provider) == {"kling": 30}


def test_fal_sends_every_job_through_fal_on_an_endpoint_fal_serves() -> None:
    # Given --provider fal
    args = demo_args("--provider", "fal")
    # When the bundled batch is loaded
    jobs = demo.load_jobs(None, 30, "t", args.kling_api, args.provider)
    # Then every job names fal, passes accept with fal's door enabled, and maps to one of fal's endpoints
    assert {job["provider"] for job in jobs} == {"fal"}
    context = {"providers": ["kling", "fal"], "default_provider": "kling"}
    for job in jobs:
        request = JobRequest.model_validate(job, context=context)
        endpoint = fal.endpoint_for(str(request.model), request.kind, request.mode)
        assert not fal.fal_problems(request, endpoint), job
    # and the batch is not one request repeated: both kinds, and more than one model
    assert {job.get("kind") for job in jobs} >= {"text2video", "image2video"}
    assert len({job["model"] for job in jobs}) > 1


def test_mixed_splits_the_batch_between_the_doors() -> None:
    # Given --provider mixed, When the bundled batch of 30 is loaded, Then every door the stack enables takes
    # its turn: about a quarter of the jobs each
    mixed = doors(demo_args("--provider", "mixed").provider)
    assert set(mixed) == {"kling", "fal", "replicate", "acedata"} and mixed.total() == 30
    assert min(mixed.values()) >= 6


@pytest.mark.parametrize("provider", ["replicate", "acedata"])
def test_replicate_and_acedata_send_every_job_through_their_door_on_a_model_it_serves(provider: str) -> None:
    # Given --provider replicate (or acedata), When the bundled batch is loaded
    jobs = demo.load_jobs(None, 30, "t", "mixed", demo_args("--provider", provider).provider)
    # Then every job names that door, and each is one its door accepts (nothing it cannot do)
    assert {job["provider"] for job in jobs} == {provider}
    for job in jobs:
        request = JobRequest.model_validate(job)
        assert DOORS[provider].problems(request, "kling-v2-6") == [], job


def test_callback_loss_and_dup_drive_the_fal_simulators_webhooks_too() -> None:
    # Given the Kling simulator's webhook faults and pace as demo flags
    args = demo_args("--provider", "fal", "--callback-loss", "1.0", "--callback-dup", "0.2", "--speed", "5")
    # When the fal simulator's knobs are built from them
    config = demo.fal_sim_config_from(args)
    # Then fal loses and repeats its webhooks alike, at the same speed
    assert (config.webhook_loss_rate, config.webhook_duplicate_rate, config.speed) == (1.0, 0.2, 5.0)


def local_up_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(flags))


def test_local_up_fal_url_takes_fals_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a fal queue of one's own and its key in FAL_KEY
    monkeypatch.setenv("FAL_KEY", "fal-key-from-env")
    # When `local up --fal-url` is parsed
    options = options_from_args(local_up_args("--fal-url", "http://127.0.0.1:8775"))
    # Then the stack uses it (no fal simulator) with that key
    assert (options.fal_url, options.fal_api_key, options.fal_sim_config) == (
        "http://127.0.0.1:8775",
        "fal-key-from-env",
        None,
    )
    # and without the flag the stack starts the fal simulator (no URL, no key to pass)
    assert options_from_args(local_up_args()).fal_url is None


def test_local_up_fal_url_without_a_key_is_refused_naming_fal_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    with pytest.raises(SystemExit, match="FAL_KEY"):
        options_from_args(local_up_args("--fal-url", "http://127.0.0.1:8775"))
