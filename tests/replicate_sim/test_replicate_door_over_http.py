"""Our Replicate client against the Replicate simulator over HTTP: a prediction's whole life by webhook and by
look-up, the lost create answer found again by walking the list (exactly once by listing), the output
deleted after the hour, Cancel-After and cancel, signed and repeated webhooks, and 429s as backpressure."""

from __future__ import annotations

import time

import httpx
import pytest

from kling_local.replicate_sim import ReplicateSimulator
from kling_pipeline.adapters.replicate_client import ReplicateClient
from kling_pipeline.errors import (
    ProviderAccountError,
    ProviderCreateUnsettledError,
    ProviderRefusedError,
    ProviderSignatureError,
    ProviderUnavailableError,
)
from kling_pipeline.providers import OUTPUT_EXPIRED, Provider, ProviderTask, TaskRef
from tests.fal_sim.conftest import Receiver, wait_until
from tests.replicate_sim.conftest import INPUT, TOKEN, V25


def ended(client: ReplicateClient, ref: TaskRef) -> ProviderTask:
    return wait_until(lambda: (task := client.look_up(ref)).ended and task, what=f"prediction {ref.id} to end")


def test_the_replicate_client_is_a_provider(client: ReplicateClient) -> None:
    assert isinstance(client, Provider)


def test_create_then_a_signed_webhook_and_a_look_up_say_succeeded_with_one_url(
    sim: ReplicateSimulator, client: ReplicateClient, receiver: Receiver
) -> None:
    # Given one prediction made with the job's webhook URL and the job's timeout as Cancel-After
    ref = client.create(V25, INPUT, webhook_url=receiver.url("job-1"), cancel_after_s=900)
    prediction = sim.state.predictions[ref.id]
    assert (prediction.webhook, prediction.events_filter) == (receiver.url("job-1"), ["completed"])
    assert prediction.deadline is not None
    # When its webhook arrives / Then it verifies, de-duplicates on webhook-id, and says succeeded with the URL
    delivery = wait_until(lambda: receiver.deliveries, what="the webhook")[0]
    event = client.read_callback(delivery.body, delivery.headers)
    assert event.signed and event.dedup_key == delivery.headers["webhook-id"]
    assert event.task.status == "succeeded" and event.task.id == ref.id
    assert event.task.video_expires_at is not None
    # And a look-up agrees; the video is on the media host; its charge is 10 s x the price in USD
    task = client.look_up(ref)
    assert task.status == "succeeded" and task.video_url == event.task.video_url
    assert httpx.get(task.video_url).content[4:8] == b"ftyp"  # type: ignore[arg-type]
    charge = client.charge(ref, INPUT, task)
    assert charge is not None and (charge.amount, charge.unit) == (pytest.approx(0.7), "USD")
    assert sim.stats()["max_creates_per_webhook"] == 1


def test_a_lost_create_answer_is_found_by_walking_the_list_for_the_webhook_url(
    sim: ReplicateSimulator, client: ReplicateClient, receiver: Receiver
) -> None:
    # Given lists of 2 a page, and a create for job-2 whose answer is cut after the prediction was made
    sim.configure(page_size=2, create_answer_loss_rate=1.0)
    before = time.time()
    with pytest.raises(ProviderCreateUnsettledError) as caught:
        client.create(V25, INPUT, webhook_url=receiver.url("job-2"))
    assert "find_by_webhook" in str(caught.value) and "secret-job-2" not in str(caught.value)
    # And five other jobs' predictions made since, so ours is on the third page
    sim.configure(create_answer_loss_rate=0.0)
    for n in range(5):
        client.create(V25, INPUT, webhook_url=receiver.url(f"other-{n}"))
    pages_before = sim.stats()["list_pages"]
    # When the job reconciles before any new create
    found = client.find_by_webhook(receiver.url("job-2"), created_since=before)
    # Then the prediction made for it is found (walking the pages), and no second create is needed
    assert found is not None and sim.state.predictions[found.id].webhook == receiver.url("job-2")
    assert found.endpoint == V25
    assert sim.stats()["list_pages"] - pages_before == 3
    assert sim.stats()["creates_by_webhook"][receiver.url("job-2").split("//")[1].split("?")[0]] == 1
    assert ended(client, found).status == "succeeded"


def test_find_by_webhook_says_none_only_after_passing_created_since(
    sim: ReplicateSimulator, client: ReplicateClient
) -> None:
    # Given six older predictions, lists of 2 a page
    sim.configure(page_size=2)
    for n in range(6):
        client.create(V25, INPUT, webhook_url=f"https://hooks.example/callbacks/old-{n}?token=t")
    sim.state.predictions  # noqa: B018 - the simulator's clock is the wall clock: make them an hour old
    for prediction in sim.state.predictions.values():
        prediction.created -= 3600
    # When a job whose create never reached Replicate looks for its URL from now
    found = client.find_by_webhook("https://hooks.example/callbacks/never?token=t", created_since=time.time())
    # Then it is not found, after one page: older predictions cannot be ours
    assert found is None and sim.stats()["list_pages"] == 1


def test_a_walk_that_meets_a_429_asks_again_never_says_not_found(
    sim: ReplicateSimulator, client: ReplicateClient
) -> None:
    client.create(V25, INPUT, webhook_url="https://hooks.example/callbacks/a?token=t")
    sim.configure(throttle_rate=1.0)
    with pytest.raises(ProviderUnavailableError) as caught:
        client.find_by_webhook("https://hooks.example/callbacks/b?token=t", created_since=time.time() - 60)
    assert caught.value.http_status == 429


def test_429_is_backpressure_on_create_and_look_up(sim: ReplicateSimulator, client: ReplicateClient) -> None:
    ref = client.create(V25, INPUT, webhook_url="https://hooks.example/callbacks/c?token=t")
    sim.configure(throttle_rate=1.0)
    for call in (lambda: client.look_up(ref), lambda: client.create(V25, INPUT, webhook_url="https://h.example/c/d")):
        with pytest.raises(ProviderUnavailableError) as caught:
            call()
        assert caught.value.http_status == 429
    # A throttled create made nothing: safe to send again
    assert sim.stats()["creates"] == 1 and sim.stats()["throttled"] == 2


def test_an_output_deleted_after_the_hour_is_looked_up_as_expired(
    sim: ReplicateSimulator, client: ReplicateClient
) -> None:
    # Given Replicate's hour, simulated as 50 ms, and a webhook that never came
    sim.configure(output_lifetime_s=50.0, webhook_loss_rate=1.0)
    ref = client.create(V25, INPUT, webhook_url="https://hooks.example/callbacks/e?token=t")
    first = ended(client, ref)
    url = sim.state.predictions[ref.id].output or first.video_url
    # When the job is looked up after the hour
    wait_until(lambda: sim.state.predictions[ref.id].data_removed, what="the output deleted")
    task = client.look_up(ref)
    # Then the look-up says the output expired, plainly; the media host no longer has it
    assert (task.status, task.error_code) == ("failed", OUTPUT_EXPIRED)
    assert task.error is not None and "one hour" in task.error
    assert url is not None and httpx.get(url).status_code == 404
    assert sim.stats()["outputs_deleted"] == 1


def test_cancel_after_aborts_a_prediction_that_never_started_and_it_is_not_billed(
    sim: ReplicateSimulator, client: ReplicateClient
) -> None:
    # Given a cold boot of 100 s (100 ms) and a job timeout of 20 s (20 ms)
    sim.configure(start_min_s=100.0, start_max_s=100.0)
    ref = client.create(V25, INPUT, webhook_url="https://hooks.example/callbacks/f?token=t", cancel_after_s=20)
    # Then it ends aborted, failed in our words, not billed
    task = ended(client, ref)
    assert task.status == "failed" and task.error is not None and "not charged" in task.error
    assert sim.state.predictions[ref.id].status == "aborted" and sim.stats()["billed"] == 0


def test_cancel_outcomes(sim: ReplicateSimulator, client: ReplicateClient) -> None:
    # Given one prediction still starting
    sim.configure(start_min_s=10_000.0, start_max_s=10_000.0)
    waiting = client.create(V25, INPUT, webhook_url="https://hooks.example/callbacks/g?token=t")
    # When it is cancelled / Then Replicate took the cancel, and it ends canceled, not billed
    outcome = client.cancel(waiting)
    assert outcome.result == "cancel_requested" and "not charged" in outcome.billed
    assert client.look_up(waiting).status == "failed" and sim.state.predictions[waiting.id].billed is False
    # A finished one: already completed
    sim.configure(start_min_s=0.0, start_max_s=0.0)
    done = client.create(V25, INPUT, webhook_url="https://hooks.example/callbacks/g2?token=t")
    assert ended(client, done).status == "succeeded"
    assert client.cancel(done).result == "already_completed"
    # One Replicate does not know: not found
    assert client.cancel(TaskRef("replicate", "nosuchprediction", V25)).result == "not_found"


def test_repeated_webhooks_share_the_webhook_id_and_a_tampered_or_stale_one_is_refused(
    sim: ReplicateSimulator, client: ReplicateClient, receiver: Receiver
) -> None:
    # Given Replicate delivering every webhook twice
    sim.configure(webhook_duplicate_rate=1.0)
    client.create(V25, INPUT, webhook_url=receiver.url("job-h"))
    deliveries = wait_until(lambda: len(receiver.deliveries) == 2 and receiver.deliveries, what="two webhooks")
    # Then both verify, with one de-duplication key
    assert len({client.read_callback(d.body, d.headers).dedup_key for d in deliveries}) == 1
    # And a tampered body, or one read 10 minutes late, is refused
    first = deliveries[0]
    with pytest.raises(ProviderSignatureError):
        client.read_callback(first.body.replace(b"succeeded", b"failed"), first.headers)
    with pytest.raises(ProviderSignatureError):
        client.read_callback(first.body, first.headers, now=time.time() + 600)


def test_the_webhook_secret_is_read_from_replicate_once_at_set_up(
    sim: ReplicateSimulator, client: ReplicateClient
) -> None:
    assert client.webhook_signing_secret() == sim.webhook_secret
    assert sim.stats()["secret_reads"] == 1


def test_create_answers_that_prove_nothing_was_made(sim: ReplicateSimulator, client: ReplicateClient) -> None:
    with pytest.raises(ProviderRefusedError) as refused:
        client.create("kwaivgi/kling-v9", INPUT, webhook_url="https://h.example/c/j")
    assert refused.value.http_status == 404
    with pytest.raises(ProviderRefusedError) as invalid:
        client.create("kwaivgi/kling-v2.1", INPUT, webhook_url="https://h.example/c/j")
    assert invalid.value.http_status == 422 and "start_image" in str(invalid.value)
    wrong = ReplicateClient("not-the-token", base_url=sim.base_url)
    with pytest.raises(ProviderAccountError):
        wrong.create(V25, INPUT, webhook_url="https://h.example/c/j")
    wrong.close()
    assert sim.stats()["creates"] == 0
    assert TOKEN not in str(refused.value)


def test_a_500_on_create_is_unsettled_and_listing_settles_it(
    sim: ReplicateSimulator, client: ReplicateClient, receiver: Receiver
) -> None:
    sim.configure(create_5xx_rate=1.0)
    before = time.time()
    with pytest.raises(ProviderCreateUnsettledError):
        client.create(V25, INPUT, webhook_url=receiver.url("job-i"))
    assert client.find_by_webhook(receiver.url("job-i"), created_since=before) is not None
