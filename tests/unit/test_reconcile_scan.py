"""Reconciliation's list scan on a busy account (issue #21, item 7): it reaches back to the create that may
have made the task, not to the job's first claim; it is bounded by the invocation's time, not a fixed
number of pages; and it never takes an unfinished scan for proof."""

from __future__ import annotations

import httpx
import pytest

from kling_pipeline.adapters.kling_client import LIST_PAGE_SIZE, KlingClient
from kling_pipeline.claims import unsettled_from
from kling_pipeline.errors import KlingUnavailableError
from kling_pipeline.lifecycle import Job, JobState

CLAIM_MS = 1_000_000_000  # everything on the account's busy pages is newer than this


def busy_account(pages: int, ours_on: int | None = None) -> tuple[KlingClient, list[int]]:
    """A list `pages` pages deep of other tasks, all newer than CLAIM_MS, then an older one; our task
    (external id job-1) on page `ours_on`. Returns the client and the pages it asked for."""
    asked: list[int] = []

    def reply(request: httpx.Request) -> httpx.Response:
        if "external_task_id" in request.url.params:
            return httpx.Response(404, text="no such route")
        page = int(request.url.params["pageNum"])
        asked.append(page)
        if page > pages:
            data = [{"task_id": "old", "task_status": "succeed", "created_at": 1}]
        else:
            data = [
                {"task_id": f"p{page}-{i}", "task_status": "succeed", "created_at": CLAIM_MS + 10}
                for i in range(LIST_PAGE_SIZE)
            ]
            if page == ours_on:
                data[7] = {
                    "task_id": "ours",
                    "task_status": "succeed",
                    "created_at": CLAIM_MS + 10,
                    "task_info": {"external_task_id": "job-1"},
                }
        return httpx.Response(200, json={"code": 0, "message": "ok", "data": data})

    return KlingClient("https://kling.test", "ak", "s" * 40, transport=httpx.MockTransport(reply)), asked


def test_with_time_left_the_scan_goes_past_ten_pages_to_the_proof() -> None:
    # Given a busy account: fifteen pages of tasks since the create, ours not among them
    kling, asked = busy_account(15)
    # When the scan has the invocation's time
    found = kling.locate("text2video", "job-1", created_since_ms=CLAIM_MS, time_left_s=lambda: 300.0)
    # Then it reads every page back to the create: absent, proven
    assert found is None and asked == list(range(1, 17))


def test_with_time_left_the_scan_finds_our_task_past_ten_pages() -> None:
    kling, _ = busy_account(15, ours_on=13)
    found = kling.locate("text2video", "job-1", created_since_ms=CLAIM_MS, time_left_s=lambda: 300.0)
    assert found is not None and found.task_id == "ours"


def test_a_scan_out_of_time_is_not_proof() -> None:
    # Given a busy account, and an invocation with time for three pages only
    kling, asked = busy_account(15)
    left = iter([100.0, 100.0, 100.0, 1.0])
    # When the scan runs, it stops before a request that would not fit, and says it proved nothing
    with pytest.raises(KlingUnavailableError, match="ran out of time after 3 pages"):
        kling.locate("text2video", "job-1", created_since_ms=CLAIM_MS, time_left_s=lambda: next(left))
    assert asked == [1, 2, 3]


def test_the_scan_reaches_back_to_the_unsettled_create_not_the_first_claim() -> None:
    # Given a job first claimed three days ago (held by the budget since), whose create went unanswered
    # an hour ago
    now = 1_900_000_000
    job = Job(
        job_id="j",
        state=JobState.QUEUED,
        version=9,
        kind="text2video",
        request={"prompt": "x"},
        created_at="2030-01-01T00:00:00.000Z",
        updated_at="2030-01-01T00:00:00.000Z",
        first_claimed_at=now - 3 * 86_400,
        claimed_at=now - 3_600,
        needs_reconcile=True,
        unsettled_since=now - 3_600,
    )
    # Then the task can be no older than that create
    assert unsettled_from(job, now) == now - 3_600
    # and a job with no unsettled create on record reaches back to its first claim
    assert unsettled_from(job.model_copy(update={"unsettled_since": None}), now) == now - 3 * 86_400
