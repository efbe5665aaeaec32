"""Extend chains' rules: which requests may be chains, each step's id, endpoint, body and object key,
and what a stored step means for the job (the next step, or the end)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kling_pipeline.adapters.download_workflow import execution_name
from kling_pipeline.extend_chain import NEXT_STEP_RESEND_S, after_stored, video_key
from kling_pipeline.kling_body import step_body
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.requests import JobRequest, describe_validation_error

STORED = {"s3_uri": "s3://b/k", "video_size": 10, "sha256": "ab" * 32, "video_url": None}


def chain_job(step: int = 1, steps: list[dict[str, Any]] | None = None, **extra: Any) -> Job:
    request = {
        "job_id": "c1",
        "prompt": "a boat",
        "model": "kling-v1-6",
        "extend": [{"prompt": "it sails", "cfg_scale": 0.3}, {"prompt": "it lands"}],
    }
    return Job.model_validate(
        {
            "job_id": "c1",
            "state": "DOWNLOADING",
            "version": 4,
            "kind": "text2video",
            "request": request,
            "created_at": "2026-11-23T00:00:00Z",
            "updated_at": "2026-11-23T00:00:00Z",
            "step": step,
            "steps": steps or [],
            "task_id": f"t{step}",
            "units_charged": "1",
            "kling_video_id": f"v{step}",
            "video_duration": "5.1",
        }
        | extra
    )


def refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate({"prompt": "a boat", **fields})
    return describe_validation_error(info.value)


def test_a_chain_on_a_model_whose_videos_kling_does_not_extend_is_refused_naming_the_fix() -> None:
    # When a chain asks kling-v2-6
    reason = refusal(model="kling-v2-6", extend=[{"prompt": "more"}])
    # Then the refusal names the field, the model and the models that can
    assert "extend" in reason and "kling-v2-6 cannot be extended" in reason and "kling-v1-6" in reason


def test_a_chain_that_could_pass_three_minutes_is_refused_with_the_most_steps_allowed() -> None:
    reason = refusal(model="kling-v1-6", duration="10", extend=[{"prompt": "more"}] * 35)
    assert "extend" in reason and "at most 34 steps" in reason
    assert JobRequest.model_validate({"prompt": "x", "model": "kling-v1-6", "duration": "10", "extend": [{}] * 34})


@pytest.mark.parametrize(
    ("extend", "named"),
    [([], "extend"), ([{"prompt": "x", "seconds": 5}], "extend.0.seconds"), ([{"cfg_scale": 2}], "extend.0.cfg_scale")],
)
def test_a_malformed_chain_names_the_field(extend: list[dict[str, Any]], named: str) -> None:
    assert named in refusal(model="kling-v1-6", extend=extend)


def test_each_step_has_its_own_external_id_endpoint_and_object() -> None:
    # Given a three-step chain at step 1, then at step 3
    first, third = chain_job(1), chain_job(3, steps=[{"step": 1}, {"step": 2}])
    # Then step 1 is the request's own task and steps after it are video-extend tasks of their own
    assert (first.total_steps, first.external_task_id, first.task_kind) == (3, "c1", "text2video")
    assert (third.external_task_id, third.task_kind, third.step_label) == (
        "c1-s3".ljust(65, "_"),
        "video-extend",
        "step 3 of 3: ",
    )
    assert (video_key(first), video_key(third)) == ("videos/c1/step-1.mp4", "videos/c1/step-3.mp4")
    assert (execution_name("c1", 1, 1), execution_name("c1", 1, 3), execution_name("c1", 2, 3)) == (
        "c1",
        "c1-s3-a1".ljust(65, "_"),
        "c1-s3-a2".ljust(65, "_"),
    )


def test_a_single_video_keeps_its_key_and_names() -> None:
    single = chain_job().model_copy(update={"request": {"job_id": "c1", "prompt": "a boat"}})
    assert (single.is_chain, single.external_task_id, video_key(single), single.step_label) == (
        False,
        "c1",
        "videos/c1.mp4",
        "",
    )


def test_a_steps_body_extends_the_previous_steps_video_with_its_own_prompt() -> None:
    job = chain_job(2, steps=[{"step": 1, "video_id": "v1"}])
    body = step_body(job, callback_url="https://cb")
    assert body == {
        "video_id": "v1",
        "callback_url": "https://cb",
        "external_task_id": "c1-s2".ljust(65, "_"),
        "prompt": "it sails",
        "cfg_scale": 0.3,
    }


def test_a_stored_step_that_is_not_the_last_queues_the_next_one_fresh() -> None:
    # When step 1's video is stored
    to_state, changes = after_stored(chain_job(1), STORED, now=1000)
    # Then the job goes back to QUEUED for step 2, its message awaited, with nothing of step 1's task left
    assert to_state is JobState.QUEUED
    assert (changes["step"], changes["awaiting_message"], changes["next_poll_at"]) == (
        2,
        True,
        1000 + NEXT_STEP_RESEND_S,
    )
    assert changes["task_id"] is None and changes["units_charged"] is None and changes["reserved_units"] is None
    (record,) = changes["steps"]
    assert record == {
        "step": 1,
        "task_id": "t1",
        "video_id": "v1",
        "duration": "5.1",
        "s3_uri": "s3://b/k",
        "size": 10,
        "sha256": "ab" * 32,
        "units_charged": "1",
    }


def test_the_last_stored_step_completes_the_job_with_every_steps_units() -> None:
    earlier = [{"step": 1, "units_charged": "1"}, {"step": 2, "units_charged": "0.5"}]
    to_state, changes = after_stored(chain_job(3, steps=earlier, units_charged="2"), STORED)
    assert to_state is JobState.COMPLETED
    assert [s["step"] for s in changes["steps"]] == [1, 2, 3]
    assert changes["units_charged"] == "3.5" and changes["s3_uri"] == "s3://b/k"


def test_a_single_video_completes_as_before() -> None:
    single = chain_job().model_copy(update={"request": {"job_id": "c1", "prompt": "a boat"}})
    assert after_stored(single, STORED) == (JobState.COMPLETED, STORED)


def test_total_units_counts_stored_steps_and_the_step_under_way_once() -> None:
    stored = [{"step": 1, "units_charged": "1"}]
    assert chain_job(2, steps=stored, units_charged=None).total_units == "1"
    assert chain_job(2, steps=stored, units_charged="0.5").total_units == "1.5"
    assert chain_job(1, steps=[], units_charged=None).total_units is None
