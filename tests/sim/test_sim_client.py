"""The project's own Kling client against the simulator: it must not tell it from Kling."""

from __future__ import annotations

import pytest

from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.errors import (
    KlingAccountError,
    KlingCreateUnsettledError,
    KlingFinalError,
    KlingRetryableError,
    KlingUnavailableError,
)


@pytest.fixture
def make_client():
    clients = []

    def make(sim, access_key=None, secret_key=None, timeout_s=10.0):
        client = KlingClient(
            sim.base_url, access_key or sim.config.access_key, secret_key or sim.config.secret_key, timeout_s=timeout_s
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _wait_done(client, kind, task_id, wait):
    return wait(lambda: (t := client.get_task(kind, task_id)).task_status in ("succeed", "failed") and t)


def test_create_get_find_list(sim, make_client, wait):
    client = make_client(sim)
    created = client.create_task("text2video", {"prompt": "a heron", "external_task_id": "job-c1"})
    assert created.task_status == "submitted"
    assert created.task_info.external_task_id == "job-c1"
    done = _wait_done(client, "text2video", created.task_id, wait)
    assert done.task_status == "succeed"
    assert done.final_unit_deduction == "1"
    assert done.first_video is not None
    assert done.first_video.url.startswith(sim.cdn_base_url)
    found = client.find_by_external_id("text2video", "job-c1")
    assert found is not None and found.task_id == created.task_id
    assert client.find_by_external_id("text2video", "never") is None
    listed = client.list_tasks("text2video", page_num=1, page_size=10)
    assert [t.task_id for t in listed] == [created.task_id]


def test_callback_bodies_parse_as_kling_tasks(api, receiver, wait):
    from kling_pipeline.kling_task import KlingTask

    task_id = api.create_ok(callback_url=receiver.url)
    wait(lambda: len(receiver.for_task(task_id)) == 3)
    tasks = [KlingTask.model_validate(body) for body in receiver.for_task(task_id)]
    assert [t.task_status for t in tasks] == ["submitted", "processing", "succeed"]
    assert tasks[-1].first_video is not None


def test_image2video_and_extend_through_the_client(sim, make_client, wait):
    from kling_local.sim import png_base64

    client = make_client(sim)
    first = client.create_task("image2video", {"image": png_base64(), "prompt": "pan"})
    video = _wait_done(client, "image2video", first.task_id, wait).first_video
    extended = client.create_task("video-extend", {"video_id": video.id})
    done = _wait_done(client, "video-extend", extended.task_id, wait)
    assert done.task_info.parent_video["id"] == video.id


@pytest.mark.parametrize(
    ("knobs", "body", "error", "code", "status"),
    [
        (
            {"concurrency_limit": 1, "generation_min_s": 60000, "generation_max_s": 60000, "force_create_errors": []},
            None,
            KlingRetryableError,
            1303,
            429,
        ),
        ({"force_create_errors": [1302]}, {"prompt": "p"}, KlingRetryableError, 1302, 429),
        # Kling's own faults do not prove a create made no task: the create is unsettled (reconciled),
        # raised from the retryable error Kling's code maps to.
        ({"force_create_errors": [5000]}, {"prompt": "p"}, KlingCreateUnsettledError, 5000, 500),
        ({"force_create_errors": [5001]}, {"prompt": "p"}, KlingCreateUnsettledError, 5001, 503),
        ({"force_create_errors": [5002]}, {"prompt": "p"}, KlingCreateUnsettledError, 5002, 504),
        ({"force_create_errors": [1102]}, {"prompt": "p"}, KlingAccountError, 1102, 429),
        ({"force_create_errors": [1103]}, {"prompt": "p"}, KlingFinalError, 1103, 403),
        ({}, {"prompt": "p", "duration": 5}, KlingFinalError, 1201, 400),
        ({}, {"prompt": "p [[reject]]"}, KlingFinalError, 1301, 400),
    ],
    ids=["1303", "1302", "5000", "5001", "5002", "1102", "1103", "1201", "1301"],
)
def test_errors_map_to_the_right_exception(make_sim, make_client, knobs, body, error, code, status):
    sim = make_sim(**knobs)
    client = make_client(sim)
    if body is None:  # fill the only slot first
        client.create_task("text2video", {"prompt": "first"})
        body = {"prompt": "second"}
    with pytest.raises(error) as caught:
        client.create_task("text2video", body)
    answer = caught.value.__cause__ if isinstance(caught.value, KlingCreateUnsettledError) else caught.value
    assert isinstance(answer, KlingRetryableError if code in (5000, 5001, 5002) else error)
    assert answer.code == code
    assert answer.http_status == status
    assert answer.message


def test_bad_credentials_are_an_account_problem(sim, make_client):
    client = make_client(sim, secret_key="not-the-secret-but-long-enough-for-hs256-keys")
    with pytest.raises(KlingAccountError) as caught:
        client.list_tasks("text2video")
    assert (caught.value.code, caught.value.http_status) == (1000, 401)


def test_unknown_task_is_final_404(sim, make_client):
    with pytest.raises(KlingFinalError) as caught:
        make_client(sim).get_task("text2video", "123456789012345678")
    assert (caught.value.code, caught.value.http_status) == (1203, 404)


def test_lost_create_answer_is_unsettled_and_findable(make_sim, make_client):
    sim = make_sim(create_response_drop_rate=1.0)
    client = make_client(sim)
    with pytest.raises(KlingCreateUnsettledError) as caught:
        client.create_task("text2video", {"prompt": "p", "external_task_id": "job-lost"})
    assert isinstance(caught.value.__cause__, KlingUnavailableError)
    found = client.find_by_external_id("text2video", "job-lost")
    assert found is not None
    assert sim.stats()["tasks_by_external_task_id"] == {"job-lost": 1}


def test_slow_answer_is_unavailable(make_sim, make_client):
    sim = make_sim(slow_rate=1.0, slow_s=2.0)
    client = make_client(sim, timeout_s=0.3)
    with pytest.raises(KlingUnavailableError):
        client.list_tasks("text2video")
