"""The provider doors' registry (doors.py): each door's download hosts, for its own jobs only."""

from __future__ import annotations

import pytest

from kling_pipeline.adapters.public_addresses import DownloadPolicy, check_url
from kling_pipeline.download import policy_for
from kling_pipeline.errors import DownloadRefusedError
from kling_pipeline.lifecycle import Job, JobState

KLING_HOSTS = DownloadPolicy.from_setting("*.klingai.com,*.kechuangai.com", max_bytes=1024, production=True)


def job(provider: str | None) -> Job:
    request = {"prompt": "x"} | ({"provider": provider} if provider else {})
    return Job(
        job_id="j1",
        state=JobState.DOWNLOADING,
        version=3,
        kind="text2video",
        request=request,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


@pytest.mark.parametrize(
    "url", ["https://replicate.delivery/xezq/abc/output.mp4", "https://pbxt.replicate.delivery/a.mp4"]
)
def test_a_replicate_jobs_video_may_come_from_replicate_delivery(url: str) -> None:
    # Given the deployment's allow-list of Kling's hosts, When a Replicate job's video is fetched
    policy = policy_for(job("replicate"), KLING_HOSTS)
    # Then Replicate's delivery hosts are allowed for it (the address checks still apply: DNS is not asked here)
    assert "replicate.delivery" in policy.allowed_hosts and "*.replicate.delivery" in policy.allowed_hosts


@pytest.mark.parametrize("provider", [None, "acedata"])
def test_no_other_job_may_fetch_from_replicate_delivery(provider: str | None) -> None:
    # Given a Kling (or AceData) job, When its video URL names Replicate's host, Then it is refused
    with pytest.raises(DownloadRefusedError) as refused:
        check_url("https://replicate.delivery/xezq/abc/output.mp4", policy_for(job(provider), KLING_HOSTS))
    assert refused.value.code == "URL_NOT_ALLOWED"


def test_an_acedata_jobs_video_comes_from_klings_cdn_whatever_the_list_says() -> None:
    # Given a deployment whose allow-list names no Kling host, Then an AceData job still fetches Kling's CDN
    # (AceData answers with cdn.klingai.com URLs: seed 002)
    policy = policy_for(job("acedata"), DownloadPolicy.from_setting("example.org", max_bytes=1024, production=True))
    assert "*.klingai.com" in policy.allowed_hosts
