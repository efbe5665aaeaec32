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


def test_the_usd_budget_estimates_a_replicate_job_by_its_price_table_and_the_deployments_overrides() -> None:
    from types import SimpleNamespace

    from kling_pipeline.doors import DOORS
    from kling_pipeline.providers.replicate import model_for
    from kling_pipeline.requests import JobRequest

    # Given a 10-second Replicate job and Replicate's price for its model
    fields = {
        "job_id": "j1",
        "prompt": "x",
        "provider": "replicate",
        "model": "kling-v2-5-turbo",
        "mode": "pro",
        "duration": "10",
    }
    request = JobRequest.model_validate(fields)
    settings = SimpleNamespace(default_model="kling-v2-6", replicate_prices="{}")
    estimate = DOORS["replicate"].usd_estimate
    assert estimate is not None
    row = model_for("kling-v2-5-turbo", request.kind, request.mode)
    assert row.endpoint == "kwaivgi/kling-v2.5-turbo-pro"
    # When the daily USD budget asks what it will cost, Then it is seconds x the table's price ...
    assert estimate(request, settings) == pytest.approx(10 * 0.07)
    # ... and a deployment's override of that model's price wins
    overridden = SimpleNamespace(default_model="kling-v2-6", replicate_prices=f'{{"{row.endpoint}": 0.5}}')
    assert estimate(request, overridden) == pytest.approx(5.0)
    # AceData's price is not known: its jobs are not held to the USD budget
    assert DOORS["acedata"].usd_estimate is None
