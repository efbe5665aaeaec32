"""Our AceData client against the AceData simulator over HTTP: create always with a callback URL (never the
synchronous call), unsigned and lying callbacks read as hints and checked by a retrieve, batch look-ups
whose answers miss some ids, the error envelope's codes, no cancel, and the unsettled create."""

from __future__ import annotations

import time

import httpx
import pytest

from kling_local.acedata_sim import AceDataSimulator
from kling_pipeline.adapters.acedata_client import AceDataClient
from kling_pipeline.errors import (
    ProviderAccountError,
    ProviderCreateUnsettledError,
    ProviderRefusedError,
    ProviderUnavailableError,
)
from kling_pipeline.providers import Provider, ProviderTask, TaskRef
from tests.acedata_sim.conftest import ARGUMENTS, MODEL, TOKEN
from tests.fal_sim.conftest import Receiver, wait_until


def ended(client: AceDataClient, ref: TaskRef) -> ProviderTask:
    return wait_until(lambda: (task := client.look_up(ref)).ended and task, what=f"task {ref.id} to end")


def test_the_acedata_client_is_a_provider(client: AceDataClient) -> None:
    assert isinstance(client, Provider)


def test_create_always_sends_the_callback_url_and_the_callback_is_an_unsigned_hint(
    sim: AceDataSimulator, client: AceDataClient, receiver: Receiver
) -> None:
    # Given a create for job-1
    ref = client.create(MODEL, ARGUMENTS, webhook_url=receiver.url("job-1"))
    # Then AceData got the job's callback URL (no synchronous call), and answered at once with the task id
    assert sim.state.tasks[ref.id].callback_url == receiver.url("job-1")
    assert sim.stats()["sync_creates"] == 0 and sim.stats()["max_creates_per_callback"] == 1
    # When its callback arrives / Then it is read, unsigned, as a hint naming the task
    delivery = wait_until(lambda: receiver.deliveries, what="the callback")[0]
    assert delivery.path.startswith("/callbacks/job-1?")
    event = client.read_callback(delivery.body, delivery.headers)
    assert (event.signed, event.dedup_key, event.task.status) == (False, ref.id, "succeeded")
    # And the retrieve confirms it, with a video the media host serves
    task = client.look_up(ref)
    assert task.status == "succeeded" and task.video_url == event.task.video_url
    assert httpx.get(task.video_url).content[4:8] == b"ftyp"  # type: ignore[arg-type]


def test_a_create_refuses_to_go_without_a_callback_url(sim: AceDataSimulator, client: AceDataClient) -> None:
    with pytest.raises(ValueError, match="callback URL"):
        client.create(MODEL, ARGUMENTS, webhook_url="")
    assert sim.stats()["creates"] == 0


def test_without_a_callback_url_the_simulator_holds_the_connection_until_the_video(sim: AceDataSimulator) -> None:
    # Given a generation of 300 ms, and a create sent by hand without callback_url or async
    sim.configure(generation_min_s=300.0, generation_max_s=300.0)
    started = time.monotonic()
    answer = httpx.post(
        f"{sim.base_url}/kling/videos", json=ARGUMENTS, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
    ).json()
    # Then the answer waited for the video (AceData's synchronous mode)
    assert time.monotonic() - started >= 0.25
    assert answer["state"] == "succeed" and answer["video_url"]
    assert sim.stats()["sync_creates"] == 1


def test_a_lying_callback_is_a_hint_the_retrieve_contradicts(
    sim: AceDataSimulator, client: AceDataClient, receiver: Receiver
) -> None:
    # Given AceData sending an early "succeed" while the task still runs (300 ms)
    sim.configure(early_callback_rate=1.0, generation_min_s=300.0, generation_max_s=300.0)
    ref = client.create(MODEL, ARGUMENTS, webhook_url=receiver.url("job-2"))
    early = wait_until(lambda: receiver.deliveries, what="the early callback")[0]
    # When it is read / Then it claims success, unsigned; the retrieve says the task still runs
    event = client.read_callback(early.body, early.headers)
    assert (event.signed, event.task.status) == (False, "succeeded")
    assert client.look_up(ref).status == "running"
    assert event.task.video_url is not None and httpx.get(event.task.video_url).status_code == 404


def test_a_callback_with_a_wrong_video_url_is_corrected_by_the_retrieve(
    sim: AceDataSimulator, client: AceDataClient, receiver: Receiver
) -> None:
    sim.configure(wrong_url_rate=1.0)
    ref = client.create(MODEL, ARGUMENTS, webhook_url=receiver.url("job-3"))
    delivery = wait_until(lambda: receiver.deliveries, what="the callback")[0]
    hinted = client.read_callback(delivery.body, delivery.headers).task
    confirmed = client.look_up(ref)
    assert hinted.video_url != confirmed.video_url
    assert httpx.get(confirmed.video_url).status_code == 200  # type: ignore[arg-type]
    assert httpx.get(hinted.video_url).status_code == 404  # type: ignore[arg-type]


def test_a_batch_look_up_with_ids_missing_from_the_answers(sim: AceDataSimulator, client: AceDataClient) -> None:
    # Given seven tasks (three ids a call) and answers leaving out about half the ids
    refs = [client.create(MODEL, ARGUMENTS, webhook_url=f"https://h.example/callbacks/b{n}?token=t") for n in range(7)]
    wait_until(lambda: sim.stats()["processing"] == 0, what="the tasks to end")
    sim.configure(batch_missing_rate=0.5)
    # When they are looked up together
    answer = client.look_up_many([*refs, TaskRef("acedata", "no-such-task", MODEL)])
    # Then three calls were made; what was found is found; the rest is "missing", never a failure
    assert sim.stats()["batch_retrieves"] == 3
    assert answer.missing and answer.found
    assert set(answer.found) | set(answer.missing) == {r.id for r in refs} | {"no-such-task"}
    assert "no-such-task" in answer.missing
    assert all(task.status == "succeeded" for task in answer.found.values())
    # And asking again for the missing ones finds them
    sim.configure(batch_missing_rate=0.0)
    again = client.retrieve_batch(m for m in answer.missing if m != "no-such-task")
    assert not again.missing


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("invalid_token", "credentials secret"),
        ("token_mismatched", "subscribe"),
        ("api_not_implemented", "base URL"),
    ],
)
def test_account_error_codes_are_account_errors_carrying_the_fix(
    sim: AceDataSimulator, client: AceDataClient, code: str, fix: str
) -> None:
    sim.configure(account_error=code)
    for call in (
        lambda: client.create(MODEL, ARGUMENTS, webhook_url="https://h.example/c/j"),
        lambda: client.retrieve("some-task"),
        lambda: client.retrieve_batch(["some-task"]),
    ):
        with pytest.raises(ProviderAccountError) as caught:
            call()
        assert code in str(caught.value) and fix in str(caught.value) and TOKEN not in str(caught.value)
    assert sim.stats()["creates"] == 0


def test_too_many_requests_and_api_error_are_backpressure_on_look_ups(
    sim: AceDataSimulator, client: AceDataClient
) -> None:
    ref = client.create(MODEL, ARGUMENTS, webhook_url="https://h.example/c/j")
    for knob, status in (("too_many_requests_rate", 429), ("api_error_rate", 500)):
        sim.configure(**{knob: 1.0})
        with pytest.raises(ProviderUnavailableError) as caught:
            client.look_up(ref)
        assert caught.value.http_status == status
        with pytest.raises(ProviderUnavailableError):
            client.look_up_many([ref])
        sim.configure(**{knob: 0.0})


def test_a_429_on_create_made_nothing_and_may_be_sent_again(sim: AceDataSimulator, client: AceDataClient) -> None:
    sim.configure(too_many_requests_rate=1.0)
    with pytest.raises(ProviderUnavailableError) as caught:
        client.create(MODEL, ARGUMENTS, webhook_url="https://h.example/c/j")
    assert caught.value.http_status == 429 and sim.stats()["creates"] == 0


@pytest.mark.parametrize("fault", ["create_answer_loss_rate", "api_error_rate"])
def test_an_ambiguous_create_is_unsettled_and_never_sent_again(
    sim: AceDataSimulator, client: AceDataClient, receiver: Receiver, fault: str
) -> None:
    # Given AceData making the task but its answer cut (or an api_error that proves nothing)
    sim.configure(**{fault: 1.0})
    with pytest.raises(ProviderCreateUnsettledError) as caught:
        client.create(MODEL, ARGUMENTS, webhook_url=receiver.url("job-4"))
    assert caught.value.endpoint == MODEL and "secret-job-4" not in str(caught.value)
    # Then one create was made; its callback still names the job
    sim.configure(**{fault: 0.0})
    delivery = wait_until(lambda: receiver.deliveries, what="the callback")[0]
    assert delivery.path.startswith("/callbacks/job-4?") and sim.stats()["creates"] == 1


def test_a_create_the_api_refuses_made_nothing(sim: AceDataSimulator, client: AceDataClient) -> None:
    with pytest.raises(ProviderRefusedError) as caught:
        client.create("kling-v9", ARGUMENTS | {"model": "kling-v9"}, webhook_url="https://h.example/c/j")
    assert caught.value.http_status == 400 and sim.stats()["creates"] == 0


def test_no_cancel_and_a_charge_only_when_the_deployment_sets_one(sim: AceDataSimulator, client: AceDataClient) -> None:
    ref = client.create(MODEL, ARGUMENTS, webhook_url="https://h.example/c/j")
    outcome = client.cancel(ref)
    assert outcome.result == "not_supported" and "billed" in outcome.billed
    task = ended(client, ref)
    assert client.charge(ref, ARGUMENTS, task) is None
    priced = AceDataClient(TOKEN, base_url=sim.base_url, usd_per_call=0.25)
    charge = priced.charge(ref, ARGUMENTS, task)
    assert charge is not None and (charge.amount, charge.unit) == (0.25, "USD") and "UNCONFIRMED" in charge.basis
    priced.close()
