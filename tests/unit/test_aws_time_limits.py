"""AWS's time limits the configuration cannot talk past: a presigned link lives no longer than the
credentials that signed it, and a webhook's retry delay fits in SQS's 12 hours from the receive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from kling_local.sim.media import sample_image
from kling_pipeline.adapters.input_images import InputImagePolicy, InputImages, signing_s3_client
from kling_pipeline.adapters.video_links import VideoLinks
from kling_pipeline.adapters.webhook_queue import MAX_VISIBILITY_S, WebhookQueue
from kling_pipeline.settings import WebhookSettings
from tests.support.template import load_template


def _expires_in(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


@pytest.fixture
def role_credentials(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Temporary credentials that say when they expire (an assumed role's), 20 minutes from now."""
    expiry = datetime.now(UTC) + timedelta(minutes=20)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIATESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing-token")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", expiry.isoformat())
    # boto3's default session keeps the credentials it resolved first (an earlier test's): start afresh.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return expiry


def test_a_video_link_lasts_no_longer_than_its_signing_credentials(role_credentials: datetime) -> None:
    # Given DownloadUrlSeconds of 12 hours and role credentials with 20 minutes left
    links = VideoLinks(ttl_s=43200)
    # When the jobs API makes a completed video's link
    url, expires_at = links.download_url("s3://videos-bucket/videos/job-1.mp4")
    # Then the link asks for no more than the credentials have, and the expiry handed out says so
    assert 1100 <= _expires_in(url) <= 1200
    promised = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    assert promised <= role_credentials + timedelta(seconds=1)


def test_a_video_link_keeps_its_lifetime_when_the_credentials_outlive_it(role_credentials: datetime) -> None:
    url, _ = VideoLinks(ttl_s=900).download_url("s3://videos-bucket/videos/job-1.mp4")
    assert _expires_in(url) == 900


def test_an_input_image_link_lasts_no_longer_than_its_signing_credentials(role_credentials: datetime) -> None:
    with mock_aws():
        s3 = signing_s3_client()
        s3.create_bucket(Bucket="inputs")
        s3.put_object(Bucket="inputs", Key="a.png", Body=sample_image(720, 1280, "png"))
        policy = InputImagePolicy.from_settings(
            input_bucket="inputs", url_lifetime_s=3600, image_url_hosts="*", production=True
        )
        url = InputImages(policy, s3).resolve_one("image", "s3://inputs/a.png")
    assert 1100 <= _expires_in(url) <= 1200


def test_a_webhook_retry_delay_past_sqs_limit_is_clamped_to_what_sqs_takes() -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="webhooks")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
        (message,) = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1)["Messages"]
        # When a failed delivery asks for a day's delay (SQS refuses more than 12 hours from the receive)
        WebhookQueue(queue_url, sqs=sqs).retry_later(message["ReceiptHandle"], 86400)
        # Then SQS took it: the message stays hidden instead of the batch failing on the call
        assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1).get("Messages", []) == []


def test_the_template_and_the_settings_allow_no_retry_delay_sqs_would_refuse() -> None:
    parameter = load_template()["Parameters"]["WebhookRetryMaxSeconds"]
    assert int(parameter["MaxValue"]) <= MAX_VISIBILITY_S < 43200
    settings_limit = next(
        m.le for m in WebhookSettings.model_fields["webhook_retry_max_s"].metadata if hasattr(m, "le")
    )
    assert settings_limit <= MAX_VISIBILITY_S
