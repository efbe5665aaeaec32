"""Kling's 1201 on a create: "already exists" (a task it runs and bills) or a parameter it refuses,
told apart by what can be checked, the task under the step's external id, never by the words.

Kling's wording of the refusal of a reused external_task_id is not documented; the simulator can word
it any way (`reused_external_id_message`).
"""

from __future__ import annotations

from typing import Any

from kling_local.sim import SimConfig
from kling_pipeline.lifecycle import JobState
from tests.support.scenarios import Pipeline, job_in

AT_KLING = (JobState.SUBMITTED, JobState.PROCESSING, JobState.DOWNLOADING)


def sent_back_once_with(pipeline: Pipeline, handler: Any, job_id: str, fault: dict[str, Any]) -> None:
    pipeline.sim.configure(**fault)
    pipeline.send({"job_id": job_id, "prompt": "x"})
    pipeline.drain(handler, lambda: pipeline.backpressured(job_id))
    pipeline.sim.configure(**{key: SimConfig.model_fields[key].default for key in fault})


def test_a_reworded_already_exists_never_fails_the_task_kling_runs(pipeline: Pipeline) -> None:
    # Given Kling refuses a reused external id in words that do not name it, and hides a new task from
    # queries for 7.5 s: longer than the 4 s reconcile grace (shorter than two)
    handler = pipeline.submit_handler(RECONCILE_GRACE_S="4")
    pipeline.sim.configure(
        refuse_reused_external_id=True, query_lag_s=7.5, reused_external_id_message="任务已存在 (duplicate task)"
    )
    # When the first create's answer is lost, and the create once the grace is over is refused so
    sent_back_once_with(pipeline, handler, "reworded", {"create_lost_answer_rate": 1.0})
    pipeline.drain(handler, lambda: job_in(pipeline, "reworded", *AT_KLING, JobState.FAILED))
    # Then the job holds the one task Kling runs (and bills), found under its external id
    job = pipeline.store.get("reworded")
    assert job.state in AT_KLING and job.task_id is not None, job.error_message
    assert pipeline.tasks_for("reworded") == 1
    assert pipeline.sim.stats()["create_attempts_by_external_task_id"]["reworded"] >= 2
    assert any("1201" in (h.note or "") for h in job.history)


def test_a_genuine_1201_naming_no_task_fails_with_klings_message_once_the_grace_is_over(pipeline: Pipeline) -> None:
    # Given a request Kling refuses with 1201 (an extension of a video it never made)
    handler = pipeline.submit_handler(RECONCILE_GRACE_S="2")
    pipeline.send({"job_id": "refused", "kind": "video-extend", "video_id": "no-such-video", "prompt": "x"})
    # When the job is queued until it ends
    pipeline.drain(handler, lambda: job_in(pipeline, "refused", JobState.FAILED, *AT_KLING), deadline_s=60)
    # Then it failed with Kling's message, after looking for a task that might be hidden, without looping
    job = pipeline.store.get("refused")
    assert job.state is JobState.FAILED and job.error_code == "KLING_1201"
    assert "no-such-video" in (job.error_message or "")
    assert pipeline.tasks_for("refused") == 0
    assert pipeline.sim.stats()["create_attempts_by_external_task_id"]["refused"] == 2
