"""Names derived from a job id (a chain step's external_task_id, a later download attempt's execution)
are never a job id, never another job's derived name, and stay within Step Functions' 80 characters
and the characters CloudWatch Logs allows; a task found under the step's external id is the step's only
when it names it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kling_pipeline.adapters.download_workflow import execution_name
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job

LOGGABLE_EXECUTION_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")
SHAPED_IDS = ["v", "v-a2", "v-s1-a2", "v_", "v__", "v-s2", "v-s2-a1", "x" * 64, "x" * 60 + "-s2", "_" * 64]


def job(job_id: str = "j", *, step: int = 1, kind: str = "text2video", **fields: Any) -> Job:
    request: dict[str, Any] = {"job_id": job_id, "prompt": "p", "kind": kind}
    if kind == "video-extend":
        request["video_id"] = "own-video"
    return Job.model_validate(
        {
            "job_id": job_id,
            "state": "SUBMITTING",
            "version": 1,
            "kind": kind,
            "request": request,
            "created_at": "2026-11-23T00:00:00Z",
            "updated_at": "2026-11-23T00:00:00Z",
            "step": step,
            **fields,
        }
    )


def task(external_task_id: str | None, parent: str | None = None) -> KlingTask:
    info: dict[str, Any] = {"external_task_id": external_task_id}
    if parent:
        info["parent_video"] = {"id": parent, "url": "https://x", "duration": "5"}
    return KlingTask.model_validate({"task_id": "t", "task_status": "submitted", "task_info": info})


def test_no_derived_name_is_a_job_id_or_another_jobs_name() -> None:
    # Given job ids shaped like the names derived from other ones, up to the longest id
    executions: dict[str, tuple[str, int, int]] = {}
    externals: dict[str, tuple[str, int]] = {}
    for job_id in SHAPED_IDS:
        assert is_valid_job_id(job_id)
        for step in (1, 2, 35):
            external = job(job_id, step=step).external_task_id
            assert externals.setdefault(external, (job_id, step)) == (job_id, step)
            assert not is_valid_job_id(external) or (external, step) == (job_id, 1)
            for attempt in (1, 2, 5):
                name = execution_name(job_id, attempt, step)
                # Then every name fits Step Functions (80 characters, the loggable alphabet)
                assert LOGGABLE_EXECUTION_NAME.fullmatch(name), name
                # And names one attempt of one job's step only
                assert executions.setdefault(name, (job_id, attempt, step)) == (job_id, attempt, step)
                # And only a job's first download is named as a job id: its own
                assert not is_valid_job_id(name) or (name, attempt, step) == (job_id, 1, 1)
    assert len(externals) == len(SHAPED_IDS) * 3


def test_the_job_id_stays_readable_at_the_start_of_a_derived_name() -> None:
    assert execution_name("order-7", 2).startswith("order-7-s1-a2_")
    assert job("shot", step=2).external_task_id.startswith("shot-s2_")


@pytest.mark.parametrize(
    ("found", "owned"),
    [
        (task("j"), True),
        (task("j-s2"), False),  # another external id
        (task(None), False),  # no id echoed: not proof
        (task("j", parent="some-video"), False),  # a text2video job's task extends nothing: another kind
    ],
)
def test_a_first_steps_task_is_the_jobs_only_when_it_names_it(found: KlingTask, owned: bool) -> None:
    assert job().owns_task(found) is owned


def test_an_extension_is_the_jobs_only_when_it_extends_the_jobs_video() -> None:
    own = job("e", kind="video-extend")
    assert own.owns_task(task("e", parent="own-video"))
    assert not own.owns_task(task("e", parent="another-video"))
    step = job("c", step=2, steps=[{"step": 1, "video_id": "step-1-video"}])
    step_id = step.external_task_id
    assert step.owns_task(task(step_id, parent="step-1-video"))
    assert not step.owns_task(task(step_id, parent="a-strangers-video"))
    assert not step.owns_task(task("c-s2", parent="step-1-video"))  # the name a job `c-s2` has
