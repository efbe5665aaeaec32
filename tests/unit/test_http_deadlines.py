"""Servers that drip their answer one byte at a time, each byte well within any per-read timeout: every
outbound exchange still ends by its total deadline (status line, headers or body; DNS too)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
from moto import mock_aws

from kling_local.drip import DripServer
from kling_pipeline.adapters.deadlines import DeadlinePassedError, for_invocation, getaddrinfo, within
from kling_pipeline.adapters.input_images import InputImagePolicy, InputImages
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.pinned_http import pinned_client
from kling_pipeline.adapters.public_addresses import DownloadPolicy, check_url
from kling_pipeline.adapters.video_transfer import stream_to_s3
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy
from kling_pipeline.errors import ImageRefusedError, KlingUnavailableError, TransientDownloadError
from kling_pipeline.requests import JobRequest

DRIP_S = 0.2  # a byte every 0.2 s: far inside the 1 s per-read timeouts below
HELD_FOR_S = 12.0  # how long a drip lasts: a client without a total deadline is held this long
LIMIT_S = 1.0
ENDS_BY_S = LIMIT_S + 1.5  # the deadline, and time to tear the connection down


@pytest.fixture(params=["status", "headers", "body"])
def drip(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    with DripServer(phase=request.param, interval_s=DRIP_S, max_s=HELD_FOR_S) as server:
        yield server


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started


def test_a_pinned_client_ends_a_dripping_exchange_at_its_deadline(drip: DripServer) -> None:
    # Given a client whose per-read timeout the drip never trips
    # When a GET is read whole under a total deadline
    with (
        pinned_client(timeout=httpx.Timeout(LIMIT_S)) as client,
        Stopwatch() as watch,
        pytest.raises(httpx.TimeoutException),
        within(LIMIT_S),
    ):
        client.get(f"{drip.url}/a.png").read()
    # Then it ends at the deadline, not when the server stops dripping
    assert watch.seconds < ENDS_BY_S


def test_an_image_url_that_drips_is_refused_as_not_answering_within_the_limit(drip: DripServer) -> None:
    # Given the image probe's rules, with a total limit of 1 s
    policy = InputImagePolicy.from_settings(
        input_bucket="", url_lifetime_s=600, image_url_hosts=f"http://{drip.address}", production=False, timeout_s=1
    )
    images = InputImages(policy, s3=None)
    request = JobRequest.model_validate({"kind": "image2video", "image": f"{drip.url}/a.png?X-Amz-Signature=SIG"})
    # When the image is checked
    with Stopwatch() as watch, pytest.raises(ImageRefusedError) as refused:
        images.resolve(request)
    # Then it is refused, in time, saying the URL did not answer within the limit (and no signature shown)
    assert watch.seconds < ENDS_BY_S
    assert refused.value.rule == "image-url-answers"
    assert "did not answer within 1 s" in str(refused.value)
    assert "SIG" not in str(refused.value)


def test_a_webhook_receiver_that_drips_is_a_failed_delivery_in_time(drip: DripServer) -> None:
    sender = WebhookSender(
        "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", WebhookPolicy((), production=False, timeout_s=LIMIT_S)
    )
    with Stopwatch() as watch:
        delivery = sender.send(f"http://127.0.0.1:{drip.address.split(':')[1]}/hook", message_id="m", body="{}")
    assert watch.seconds < ENDS_BY_S
    assert not delivery.delivered
    assert "no whole answer within 1 s" in delivery.detail


def test_kling_that_drips_is_unavailable_within_kling_timeout(drip: DripServer) -> None:
    client = KlingClient(drip.url, "ak", "sk" * 20, timeout_s=LIMIT_S)
    with Stopwatch() as watch, pytest.raises(KlingUnavailableError):
        client.get_task("text2video", "t-1")
    client.close()
    assert watch.seconds < ENDS_BY_S


def test_the_invocations_deadline_bounds_a_longer_limit(drip: DripServer) -> None:
    # Given an invocation with 4 s left (1 s after the margin) and a webhook timeout of 10 s
    sender = WebhookSender("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", WebhookPolicy((), production=False))
    # When a delivery meets a dripping receiver, Then it ends by the invocation's deadline
    with Stopwatch() as watch, for_invocation(4_000, margin_s=3.0):
        delivery = sender.send(f"{drip.url}/hook", message_id="m", body="{}")
    assert watch.seconds < ENDS_BY_S and not delivery.delivered


def test_a_video_that_drips_fails_the_transfer_by_the_deadline_though_boto3_reads_on_its_own_thread() -> None:
    body = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096
    with (
        DripServer(phase="body", interval_s=DRIP_S, max_s=HELD_FOR_S, content_type="video/mp4", body=body) as drip,
        mock_aws(),
    ):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="videos")
        policy = DownloadPolicy((), max_bytes=10**6, production=False, local_http_hosts=(drip.address,), timeout_s=5)
        with Stopwatch() as watch, pytest.raises(TransientDownloadError), within(LIMIT_S):
            stream_to_s3(f"{drip.url}/v.mp4", bucket="videos", key="v.mp4", policy=policy, s3=s3, metadata={})
        assert watch.seconds < ENDS_BY_S
        assert "Contents" not in s3.list_objects_v2(Bucket="videos")  # nothing half-written


def test_a_dns_lookup_that_hangs_ends_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a resolver that never answers (socket.getaddrinfo has no timeout)
    hung = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: hung.wait(HELD_FOR_S))
    policy = DownloadPolicy(("*.klingai.com",), max_bytes=1, production=True)
    try:
        # When a URL is checked under a 1 s deadline, Then the check gives up at the deadline
        with (
            Stopwatch() as watch,
            pytest.raises(TransientDownloadError, match="did not resolve within"),
            within(LIMIT_S),
        ):
            check_url("https://cdn.klingai.com/v.mp4", policy)
        assert watch.seconds < ENDS_BY_S
        with pytest.raises(DeadlinePassedError):
            getaddrinfo("cdn.klingai.com", 443, limit_s=0.2)
    finally:
        hung.set()
