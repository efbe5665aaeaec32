"""Two knobs the colliding-names tests and chaos row use: the words of the reused-id refusal, and
downloads cut for a video's first GETs."""

from __future__ import annotations

import httpx

from tests.sim.conftest import SSL_CONTEXT, Api


def test_the_reused_external_id_refusal_is_worded_as_configured(make_sim, make_api) -> None:
    sim = make_sim(refuse_reused_external_id=True, reused_external_id_message="任务已存在")
    api: Api = make_api(sim)
    api.create_ok(prompt="x", external_task_id="same")
    answer = api.create(prompt="x", external_task_id="same").json()
    assert (answer["code"], answer["message"]) == (1201, "任务已存在")


def test_a_videos_first_gets_are_cut_then_it_is_served_whole(make_sim, make_api) -> None:
    sim = make_sim(cdn_cut_first=2, cdn_drop_after_bytes=1024, video_size_bytes=8192)
    api: Api = make_api(sim)
    task_id = api.create_ok(prompt="x")
    url = api.wait_terminal("text2video", task_id)["task_result"]["videos"][0]["url"]
    got = []
    with httpx.Client(verify=SSL_CONTEXT, timeout=10.0) as http:
        for _ in range(3):
            try:
                got.append(len(http.get(url).content))
            except httpx.HTTPError:
                got.append(None)
    assert got == [None, None, 8192]
