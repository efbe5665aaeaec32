"""The download connects to the address it checked, only on 443, and caps what crosses the wire."""

from __future__ import annotations

import gzip
import socket
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from kling_pipeline.adapters.aws_errors import is_transient
from kling_pipeline.adapters.public_addresses import DownloadPolicy, check_url
from kling_pipeline.adapters.video_transfer import stream_to_s3
from kling_pipeline.errors import DownloadRefusedError, TransientDownloadError

PRODUCTION = DownloadPolicy(("*.klingai.com",), max_bytes=10_000_000, production=True)
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5000


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The system resolver, answering a public address once and a private one after (a rebinding)."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        address = "93.184.216.34" if len(asked) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_the_connection_goes_to_the_address_that_passed_the_check(dns: list[str]) -> None:
    # Given a CDN host that resolves to a public address, then (rebinding) to a private one
    seen: list[httpx.Request] = []

    def cdn(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(MP4), headers={"content-length": str(len(MP4))})

    s3 = boto3.client("s3", region_name="us-east-1")
    stubber = Stubber(s3)
    stubber.add_response("put_object", {"ETag": '"x"'})
    stubber.add_response("put_object_tagging", {})
    # When the video is fetched
    with stubber, httpx.Client(transport=httpx.MockTransport(cdn)) as http:
        stored = stream_to_s3(
            "https://cdn.klingai.com/v.mp4?pkey=secret",
            bucket="b",
            key="videos/j.mp4",
            policy=PRODUCTION,
            s3=s3,
            metadata={},
            http=http,
        )
    # Then the name was resolved once, the request went to that address, with the name for Host and TLS
    assert dns == ["cdn.klingai.com"]
    (request,) = seen
    assert request.url.host == "93.184.216.34"
    assert request.headers["host"] == "cdn.klingai.com"
    assert request.extensions["sni_hostname"] == "cdn.klingai.com"
    assert stored.size == len(MP4)


def test_only_port_443_in_production(dns: list[str]) -> None:
    with pytest.raises(DownloadRefusedError, match="port 443"):
        check_url("https://cdn.klingai.com:8443/v.mp4", PRODUCTION)
    assert dns == []


def test_a_compressed_body_is_refused_so_the_cap_holds_on_the_wire() -> None:
    # A small gzip that would inflate past the cap: the bytes crossing the wire are what is counted.
    bomb = gzip.compress(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5_000_000)
    policy = DownloadPolicy((), max_bytes=1_000_000, production=False, local_http_hosts=("cdn.test",))

    def cdn(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(bomb), headers={"content-encoding": "gzip"})

    with httpx.Client(transport=httpx.MockTransport(cdn)) as http, pytest.raises(DownloadRefusedError) as info:
        stream_to_s3("http://cdn.test/v.mp4", bucket="b", key="k", policy=policy, s3=None, metadata={}, http=http)
    assert info.value.code == "ENCODED_BODY"


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ProvisionedThroughputExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("AccessDenied", 403, False),
        ("NoSuchBucket", 404, False),
    ],
)
def test_aws_errors_worth_retrying_are_told_apart(code: str, status: int, transient: bool) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", config=boto3.session.Config(retries={"max_attempts": 1}))
    with Stubber(s3) as stubber:
        stubber.add_client_error("put_object", service_error_code=code, http_status_code=status)
        with pytest.raises(Exception) as info:
            s3.put_object(Bucket="b", Key="k", Body=b"x")
    assert is_transient(info.value) is transient


def test_a_slow_down_from_s3_during_the_upload_is_a_transient_download_error() -> None:
    # boto3 wraps a failed part in S3UploadFailedError; the step must still see a retryable S3 error.
    s3 = boto3.client("s3", region_name="us-east-1", config=boto3.session.Config(retries={"max_attempts": 1}))
    policy = DownloadPolicy((), max_bytes=1_000_000, production=False, local_http_hosts=("cdn.test",))
    cdn = httpx.MockTransport(lambda request: httpx.Response(200, stream=httpx.ByteStream(MP4)))
    with Stubber(s3) as stubber, httpx.Client(transport=cdn) as http:
        stubber.add_client_error("put_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(Exception) as info:
            stream_to_s3("http://cdn.test/v.mp4", bucket="b", key="k", policy=policy, s3=s3, metadata={}, http=http)
    assert is_transient(info.value)
    # download.download_job turns such an error into the TransientDownloadError the workflow retries.
    assert not isinstance(info.value, TransientDownloadError)
