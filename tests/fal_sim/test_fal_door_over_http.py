"""Our fal client against the fal simulator over HTTP: a request's whole life, fal's COMPLETED-but-422 and
504-then-video, cancel outcomes and races, queue positions, the unsettled create (raised, never sent
again), signed webhooks from the simulator's JWKS, and the charge of a finished video."""

from __future__ import annotations

import httpx
import pytest

from kling_local.fal_sim import FalSimulator
from kling_pipeline.adapters.fal_client import FalClient
from kling_pipeline.adapters.fal_signatures import FalWebhookVerifier
from kling_pipeline.errors import (
    ProviderAccountError,
    ProviderCreateUnsettledError,
    ProviderRefusedError,
    ProviderSignatureError,
    ProviderUnavailableError,
)
from kling_pipeline.providers import Provider, ProviderTask, TaskRef
from tests.fal_sim.conftest import KEY, V3_PRO_T2V, Receiver, wait_until

SEED_EXAMPLE = {"prompt": "a red fox running through snow", "duration": "10", "aspect_ratio": "16:9"}


def finished(client: FalClient, ref: TaskRef) -> ProviderTask:
    """Look the request up until it ends (the 504 path raises, and is asked again)."""

    def ended() -> ProviderTask | None:
        try:
            task = client.look_up(ref)
        except ProviderUnavailableError:
            return None
        return task if task.ended else None

    return wait_until(ended, what=f"request {ref.id} to end")


def test_the_fal_client_is_a_provider(client: FalClient) -> None:
    assert isinstance(client, Provider)


def test_submit_status_result_the_video_and_its_charge(
    sim: FalSimulator, client: FalClient, receiver: Receiver
) -> None:
    # Given the seed's example (v3 pro text to video, 10 s, 16:9) created once with a webhook naming job-1
    ref = client.create(V3_PRO_T2V, SEED_EXAMPLE | {"generate_audio": False}, webhook_url=receiver.url("job-1"))
    # Then fal's four handles are kept as given, on fal's queue
    assert set(ref.urls) == {"status_url", "response_url", "cancel_url"}
    assert all(url.startswith(sim.base_url) for url in ref.urls.values())
    # When it is looked up until it ends
    task = finished(client, ref)
    # Then it succeeded with a video the media host serves, living as long as we asked (the retention header)
    assert task.status == "succeeded" and task.video_url is not None
    assert httpx.get(task.video_url).content[4:8] == b"ftyp"
    assert sim.state.requests[ref.id].retention_s == client.result_retention_s
    assert task.video_expires_at == pytest.approx(ref.created_at + client.result_retention_s)  # type: ignore[operator]
    # And its charge is 10 s x the price, in USD; fal made one request for the job
    charge = client.charge(ref, SEED_EXAMPLE | {"generate_audio": False}, task)
    assert charge is not None and (charge.amount, charge.unit) == (pytest.approx(1.12), "USD")
    stats = sim.stats()
    assert stats["creates"] == 1 and stats["max_creates_per_webhook"] == 1
    assert stats["result_fetches"] == 1 and stats["status_queries"] >= 1


def test_completed_with_a_422_result_is_a_failure_with_fals_detail(sim: FalSimulator, client: FalClient) -> None:
    # Given fal answering COMPLETED for a request Kling refused
    sim.configure(result_422_rate=1.0)
    ref = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://hooks.example/callbacks/job-2?token=t")
    wait_until(lambda: client.status(ref) is None, what="COMPLETED")
    # When its result is fetched / Then the job's task failed, with fal's own words
    task = client.look_up(ref)
    assert task.status == "failed"
    assert task.error is not None and "422" in task.error and "content policy" in task.error
    assert client.charge(ref, SEED_EXAMPLE, task) is None


def test_a_result_fetch_answering_504_is_asked_again_never_a_failure(sim: FalSimulator, client: FalClient) -> None:
    # Given fal's result fetches answering 504 twice after COMPLETED
    sim.configure(result_504_first=2)
    ref = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://hooks.example/callbacks/job-3?token=t")
    wait_until(lambda: client.status(ref) is None, what="COMPLETED")
    # When the result is fetched / Then the first two raise "ask again" (504), and the third is the video
    for _ in range(2):
        with pytest.raises(ProviderUnavailableError) as caught:
            client.look_up(ref)
        assert caught.value.http_status == 504
    assert client.look_up(ref).status == "succeeded"
    assert sim.stats()["results_504"] == 2


@pytest.mark.parametrize("fault", ["create_answer_loss_rate", "create_5xx_rate"])
def test_an_unsettled_create_raises_and_is_never_sent_again(
    fault: str, sim: FalSimulator, client: FalClient, receiver: Receiver, verifier: FalWebhookVerifier
) -> None:
    # Given fal making the request but its answer cut (or a 500 that proves nothing)
    sim.configure(**{fault: 1.0})
    # When the job's create is sent
    with pytest.raises(ProviderCreateUnsettledError) as caught:
        client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=receiver.url("job-4"))
    # Then it is unsettled, saying when and which endpoint, and where to look; nothing was sent again
    error = caught.value
    assert error.endpoint == V3_PRO_T2V and error.at > 0 and "fal.ai/dashboard" in str(error)
    assert "secret-job-4" not in str(error)
    stats = sim.stats()
    assert stats["creates"] == 1
    assert stats["creates_by_webhook"] == {receiver.url("job-4").split("//")[1].split("?")[0]: 1}
    # And fal's webhook, whose URL names the job, still arrives signed: the wiring settles the job with it
    delivery = wait_until(lambda: receiver.deliveries, what="the webhook")[0]
    assert delivery.path.startswith("/callbacks/job-4?")
    event = client.read_callback(delivery.body, delivery.headers)
    assert event.task.status == "succeeded" and event.dedup_key == event.task.id
    assert sim.stats()["creates"] == 1


def test_create_answers_that_prove_nothing_was_made(sim: FalSimulator, client: FalClient) -> None:
    # An unknown endpoint is refused (404): final, nothing made
    with pytest.raises(ProviderRefusedError) as refused:
        client.create("fal-ai/kling-video/v9/pro/text-to-video", SEED_EXAMPLE, webhook_url="https://h.example/c/j")
    assert refused.value.http_status == 404
    # A wrong key is our account's fault, nothing made
    wrong = FalClient("not-the-key", queue_base_url=sim.base_url)
    with pytest.raises(ProviderAccountError):
        wrong.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://h.example/c/j")
    wrong.close()
    # A queue nobody listens on never got the request: safe to send again
    gone = FalClient("k", queue_base_url="http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailableError) as unavailable:
        gone.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://h.example/c/j")
    assert unavailable.value.request_sent is False
    gone.close()
    assert sim.stats()["creates"] == 0


def test_over_the_accounts_concurrency_requests_wait_in_fals_queue_with_positions(
    sim: FalSimulator, client: FalClient
) -> None:
    # Given an account running 2 at once and generations of about a minute (at speed 10: 3-6 s)
    sim.configure(speed=10.0)
    # When 4 requests are made
    refs = [client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=f"https://h.example/c/j{n}") for n in range(4)]
    # Then none is refused: two run, two wait with their positions
    assert [ref.queue_position for ref in refs[2:]] == [0, 1]
    statuses = [client.look_up(ref) for ref in refs]
    assert [t.status for t in statuses] == ["running", "running", "queued", "queued"]
    assert statuses[3].queue_position == 1
    assert sim.stats()["max_running"] == 2


def test_cancel_outcomes(sim: FalSimulator, client: FalClient) -> None:
    # Given one request running, one waiting in fal's queue (1 slot, slow), and one finished
    sim.configure(concurrency_limit=1, speed=1.0)
    running = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://h.example/c/a")
    waiting = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://h.example/c/b")
    # When the waiting one is cancelled / Then fal takes the cancel and bills nothing for it
    outcome = client.cancel(waiting)
    assert outcome.result == "cancel_requested" and "bills nothing" in outcome.billed
    assert sim.state.requests[waiting.id].billed is False
    # A request fal does not know: not found
    unknown = TaskRef(
        "fal", "0" * 32, V3_PRO_T2V, {k: v.replace(running.id, "0" * 32) for k, v in running.urls.items()}
    )
    assert client.cancel(unknown).result == "not_found"
    # A finished one: already completed, billed as made
    sim.configure(speed=1000.0)
    sim.state.requests[running.id].generation_s = 0.0
    wait_until(lambda: client.status(running) is None, what="COMPLETED")
    assert client.cancel(running).result == "already_completed"
    assert sim.stats()["cancels"] == 3


def test_a_cancel_that_meets_the_completion_is_late_and_the_video_is_billed(
    sim: FalSimulator, client: FalClient
) -> None:
    # Given a request waiting in fal's queue, and a cancel that arrives as it completes
    sim.configure(concurrency_limit=1, speed=1.0, cancel_race_rate=1.0)
    client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://h.example/c/a")
    waiting = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url="https://h.example/c/b")
    # When it is cancelled / Then fal says already completed, and the request ends with its video
    assert client.cancel(waiting).result == "already_completed"
    assert client.look_up(waiting).status == "succeeded"
    assert sim.stats()["cancel_races"] == 1


def test_signed_webhooks_verify_against_the_simulators_jwks_and_duplicates_share_the_key(
    sim: FalSimulator, client: FalClient, receiver: Receiver, verifier: FalWebhookVerifier
) -> None:
    # Given fal delivering every webhook twice
    sim.configure(webhook_duplicate_rate=1.0)
    ref = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=receiver.url("job-5"))
    deliveries = wait_until(lambda: len(receiver.deliveries) == 2 and receiver.deliveries, what="two webhooks")
    # When each is read / Then both verify (the JWKS fetched once, over HTTP) with the same de-duplication key
    events = [client.read_callback(d.body, d.headers) for d in deliveries]
    assert {e.dedup_key for e in events} == {ref.id}
    assert all(e.signed and e.task.status == "succeeded" for e in events)
    assert verifier.fetches == 1
    # And a tampered one does not
    with pytest.raises(ProviderSignatureError):
        client.read_callback(deliveries[0].body.replace(b"OK", b"ERROR"), deliveries[0].headers)


def test_a_rotated_signing_key_is_picked_up_with_one_jwks_fetch(sim: FalSimulator, receiver: Receiver) -> None:
    # Given a client whose verifier holds fal's current key (its clock ours to move)
    now = [1000.0]
    verifier = FalWebhookVerifier(sim.jwks_url, clock=lambda: now[0])
    client = FalClient(KEY, queue_base_url=sim.base_url, verify=verifier)
    client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=receiver.url("job-6"))
    first = wait_until(lambda: receiver.deliveries, what="a webhook")[0]
    client.read_callback(first.body, first.headers)
    # When fal signs with a new key, two minutes later
    sim.rotate_keys()
    now[0] += 120
    client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=receiver.url("job-7"))
    second = wait_until(lambda: len(receiver.deliveries) == 2 and receiver.deliveries, what="a webhook")[1]
    # Then it verifies after exactly one more fetch
    assert client.read_callback(second.body, second.headers).task.status == "succeeded"
    assert verifier.fetches == 2
    client.close()


def test_lost_webhooks_are_counted_and_the_request_is_still_there_to_look_up(
    sim: FalSimulator, client: FalClient, receiver: Receiver
) -> None:
    sim.configure(webhook_loss_rate=1.0)
    ref = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=receiver.url("job-8"))
    assert finished(client, ref).status == "succeeded"
    assert sim.stats()["webhooks_lost"] == 1 and receiver.deliveries == []


def test_a_webhook_for_a_refused_request_says_read_the_result(
    sim: FalSimulator, client: FalClient, receiver: Receiver
) -> None:
    # Given a request Kling refuses: fal's webhook says ERROR
    sim.configure(result_422_rate=1.0)
    ref = client.create(V3_PRO_T2V, SEED_EXAMPLE, webhook_url=receiver.url("job-9"))
    delivery = wait_until(lambda: receiver.deliveries, what="a webhook")[0]
    # Then the webhook is not taken for a failure (fal's ERROR may be transient); the result fetch decides
    assert client.read_callback(delivery.body, delivery.headers).task.status == "unknown"
    assert client.result(ref).status == "failed"
