"""The stale-job poller on moto (Step Functions executing the real ASL) and the Kling simulator.

In these tests every callback is lost: the callback URL the submit function hands Kling points
nowhere. Whatever settles a job here, the poller did.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from kling_pipeline.adapters.download_workflow import execution_name
from kling_pipeline.lifecycle import JobState, Transition
from kling_pipeline.requests import JobRequest
from tests.support.scenarios import Completion, job_in, kling_task, submitted


def poll_until(completion: Completion, handler: Any, done: Any, timeout_s: float = 90.0) -> list[dict[str, Any]]:
    """Run the poller as its schedule would, until `done()`; returns each run's report."""
    reports = []
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not settled by the poller within {timeout_s}s: {reports[-3:]}"
        reports.append(completion.poll(handler))
        time.sleep(0.3)
    return reports


def gets_for(completion: Completion, task_id: str | None) -> int:
    assert task_id is not None
    return int(completion.pipeline.sim.stats()["gets_per_task"].get(task_id, 0))


def test_with_every_callback_lost_each_job_completes_through_the_poller(completion: Completion) -> None:
    # Given four jobs at Kling whose callbacks are all lost
    jobs = [submitted(completion, f"lost-{i}") for i in range(4)]
    poller = completion.poller()
    # When the poller runs on its schedule
    ids = [job.job_id for job in jobs]
    poll_until(completion, poller, lambda: all(job_in(completion.pipeline, j, JobState.COMPLETED) for j in ids))
    # Then every video is in S3, each settled by a poll, with at most three Kling query calls per job (four
    # jobs of one kind are asked about together: a page of their kind's task list answers them all)
    for job in jobs:
        done = completion.pipeline.store.get(job.job_id)
        assert done.s3_uri and any(h.by == "poller" and h.state is JobState.DOWNLOADING for h in done.history)
    assert 1 <= int(completion.pipeline.sim.stats()["kling_queries"]) <= 3 * len(jobs)
    assert completion.s3.list_objects_v2(Bucket=completion.bucket)["KeyCount"] == 4


def test_a_job_kling_never_finishes_times_out_and_its_caller_is_told(completion: Completion) -> None:
    # Given a caller waiting with a task token, and a task Kling takes far longer than the job timeout
    pipeline = completion.pipeline
    pipeline.sim.configure(generation_min_s=600_000, generation_max_s=600_000)
    waiting = pipeline.caller_waiting_for({"job_id": "too-slow", "prompt": "x"}, name="waiter")
    handler = pipeline.submit_handler()
    pipeline.drain(handler, lambda: job_in(pipeline, "too-slow", JobState.SUBMITTED, JobState.PROCESSING))
    # When the poller runs after the job timeout (here a second) has passed
    time.sleep(1.2)
    poller = completion.poller(JOB_TIMEOUT_MINUTES="0.01")
    poll_until(completion, poller, lambda: job_in(pipeline, "too-slow", JobState.TIMED_OUT))
    # Then the job is TIMED_OUT with a reason, announced, and the waiting caller is resumed with the failure
    job = pipeline.store.get("too-slow")
    assert job.error_code == "JOB_TIMED_OUT" and "minutes" in (job.error_message or "")
    assert [e["detail"]["state"] for e in completion.events() if e["detail-type"] == "Video Failed"] == ["TIMED_OUT"]
    deadline = time.monotonic() + 30
    while completion.sfn.describe_execution(executionArn=waiting)["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert completion.sfn.describe_execution(executionArn=waiting)["status"] == "FAILED"


def test_a_crashed_claim_is_reconciled_by_the_poller_without_a_second_create(completion: Completion) -> None:
    # Given a worker that died after Kling accepted its task, and a message that will not come back
    pipeline = completion.pipeline
    _, accepted = pipeline.crash_after_kling_accepted("crashed", "a red kite")
    # When the poller runs
    poll_until(completion, completion.poller(), lambda: job_in(pipeline, "crashed", JobState.COMPLETED))
    # Then it found Kling's task and the job completed, and Kling made one task
    job = pipeline.store.get("crashed")
    assert job.task_id == accepted.task_id
    assert pipeline.tasks_for("crashed") == 1
    assert any(h.by == "poller" and h.state is JobState.SUBMITTED for h in job.history)


def test_an_abandoned_claim_with_no_task_goes_back_to_the_submit_path(completion: Completion) -> None:
    # Given a claim abandoned before any create (its lease over, Kling holding no task for it)
    pipeline = completion.pipeline
    request = JobRequest.model_validate({"job_id": "never-sent", "prompt": "a slow boat"})
    job, _ = pipeline.store.create("never-sent", request, by="test")
    pipeline.store.transition(
        job,
        Transition(
            job.state,
            JobState.SUBMITTING,
            {"lease_owner": "dead", "lease_expires_at": 0, "claimed_at": 0},
            by="worker-that-dies",
        ),
    )
    # When the poller runs
    completion.poll(completion.poller())
    # Then the job is QUEUED again and its request back on the queue, and nothing was created at Kling
    assert pipeline.store.get("never-sent").state is JobState.QUEUED
    assert pipeline.tasks_for("never-sent") == 0
    # When the submit path takes the request it was sent
    pipeline.drain(
        pipeline.submit_handler(), lambda: job_in(pipeline, "never-sent", JobState.SUBMITTED, JobState.PROCESSING)
    )
    # Then exactly one task was made
    assert pipeline.tasks_for("never-sent") == 1


def test_a_failed_download_workflow_is_retried_as_attempt_two(completion: Completion) -> None:
    # Given a DOWNLOADING job whose workflow failed (its function could not read the table)
    job = submitted(completion, "retry-download")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    poller = completion.poller()
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME="no-such-table")
    poll_until(completion, poller, lambda: job_in(completion.pipeline, "retry-download", JobState.DOWNLOADING))
    assert completion.wait_for_execution("retry-download")["status"] == "FAILED"
    # When the function works again and the poller comes by
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME=completion.pipeline.table_name)
    poll_until(completion, poller, lambda: job_in(completion.pipeline, "retry-download", JobState.COMPLETED))
    # Then a second attempt stored the video
    assert completion.wait_for_execution(execution_name("retry-download", 2))["status"] == "SUCCEEDED"
    assert done.first_video is not None


def test_a_stored_video_whose_completion_was_not_recorded_is_completed_without_a_second_download(
    completion: Completion,
) -> None:
    # Given a job whose video was stored by a workflow that then could not write to the job
    resolver = completion.pipeline.resolver
    real_table = resolver.refs["JobsTable"]
    resolver.refs["JobsTable"] = "unreachable-table"
    definition = resolver.state_machine_definition("DownloadStateMachine")
    resolver.refs["JobsTable"] = real_table
    broken = completion.sfn.create_state_machine(
        name="download-broken", definition=definition, roleArn="arn:aws:iam::123456789012:role/fn"
    )["stateMachineArn"]
    job = submitted(completion, "stored-not-recorded")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    assert done.first_video is not None
    downloading = completion.pipeline.store.transition(
        job, Transition(job.state, JobState.DOWNLOADING, {"video_url": done.first_video.url}, by="test")
    )
    completion.sfn.start_execution(
        stateMachineArn=broken,
        name="stored-not-recorded",
        input=json.dumps({"job_id": "stored-not-recorded", "attempt": 1, "version": downloading.version}),
    )
    assert completion.wait_for_execution("stored-not-recorded", state_machine_arn=broken)["status"] == "FAILED"
    downloads = completion.pipeline.sim.stats()["cdn"]["downloads_completed"]
    # When the poller comes by (after the DOWNLOADING check interval)
    poller = completion.poller()
    poll_until(completion, poller, lambda: job_in(completion.pipeline, "stored-not-recorded", JobState.COMPLETED))
    # Then the job is completed from the object, with its size and checksum, and nothing was downloaded again
    repaired = completion.pipeline.store.get("stored-not-recorded")
    assert repaired.history[-1].by == "poller-repair"
    assert repaired.video_size == 300_000
    assert completion.pipeline.sim.stats()["cdn"]["downloads_completed"] == downloads
    assert [e["detail"]["state"] for e in completion.events()] == ["COMPLETED"]


def test_overlapping_poller_runs_never_poll_a_job_twice(completion: Completion) -> None:
    # Given six jobs whose tasks Kling has finished, all due for a poll
    jobs = [submitted(completion, f"overlap-{i}") for i in range(6)]
    for job in jobs:
        kling_task(completion, job.kind, job.task_id, "succeed")
    time.sleep(1.5)  # past the first poll (ExpectedStdSeconds is 1 s here)
    queries_before = int(completion.pipeline.sim.stats()["kling_queries"])  # the test's own GETs above
    # A claimed poll holds for the poll interval: a minute here, so that a run slowed down by a loaded
    # machine cannot outlast its own claims (the fixture's 1 s would let the other run poll again).
    schedule = json.loads(completion.pipeline.resolver.function_environment("PollerFunction")["POLL_SCHEDULE"])
    minute = json.dumps(schedule | {"poll_interval_s": 60})
    handlers = [completion.poller(POLL_SCHEDULE=minute), completion.poller(POLL_SCHEDULE=minute)]
    reports: list[dict[str, Any]] = []
    # When two runs start at once
    threads = [threading.Thread(target=lambda h=h: reports.append(completion.poll(h))) for h in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each job was asked about once, by one of them (a run asks about its jobs of one kind with one
    # page of the kind's task list: two query calls at most)
    assert sum(r["kling_gets"] for r in reports) == 6
    queries = int(completion.pipeline.sim.stats()["kling_queries"]) - queries_before
    assert queries == sum(r["kling_queries"] for r in reports) <= 2
    for job in jobs:
        polls = [h for h in completion.pipeline.store.get(job.job_id).history if h.by == "poller"]
        assert [h.state for h in polls] == [JobState.DOWNLOADING]


def test_a_run_short_of_time_leaves_what_it_claimed_to_the_next_run(completion: Completion) -> None:
    # Given three jobs Kling has finished, whose callbacks are lost
    jobs = [submitted(completion, f"short-{i}") for i in range(3)]
    for job in jobs:
        kling_task(completion, job.kind, job.task_id, "succeed")
    time.sleep(1.2)  # their first poll is due (ExpectedStdSeconds is 1 here)
    poller = completion.poller()
    # When a run has too little time left to ask Kling (12 s: the 10 s margin and an 8 s Kling timeout
    # do not fit)
    short = completion.poll(poller, timeout_s=12)
    # Then it asks Kling nothing and settles nothing: the jobs it claimed are left for the next run
    assert (short["left_for_next_run"], short["kling_gets"], short["resolved_by_poll"]) == (3, 0, 0), short
    assert all(job_in(completion.pipeline, job.job_id, JobState.SUBMITTED, JobState.PROCESSING) for job in jobs)
    # And the next runs, with time, settle every one of them
    ids = [job.job_id for job in jobs]
    poll_until(completion, poller, lambda: all(job_in(completion.pipeline, j, JobState.COMPLETED) for j in ids))
