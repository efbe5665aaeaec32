"""What a create's answer proves. Only answers that prove Kling made no task may be followed by a
plain retry; every other answer leaves the create unsettled (the task may exist, and be billed)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.errors import (
    KlingAccountError,
    KlingCreateUnsettledError,
    KlingFinalError,
    KlingRetryableError,
    KlingShapeError,
    KlingUnavailableError,
)

Reply = Callable[[httpx.Request], httpx.Response]
TASK = {"task_id": "t-1", "task_status": "submitted", "task_info": {"external_task_id": "job-1"}}


def client(reply: Reply) -> KlingClient:
    return KlingClient("https://kling.test", "ak", "s" * 40, transport=httpx.MockTransport(reply))


def envelope(code: int, status: int, data: object = None) -> Reply:
    return lambda request: httpx.Response(status, json={"code": code, "message": "m", "request_id": "r", "data": data})


def raises(exc: Exception) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        raise exc

    return reply


def create(reply: Reply) -> None:
    client(reply).create_task("text2video", {"prompt": "x", "external_task_id": "job-1"})


@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("5000 in Kling's envelope", envelope(5000, 500)),
        ("5001", envelope(5001, 503)),
        ("5002", envelope(5002, 504)),
        ("HTTP 502 without an envelope", lambda r: httpx.Response(502, text="<html>Bad Gateway</html>")),
        ("HTTP 500 with an empty body", lambda r: httpx.Response(500)),
        ("an unknown code", envelope(9999, 400)),
        ("an unreadable 200", lambda r: httpx.Response(200, text="{not json")),
        ("a 200 without task_id", envelope(0, 200, {"task_status": "submitted"})),
        ("a 200 with a code that is not a number", lambda r: httpx.Response(200, json={"code": "zero"})),
        ("a timeout after sending", raises(httpx.ReadTimeout("timed out"))),
        ("a connection cut after sending", raises(httpx.RemoteProtocolError("peer closed connection"))),
    ],
)
def test_answers_that_do_not_prove_absence_leave_the_create_unsettled(name: str, reply: Reply) -> None:
    with pytest.raises(KlingCreateUnsettledError):
        create(reply)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (envelope(1302, 429), KlingRetryableError),
        (envelope(1303, 429), KlingRetryableError),
        (envelope(1201, 400), KlingFinalError),
        (envelope(1301, 400), KlingFinalError),
        (envelope(1102, 429), KlingAccountError),
        (envelope(1000, 401), KlingAccountError),
        (envelope(1304, 429), KlingAccountError),
        (raises(httpx.ConnectError("refused")), KlingUnavailableError),
        (raises(httpx.ConnectTimeout("no route")), KlingUnavailableError),
    ],
)
def test_answers_that_prove_no_task_exists_are_raised_as_such(reply: Reply, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        create(reply)
    assert not isinstance(info.value, KlingCreateUnsettledError)
    if isinstance(info.value, KlingUnavailableError):
        assert not info.value.request_sent


def test_an_unknown_status_in_a_create_answer_is_kept_not_refused() -> None:
    # A status this version does not know still names the task: the task exists and is recorded.
    task = client(envelope(0, 200, TASK | {"task_status": "queueing"})).create_task("text2video", {"prompt": "x"})
    assert task.task_id == "t-1" and task.task_status == "queueing"


def test_a_query_answer_in_an_unknown_shape_is_a_shape_error() -> None:
    with pytest.raises(KlingShapeError):
        client(envelope(0, 200, {"task_status": "succeed"})).get_task("text2video", "t-1")


def test_a_bare_404_on_the_lookup_is_not_proof_of_absence() -> None:
    lookup = client(lambda r: httpx.Response(404, text="<html>Not Found</html>"))
    with pytest.raises(KlingUnavailableError):
        lookup.find_by_external_id("text2video", "job-1")
    # Kling's own "task not found" is.
    assert client(envelope(1203, 404)).find_by_external_id("text2video", "job-1") is None


def test_locate_falls_back_to_the_list_and_stops_at_the_claim_time() -> None:
    pages: list[int] = []

    def reply(request: httpx.Request) -> httpx.Response:
        if "external_task_id" in request.url.params:
            return httpx.Response(404, text="no such route")
        page = int(request.url.params["pageNum"])
        pages.append(page)
        newer = [{"task_id": f"p{page}-{i}", "task_status": "processing", "created_at": 2_000_000} for i in range(500)]
        older = [{"task_id": "old", "task_status": "succeed", "created_at": 1_000}]
        data = newer if page == 1 else older
        return httpx.Response(200, json={"code": 0, "message": "ok", "data": data})

    # Not on page 1 (all newer than the claim), page 2 reaches back past the claim: absent, proven.
    assert client(reply).locate("text2video", "job-1", created_since_ms=1_500_000) is None
    assert pages == [1, 2]


def test_locate_finds_our_task_in_the_list_when_the_lookup_ignores_the_filter() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        data = [{"task_id": "other", "task_status": "succeed", "created_at": 5}, TASK | {"created_at": 6}]
        return httpx.Response(200, json={"code": 0, "message": "ok", "data": data})

    found = client(reply).locate("text2video", "job-1", created_since_ms=0)
    assert found is not None and found.task_id == "t-1"
