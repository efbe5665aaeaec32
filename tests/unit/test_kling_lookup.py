"""Looking a task up by our own id: only an exact match is ours (the reply form is unconfirmed)."""

import httpx

from kling_pipeline.adapters.kling_client import KlingClient


def client_answering(data: object, status: int = 200, code: int = 0) -> KlingClient:
    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("external_task_id") == "job-7"
        return httpx.Response(status, json={"code": code, "message": "x", "request_id": "r", "data": data})

    return KlingClient("https://kling.test", "ak", "s" * 40, transport=httpx.MockTransport(reply))


def task(task_id: str, external: str | None) -> dict[str, object]:
    info = {"external_task_id": external} if external else {}
    return {"task_id": task_id, "task_status": "processing", "task_info": info}


def test_a_list_reply_matches_only_our_external_id() -> None:
    # Kling ignored the filter and listed the account's tasks: the one without an id is not ours.
    listing = [task("t-console", None), task("t-other", "job-6"), task("t-ours", "job-7")]
    found = client_answering(listing).find_by_external_id("text2video", "job-7")
    assert found is not None and found.task_id == "t-ours"
    assert client_answering(listing[:2]).find_by_external_id("text2video", "job-7") is None


def test_a_single_object_reply_is_trusted_unless_it_names_another_id() -> None:
    assert client_answering(task("t1", None)).find_by_external_id("text2video", "job-7") is not None
    assert client_answering(task("t1", "job-7")).find_by_external_id("text2video", "job-7") is not None
    assert client_answering(task("t1", "job-8")).find_by_external_id("text2video", "job-7") is None


def test_not_found_is_none() -> None:
    assert client_answering(None, status=404, code=1203).find_by_external_id("text2video", "job-7") is None


def test_every_call_about_a_task_uses_its_kinds_path() -> None:
    # Given a client that records the paths it is asked for
    paths: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        data = [] if "pageNum" in request.url.params else task("t1", "job-7")
        return httpx.Response(200, json={"code": 0, "message": "x", "request_id": "r", "data": data})

    client = KlingClient("https://kling.test", "ak", "s" * 40, transport=httpx.MockTransport(reply))
    # When an omni-video task is created, confirmed, looked up and listed
    client.create_task("omni-video", {"prompt": "p"})
    client.get_task("omni-video", "t1")
    client.locate("omni-video", "job-7", created_since_ms=0)
    client.list_tasks("omni-video")
    # Then every call went to omni-video's endpoint
    assert set(paths) == {"/v1/videos/omni-video", "/v1/videos/omni-video/t1"}
