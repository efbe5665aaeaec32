"""The capability table: what each model takes, with a date and a source for every fact; validation
follows it, names the rule it applied, and lets an unknown model through with a warning."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from pydantic import ValidationError

from kling_pipeline import capabilities
from kling_pipeline.capabilities import KINDS, MODELS, Fact, endpoint_path
from kling_pipeline.kling_body import create_body
from kling_pipeline.requests import STORED_REQUEST, JobRequest, describe_validation_error
from tests.support.template import ROOT, load_template


def refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate(fields)
    return describe_validation_error(info.value)


def body_of(default_model: str = "kling-v2-6", **fields: Any) -> dict[str, Any]:
    request = JobRequest.model_validate(fields, context={"default_model": default_model})
    return create_body(request, default_model=default_model, callback_url="https://cb", external_task_id="j")


def test_every_fact_has_a_date_and_a_source() -> None:
    for spec in MODELS.values():
        for fact in (getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "name"):
            assert isinstance(fact, Fact)
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", fact.source.checked)
            assert fact.source.where


def test_the_template_knows_the_tables_models_and_defaults_to_the_tables_default() -> None:
    parameters = load_template()["Parameters"]
    assert parameters["KnownModels"]["Default"].split(",") == list(MODELS)
    assert parameters["DefaultModel"]["Default"] == capabilities.DEFAULT_MODEL
    for kind in KINDS.values():
        if kind.default_model is not None:
            assert kind.name in MODELS[kind.default_model].kinds.value


def test_each_kind_has_its_own_endpoint_path() -> None:
    assert {kind: endpoint_path(kind) for kind in KINDS} == {
        "text2video": "/v1/videos/text2video",
        "image2video": "/v1/videos/image2video",
        "multi-image2video": "/v1/videos/multi-image2video",
        "video-extend": "/v1/videos/video-extend",
        "omni-video": "/v1/videos/omni-video",
    }
    with pytest.raises(ValueError, match="unknown kind"):
        endpoint_path("lip-sync")


@pytest.mark.parametrize(
    ("fields", "rule", "field"),
    [
        ({"prompt": "x", "model": "kling-v2-6", "duration": "8"}, "durations", "duration"),
        ({"prompt": "x", "model": "kling-v3", "duration": "16"}, "durations", "duration"),
        ({"prompt": "x", "model": "kling-v1", "sound": True}, "sound", "sound"),
        ({"prompt": "x", "model": "kling-v2-1", "cfg_scale": 0.5}, "cfg-scale", "cfg_scale"),
        ({"prompt": "x", "model": "kling-v3-omni"}, "kinds", "kind"),
        (
            {"kind": "multi-image2video", "prompt": "x", "model": "kling-v1", "image_list": ["https://a/b.png"]},
            "kinds",
            "kind",
        ),
        (
            {"kind": "image2video", "model": "kling-v2-6", "image": "https://a/b.png", "image_tail": "https://a/c.png"},
            "end-frame-needs-pro",
            "image_tail",
        ),
    ],
)
def test_each_rule_of_the_table_refuses_with_the_field_and_the_rule_but_no_internal_provenance(
    fields: dict[str, Any], rule: str, field: str
) -> None:
    message = refusal(**fields)
    assert message.startswith(f"invalid job request: {field}: ")
    assert f"(rule {rule})" in message
    # The rule's source (the contract notes, the date checked) stays in capabilities.py for reviewers.
    assert (
        "kling-api.md" not in message
        and "kling-contract.md" not in message
        and "checked 20" not in message
        and "summarised" not in message
    )


def test_camera_control_is_refused_where_the_model_takes_none() -> None:
    # Given an omni model on a kind that takes camera control (so only the table's rule can refuse it)
    message = refusal(prompt="x", model="kling-v3-omni", camera_control={"type": "forward_up"})
    assert "camera_control: kling-v3-omni does not take camera_control (rule camera-control" in message


def test_todays_models_take_todays_durations_and_sound() -> None:
    assert body_of(prompt="x", model="kling-v3", duration=8, sound=True) == {
        "callback_url": "https://cb",
        "external_task_id": "j",
        "model_name": "kling-v3",
        "mode": "std",
        "duration": "8",
        "prompt": "x",
        "sound": "on",
    }
    assert body_of(prompt="x", model="kling-v2-6", sound="off")["sound"] == "off"
    assert "sound" not in body_of(prompt="x", model="kling-v1", sound=False)  # a field v1 does not know


def test_an_unknown_model_passes_with_a_warning_and_only_the_rules_for_every_model() -> None:
    request = JobRequest.model_validate({"prompt": "x", "model": "kling-v9-preview", "duration": "20", "sound": True})
    assert request.warnings == [capabilities.unknown_model_warning("kling-v9-preview")]
    assert create_body(request, default_model="kling-v2-6", callback_url="c", external_task_id="j")["duration"] == "20"
    # The rules that hold for every model still apply: a whole number of seconds, 3 minutes at most.
    assert "duration:" in refusal(prompt="x", model="kling-v9-preview", duration="2.5")
    assert "at most 180 seconds" in refusal(prompt="x", model="kling-v9-preview", duration="181")


def test_the_deployments_default_model_decides_for_a_request_that_names_none() -> None:
    message = {"prompt": "x", "duration": "8"}
    assert "duration: kling-v2-6" in refusal(**message)
    assert JobRequest.model_validate(message, context={"default_model": "kling-v3"}).duration == "8"


def test_a_stored_request_is_not_checked_against_todays_table_again() -> None:
    # Given a request accepted under a default model that takes 8 s, read back from its job record
    stored = {"prompt": "x", "duration": "8", "job_id": "j"}
    assert JobRequest.model_validate(stored, context=STORED_REQUEST).duration == "8"


def test_a_kind_whose_default_model_cannot_serve_it_gets_the_kinds_own_default() -> None:
    assert body_of(kind="omni-video", prompt="x")["model_name"] == "kling-v3-omni"
    assert body_of(kind="multi-image2video", prompt="x", image_list=["https://a/b.png"])["model_name"] == "kling-v2-6"
    assert (
        body_of(default_model="kling-v1", kind="multi-image2video", prompt="x", image_list=["https://a/b.png"])[
            "model_name"
        ]
        == "kling-v1-6"
    )


def test_each_kind_sends_its_own_body() -> None:
    multi = body_of(kind="multi-image2video", prompt="p", image_list=["https://a/1.png", {"image": "https://a/2.png"}])
    assert multi["image_list"] == [{"image": "https://a/1.png"}, {"image": "https://a/2.png"}]
    omni = body_of(
        kind="omni-video",
        prompt="p",
        model="kling-video-o1",
        duration="12",
        image_list=[{"image": "s3://inputs/a.png", "type": "first_frame"}],
        watermark=True,
        kling_options={"element_list": [{"element_id": 7}]},
    )
    assert omni["image_list"] == [{"image_url": "s3://inputs/a.png", "type": "first_frame"}]
    assert omni["watermark_info"] == {"enabled": True}
    assert omni["element_list"] == [{"element_id": 7}]
    request = JobRequest.model_validate({"kind": "image2video", "image": "s3://inputs/a.png", "mode": "pro"})
    sent = create_body(
        request,
        default_model="kling-v2-6",
        callback_url="c",
        external_task_id="j",
        images={"image": "https://signed/a"},
    )
    assert sent["image"] == "https://signed/a"
    assert request.image_slots() == [("image", "s3://inputs/a.png")]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"kind": "multi-image2video", "prompt": "p", "image_list": ["https://a/b.png"] * 5}, "1 to 4 images"),
        ({"kind": "multi-image2video", "prompt": "p"}, "1 to 4 images"),
        ({"kind": "omni-video", "prompt": "p", "image_list": ["https://a/b.png"] * 8}, "image_list"),
        ({"kind": "omni-video"}, "prompt is required for omni-video"),
        (
            {"kind": "omni-video", "prompt": "p", "image_list": [{"image": "https://a", "type": "first_frame"}] * 2},
            "at most one first_frame",
        ),
        (
            {"kind": "multi-image2video", "prompt": "p", "image_list": [{"image": "https://a", "type": "end_frame"}]},
            "omni-video only",
        ),
        ({"prompt": "p", "image_list": ["https://a/b.png"]}, "image_list does not apply to text2video"),
        ({"prompt": "p", "kling_options": {"external_task_id": "x"}}, "the pipeline sets them"),
        ({"prompt": "p", "kling_options": {"model_name": "kling-v3"}}, "model_name -> 'model'"),
        ({"prompt": "p", "kling_options": {"blob": "x" * 17_000}}, "kling_options is"),
        ({"kind": "image2video", "image": "ftp://a/b.png"}, "rule image-form"),
        ({"kind": "image2video", "image": "s3://Bad_Bucket/k"}, "rule image-form"),
    ],
)
def test_the_rules_of_each_kind_hold_for_every_model(fields: dict[str, Any], says: str) -> None:
    assert says in refusal(**fields)


def test_omni_video_without_a_prompt_is_taken_with_multi_shot_options() -> None:
    body = body_of(
        kind="omni-video",
        kling_options={"multi_shot": True, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "a"}]},
    )
    assert body["multi_shot"] is True and "prompt" not in body


def test_the_readme_job_message_table_lists_every_field_and_kind_with_its_models() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Job messages") :]
    table = table[: table.index("\n\n", table.index("| field or kind |"))]
    for name in JobRequest.model_fields:
        assert f"`{name}`" in table, f"the README's job message table does not list {name}"
    for kind in KINDS:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{kind}`"))
        for model in capabilities.models_for(kind):
            assert f"`{model}`" in row, f"the README's row for {kind} does not name {model}"
    for feature, field in (("sound", "`sound`"), ("camera_control", "`camera_control`")):
        row = next(line for line in table.splitlines() if line.startswith(f"| {field}"))
        for model in capabilities.models_for(feature):
            assert f"`{model}`" in row, f"the README's row for {field} does not name {model}"
