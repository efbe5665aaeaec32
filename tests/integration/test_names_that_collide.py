"""Names the pipeline derives from a job id (a chain step's Kling external_task_id, a later download
attempt's execution) against job ids shaped like them: `v-a2` is a valid job id, and so is `shot-s2`.

A derived name is never a job id (job_ids.internal_name), and what is found under a name is taken as
the job's only when it names the job: an execution's input, a task's external id and parent video.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kling_pipeline.adapters.download_workflow import DownloadWorkflow, execution_name
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.requests import JobRequest
from tests.support.scenarios import Completion, as_callback_body, finish, job_in, kling_task, submitted

ROLE = "arn:aws:iam::123456789012:role/fn"


def execution_input(completion: Completion, name: str, *, state_machine_arn: str | None = None) -> dict[str, Any]:
    machine = state_machine_arn or completion.state_machine_arn
    arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
    return dict(json.loads(completion.sfn.describe_execution(executionArn=arn)["input"]))


def first_download_fails(completion: Completion, job_id: str) -> None:
    """The job's task succeeds, its callback comes, and its first download workflow fails (its function
    cannot read the table); the function works again afterwards."""
    job = submitted(completion, job_id)
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME="no-such-table")
    assert completion.callback(job_id, as_callback_body(task))["statusCode"] == 200
    assert completion.wait_for_execution(job_id)["status"] == "FAILED"
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME=completion.pipeline.table_name)


def poll_until_ended(completion: Completion, job_id: str, timeout_s: float = 90.0) -> None:
    poller = completion.poller()
    deadline = time.monotonic() + timeout_s
    while not job_in(completion.pipeline, job_id, JobState.COMPLETED, JobState.FAILED):
        assert time.monotonic() < deadline, f"{job_id} not settled by the poller"
        completion.poll(poller)
        time.sleep(0.3)


def test_other_jobs_downloads_are_never_counted_as_a_jobs_attempts(completion: Completion) -> None:
    # Given jobs v-a2 and v-a3, whose downloads have run
    for job_id in ("v-a2", "v-a3"):
        assert finish(completion, job_id)[0].state is JobState.COMPLETED
    # And job v, whose first download failed
    first_download_fails(completion, "v")
    # When the poller comes by
    poll_until_ended(completion, "v")
    # Then v is not failed after one real attempt: its own second attempt stored its video
    job = completion.pipeline.store.get("v")
    assert job.state is JobState.COMPLETED, job.error_message
    second = execution_name("v", 2)
    assert completion.wait_for_execution(second)["status"] == "SUCCEEDED"
    assert execution_input(completion, second)["job_id"] == "v"


def test_a_jobs_first_download_never_finds_another_jobs_attempt_under_its_name(completion: Completion) -> None:
    # Given job v, whose first download failed and whose second attempt (started by the poller) stored it
    first_download_fails(completion, "v")
    poll_until_ended(completion, "v")
    assert completion.pipeline.store.get("v").state is JobState.COMPLETED
    # When job v-a2 finishes
    done, _ = finish(completion, "v-a2")
    # Then its first download was its own execution, under its own name
    assert done.state is JobState.COMPLETED
    assert execution_input(completion, "v-a2")["job_id"] == "v-a2"
    assert execution_input(completion, execution_name("v", 2))["job_id"] == "v"


def test_an_execution_of_another_job_under_a_jobs_name_is_not_taken_for_its_download(completion: Completion) -> None:
    # Given an execution named as job w-a2's first download but started for job w (as a name from before
    # the derived names were told apart by length would be), still running
    waits = completion.sfn.create_state_machine(
        name="download-waits",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 30, "End": True}}}),
        roleArn=ROLE,
    )["stateMachineArn"]
    completion.sfn.start_execution(
        stateMachineArn=waits, name="w-a2", input=json.dumps({"job_id": "w", "attempt": 2, "version": 7})
    )
    request = JobRequest.model_validate({"job_id": "w-a2", "prompt": "x"})
    job, _ = completion.pipeline.store.create("w-a2", request, by="test")
    workflow = DownloadWorkflow(waits, attempts=3, sfn=completion.sfn)
    # When job w-a2's download is started, and its latest attempt looked for
    started = workflow.start(job)
    latest = workflow.last_attempt(job)
    # Then w's execution is neither "already running" for it nor counted as its attempt: its own runs
    assert started
    assert latest is not None and latest.number == 2 and latest.working
    assert execution_input(completion, execution_name("w-a2", 2), state_machine_arn=waits)["job_id"] == "w-a2"


# -- a chain step's external id and a producer's job id ---------------------------------------------

CHAIN = {"model": "kling-v1-6", "extend": [{"prompt": "the cat walks off the mat"}]}
AT_KLING = (JobState.SUBMITTED, JobState.PROCESSING, JobState.DOWNLOADING, JobState.COMPLETED, JobState.FAILED)


def video_of(completion: Completion, job_id: str) -> str:
    """A finished single video's Kling video id (what a video-extend job extends)."""
    job = submitted(completion, job_id, model="kling-v1-6")  # only kling-v1.x videos extend
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    assert completion.callback(job_id, as_callback_body(task))["statusCode"] == 200
    assert completion.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    done = completion.pipeline.store.get(job_id)
    assert done.state is JobState.COMPLETED
    return str(done.kling_video_id)


def chain_at_step_two(completion: Completion, job_id: str) -> Job:
    """Chain `job_id`'s step 1 made, stored, and its step 2 sent to Kling."""
    pipeline = completion.pipeline
    job = submitted(completion, job_id, **CHAIN)
    task = kling_task(completion, "text2video", job.task_id, "succeed")
    assert completion.callback(job_id, as_callback_body(task))["statusCode"] == 200
    assert completion.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    pipeline.drain(
        pipeline.submit_handler(),
        lambda: (j := pipeline.store.find(job_id)) is not None and j.step == 2 and j.state in AT_KLING,
    )
    return pipeline.store.get(job_id)


def extension_sent(completion: Completion, job_id: str, video_id: str) -> Job:
    """A producer's own video-extend job, sent to Kling."""
    pipeline = completion.pipeline
    pipeline.send({"job_id": job_id, "kind": "video-extend", "video_id": video_id, "prompt": "further on"})
    pipeline.drain(pipeline.submit_handler(), lambda: job_in(pipeline, job_id, *AT_KLING))
    return pipeline.store.get(job_id)


def parent_of(completion: Completion, task_id: str | None) -> str | None:
    assert task_id is not None
    task = completion.pipeline.kling().get_task("video-extend", task_id)
    return (task.task_info.parent_video or {}).get("id")


def test_a_job_named_like_a_chains_step_gets_its_own_task(completion: Completion) -> None:
    # Given Kling refuses a reused external id, a finished video, and chain `shot` at its step 2
    completion.pipeline.sim.configure(refuse_reused_external_id=True)
    base = video_of(completion, "base")
    chain = chain_at_step_two(completion, "shot")
    # When a producer sends its own job `shot-s2`: an extension of the other video
    job = extension_sent(completion, "shot-s2", base)
    # Then it is a task of its own, extending its own video, not the chain's step
    assert job.state is not JobState.FAILED, job.error_message
    assert job.task_id != chain.task_id
    assert parent_of(completion, job.task_id) == base
    assert completion.pipeline.tasks_for("shot-s2") == 1


def test_a_chains_step_never_takes_the_task_of_a_job_named_like_it(completion: Completion) -> None:
    # Given Kling refuses a reused external id, and a producer's job `shot-s2` extending a finished video
    completion.pipeline.sim.configure(refuse_reused_external_id=True)
    base = video_of(completion, "base")
    job = extension_sent(completion, "shot-s2", base)
    assert job.state is not JobState.FAILED
    # When chain `shot` reaches its step 2
    chain = chain_at_step_two(completion, "shot")
    # Then the step is a task of its own, extending the chain's step 1 video, not the producer's
    assert chain.state is not JobState.FAILED, chain.error_message
    assert chain.task_id != job.task_id
    assert parent_of(completion, chain.task_id) == chain.steps[0]["video_id"]


def test_a_task_under_the_jobs_id_that_extends_another_video_is_never_adopted(completion: Completion) -> None:
    # Given Kling refuses a reused external id, two finished videos, and a task made outside the pipeline
    # under job `ext-x`'s id, extending the other video
    pipeline = completion.pipeline
    pipeline.sim.configure(refuse_reused_external_id=True)
    base, other = video_of(completion, "base"), video_of(completion, "other")
    foreign = pipeline.kling().create_task(
        "video-extend", {"video_id": other, "external_task_id": "ext-x", "prompt": "not the job's"}
    )
    # When job `ext-x`, an extension of the first video, is sent
    job = extension_sent(completion, "ext-x", base)
    # Then the stranger's task is not taken for the job's: Kling will not take the id, so the job fails
    # saying so (no video of another request is delivered as this one)
    assert job.task_id != foreign.task_id
    assert job.state is JobState.FAILED and job.error_code == "KLING_1201"
    assert foreign.task_id in (job.error_message or "") and "another task" in (job.error_message or "")
