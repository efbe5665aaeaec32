"""Kling's newer API design beside the legacy one: which models it serves (the capability table), its
create body built from our own request, its paths, and its answers read into the one KlingTask."""

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kling_pipeline import capabilities
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.errors import KlingFinalError
from kling_pipeline.kling_body import create_body
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.requests import JobRequest

NEW_TASK: dict[str, Any] = {
    "id": "860000000000000001",
    "status": "succeeded",
    "message": "",
    "create_time": 1781080778802,
    "update_time": 1781080794151,
    "external_id": "job-7",
    "outputs": [{"type": "video", "id": "v1", "url": "https://cdn.test/v1.mp4", "watermark_url": "w", "duration": 5.1}],
    "billing": [{"charge_type": "unit", "amount": 2.5, "package_type": "video"}],
}


def request(**fields: Any) -> JobRequest:
    return JobRequest.model_validate(fields)


def body(**fields: Any) -> dict[str, Any]:
    return create_body(
        request(**fields), default_model="kling-v2-6", callback_url="https://cb.test/x", external_task_id="job-7"
    )


# -- the capability table --------------------------------------------------------------------------


def test_the_table_says_which_design_serves_each_model() -> None:
    newer = {name for name, spec in capabilities.MODELS.items() if spec.design.value == "new"}
    assert newer == {"kling-2.6", "kling-3.0", "kling-3.0-turbo", "kling-3.0-omni"}
    assert capabilities.design_of("kling-v2-6") == "legacy"
    assert capabilities.design_of("kling-unknown") == "legacy"
    assert capabilities.new_design_path("text2video", "kling-2.6") == "/text-to-video/kling-2.6"
    assert capabilities.new_design_path("image2video", "kling-3.0-turbo") == "/image-to-video/kling-3.0-turbo"
    assert capabilities.new_design_path("omni-video", "kling-3.0-omni") == "/omni-video/kling-3.0-omni"
    for spec in capabilities.MODELS.values():
        if spec.design.value == "new":
            assert spec.design.source.checked and "newer API design" in spec.design.source.where


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"model": "kling-3.0", "prompt": "p", "duration": 16}, "duration: kling-3.0 takes 3 to 15 seconds"),
        ({"model": "kling-2.6", "prompt": "p", "duration": 7}, "duration: kling-2.6 takes 5 or 10 seconds"),
        (
            {"model": "kling-2.6", "prompt": "p", "sound": True, "resolution": "720p"},
            "sound: kling-2.6 makes native audio only at 1080p",
        ),
        (
            {"model": "kling-2.6", "prompt": "p", "sound": True},
            "sound: kling-2.6 makes native audio only at 1080p; set resolution '1080p'",
        ),
        (
            {
                "model": "kling-3.0-turbo",
                "kind": "image2video",
                "image": "https://i.test/a.png",
                "image_tail": "https://i.test/b.png",
                "mode": "pro",
            },
            "image_tail: kling-3.0-turbo takes a first frame only",
        ),
        ({"model": "kling-3.0", "prompt": "p" * 3073}, "prompt: at most 3072 characters"),
        ({"model": "kling-v2-6", "prompt": "p" * 2501}, "prompt: kling-v2-6 takes at most 2500 characters"),
        ({"model": "kling-v2-6", "prompt": "p", "resolution": "1080p"}, "resolution: kling-v2-6 takes no resolution"),
        ({"model": "kling-3.0", "prompt": "p", "negative_prompt": "blur"}, "negative_prompt: kling-3.0"),
        ({"model": "kling-3.0", "prompt": "p", "cfg_scale": 0.5}, "cfg_scale: kling-3.0 does not take cfg_scale"),
    ],
)
def test_the_newer_rules_refuse_with_the_field_named(fields: dict[str, Any], refused: str) -> None:
    # The refusal is reported at the field it names, in words that say the rule and the fix.
    field, _, words = refused.partition(": ")
    with pytest.raises(ValidationError) as raised:
        request(**fields)
    errors = [(".".join(map(str, e["loc"])), e["msg"]) for e in raised.value.errors()]
    assert any(loc == field and words in msg for loc, msg in errors), errors


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "kling-3.0", "prompt": "p" * 3072, "duration": 15, "resolution": "4k"},
        {"model": "kling-3.0", "prompt": "p", "duration": 3},
        {"model": "kling-2.6", "prompt": "p", "duration": "10", "sound": True, "resolution": "1080p"},
        {"model": "kling-3.0-turbo", "kind": "image2video", "image": "https://i.test/a.png", "resolution": "720p"},
        {"model": "kling-3.0-omni", "kind": "omni-video", "prompt": "p", "duration": 12},
    ],
)
def test_what_the_newer_rules_allow_passes(fields: dict[str, Any]) -> None:
    assert request(**fields).warnings == []


# -- the create body -------------------------------------------------------------------------------


def test_a_text_to_video_body_of_the_newer_design() -> None:
    sent = body(model="kling-2.6", prompt="a fox", duration="10", sound=True, resolution="1080p", watermark=False)
    assert sent == {
        "prompt": "a fox",
        "settings": {"resolution": "1080p", "duration": 10, "audio": "native"},
        "options": {
            "callback_url": "https://cb.test/x",
            "external_task_id": "job-7",
            "watermark_info": {"enabled": False},
        },
    }


def test_an_image_to_video_body_puts_the_prompt_and_frames_in_contents() -> None:
    sent = create_body(
        request(
            model="kling-3.0",
            kind="image2video",
            image="s3://in-bucket/a.png",
            image_tail="https://i.test/b.png",
            prompt="it wakes",
            duration=8,
            kling_options={"multi_shot": False},
        ),
        default_model="kling-v2-6",
        callback_url="https://cb.test/x",
        external_task_id="job-7",
        images={"image": "https://presigned.test/a.png"},
    )
    assert sent["contents"] == [
        {"type": "prompt", "text": "it wakes"},
        {"type": "first_frame", "image": "https://presigned.test/a.png"},
        {"type": "last_frame", "image": "https://i.test/b.png"},
    ]
    assert sent["settings"] == {"duration": 8, "multi_shot": False}
    assert "model_name" not in sent and "prompt" not in sent


def test_omni_references_are_frames_or_elements() -> None:
    sent = body(
        model="kling-3.0-omni",
        kind="omni-video",
        prompt="p",
        image_list=[{"image": "https://i.test/a.png", "type": "first_frame"}, "https://i.test/b.png"],
    )
    assert [item["type"] for item in sent["contents"]] == ["prompt", "first_frame", "element"]


def test_a_legacy_model_keeps_its_legacy_body() -> None:
    sent = body(model="kling-v2-6", prompt="a fox", duration="5", sound=True)
    assert sent["model_name"] == "kling-v2-6" and sent["sound"] == "on" and sent["callback_url"] == "https://cb.test/x"
    assert "settings" not in sent and "options" not in sent


# -- the answers -----------------------------------------------------------------------------------


def test_a_newer_design_task_is_read_into_the_one_task() -> None:
    task = KlingTask.model_validate(NEW_TASK)
    assert task.design == "new"
    assert (task.task_id, task.task_status, task.created_at, task.updated_at) == (
        "860000000000000001",
        "succeed",
        1781080778802,
        1781080794151,
    )
    assert task.task_info.external_task_id == "job-7"
    assert task.first_video is not None and task.first_video.url == "https://cdn.test/v1.mp4"
    assert task.first_video.duration == "5.1"
    assert task.final_unit_deduction == "2.5"
    assert task.cash_charged is None


def test_a_cash_charge_carries_its_currency() -> None:
    billed = NEW_TASK | {"billing": [{"charge_type": "cash", "amount": "0.84", "currency": "USD", "list_price": 1}]}
    task = KlingTask.model_validate(billed)
    assert task.cash_charged == {"USD": "0.84"}
    assert task.final_unit_deduction is None  # no units were charged: the reservation is not given back as zero


def test_a_failed_newer_task_gives_its_message() -> None:
    task = KlingTask.model_validate(NEW_TASK | {"status": "failed", "message": "content policy", "outputs": []})
    assert (task.task_status, task.task_status_msg, task.first_video) == ("failed", "content policy", None)


def test_succeeded_and_succeed_both_mean_done() -> None:
    legacy = KlingTask.model_validate({"task_id": "t", "task_status": "succeed"})
    assert legacy.task_status == KlingTask.model_validate(NEW_TASK).task_status == "succeed"
    assert KlingTask.model_validate({"task_id": "t", "task_status": "succeeded"}).task_status == "succeed"


def test_the_signed_callback_vector_body_is_a_task() -> None:
    # The body of Kling's own signing example (docs/kling-contract.md, Callbacks).
    raw = (
        '{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}'
    )
    task = KlingTask.model_validate_json(raw)
    assert (task.task_id, task.task_status, task.task_status_msg) == ("1234567890", "succeed", None)


# -- the calls -------------------------------------------------------------------------------------


def new_design_client(seen: list[httpx.Request], tasks: list[dict[str, Any]]) -> KlingClient:
    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            created = {
                "id": "860000000000000001",
                "status": "submitted",
                "create_time": 1,
                "update_time": 1,
                "external_id": "job-7",
            }
            return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "request_id": "r", "data": created})
        return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "request_id": "r", "data": tasks})

    return KlingClient("https://kling.test", api_key="kling-api-key", transport=httpx.MockTransport(reply))


def test_a_newer_design_task_is_created_on_its_models_path_and_read() -> None:
    seen: list[httpx.Request] = []
    client = new_design_client(seen, [])
    task = client.create_task("image2video", {"contents": []}, model="kling-3.0-turbo")
    assert seen[0].url.path == "/image-to-video/kling-3.0-turbo"
    assert seen[0].headers["Authorization"] == "Bearer kling-api-key"
    assert (task.task_id, task.task_status, task.task_info.external_task_id) == (
        "860000000000000001",
        "submitted",
        "job-7",
    )


def test_newer_design_look_ups_go_to_tasks_by_ids() -> None:
    # Given Kling holding one newer-design task
    seen: list[httpx.Request] = []
    client = new_design_client(seen, [NEW_TASK])
    # When it is asked for by id, by several ids, and by our external id
    one = client.get_task("text2video", "860000000000000001", model="kling-2.6")
    many = client.tasks_by_ids(["860000000000000001", "860000000000000002"])
    ours = client.find_by_external_id("text2video", "job-7", model="kling-2.6")
    found = client.locate("text2video", "job-7", created_since_ms=0, model="kling-2.6")
    # Then each is one GET /tasks with the ids comma-separated, and the task comes back read
    assert [r.url.path for r in seen] == ["/tasks"] * 4
    assert seen[0].url.params["task_ids"] == "860000000000000001"
    assert seen[1].url.params["task_ids"] == "860000000000000001,860000000000000002"
    assert seen[2].url.params["external_task_ids"] == "job-7"
    assert one.task_status == "succeed" and [t.task_id for t in many] == ["860000000000000001"]
    assert ours is not None and found is not None and found.task_id == ours.task_id


def test_a_task_the_look_up_does_not_answer_is_not_found() -> None:
    client = new_design_client([], [])
    with pytest.raises(KlingFinalError) as raised:
        client.get_task("text2video", "860000000000000009", model="kling-3.0")
    assert raised.value.code == 1203
    assert client.find_by_external_id("text2video", "job-7", model="kling-3.0") is None


def test_the_cost_report_keeps_cash_per_currency_beside_units() -> None:
    from kling_local.cost_report import grouped
    from kling_pipeline.adapters.ledger import CostRow

    rows = [
        CostRow("2026-12-01", "kling-v2-6", "std", 1.0, 2),
        CostRow("2026-12-01", "kling-3.0", "std", 0.0, 1, {"USD": 0.84}),
        CostRow("2026-12-02", "kling-3.0", "std", 0.0, 2, {"USD": 1.0, "EUR": 0.5}),
    ]
    assert grouped(rows, "model") == [
        {"model": "kling-3.0", "units": 0.0, "tasks": 3, "cash": {"EUR": 0.5, "USD": 1.84}},
        {"model": "kling-v2-6", "units": 1.0, "tasks": 2},
    ]
