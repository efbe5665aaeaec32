"""Never give up on a video Kling has made (issue #21, items 5-7): a CDN that refuses a good link for a
moment, a Kling the poller cannot ask, a task reconciliation cannot prove on a busy account.

On moto (Step Functions executing the real ASL) and the Kling simulator over HTTP.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kling_local.aws_faults import AWS_FAULTS
from kling_pipeline.adapters import job_store as job_store_module
from kling_pipeline.adapters.download_workflow import execution_name
from kling_pipeline.errors import TransitionRejectedError
from kling_pipeline.job_ids import job_reference
from kling_pipeline.kling_body import create_body
from kling_pipeline.lifecycle import Job, JobState, Transition
from kling_pipeline.requests import JobRequest, stored_request
from tests.support.lambda_runtime import load_function_module
from tests.support.scenarios import (
    ACCESS_KEY,
    DEAD_API,
    Completion,
    as_callback_body,
    job_in,
    kling_task,
    submitted,
)

DAY_S = 86_400


# -- item 5: a CDN 4xx moments after `succeed` --------------------------------------------------------


def test_a_cdn_404_moments_after_succeed_is_retried_not_taken_for_an_expired_link(completion: Completion) -> None:
    # Given a CDN that answers 404 for a result in the first seconds after its task succeeds (an edge
    # still propagating)
    pipeline = completion.pipeline
    pipeline.sim.configure(cdn_not_ready_s=1.5, cdn_not_ready_status=404)
    job = submitted(completion, "edge-404")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    # When Kling's succeed callback arrives at once
    assert completion.callback("edge-404", as_callback_body(done))["statusCode"] == 200
    # Then the workflow retried the refused link and stored the video: nothing told the user to pay again
    assert completion.wait_for_execution(execution_name("edge-404"), timeout_s=90)["status"] == "SUCCEEDED"
    finished = pipeline.store.get("edge-404")
    assert finished.state is JobState.COMPLETED and finished.s3_uri, (finished.error_code, finished.error_message)
    assert pipeline.sim.stats()["cdn"].get("not_ready", 0) >= 1


def test_a_403_that_outlasts_the_workflows_retries_is_repaired_by_the_pollers_next_attempt(
    completion: Completion,
) -> None:
    # Given a CDN (a WAF) that refuses a finished task's result with 403 for longer than the workflow retries
    pipeline = completion.pipeline
    pipeline.sim.configure(cdn_not_ready_s=3600, cdn_not_ready_status=403)
    job = submitted(completion, "waf-403")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    assert completion.callback("waf-403", as_callback_body(done))["statusCode"] == 200
    # When the first attempt has ended without the video (its retries spent)
    assert completion.wait_for_execution(execution_name("waf-403"), timeout_s=120)["status"] != "RUNNING"
    # Then the job is still DOWNLOADING (an attempt that failed, not an expired link)
    assert pipeline.store.get("waf-403").state is JobState.DOWNLOADING
    # When the CDN serves it again and the poller comes by
    pipeline.sim.configure(cdn_not_ready_s=0)
    poller = completion.poller()
    deadline = time.monotonic() + 60
    while not job_in(pipeline, "waf-403", JobState.COMPLETED):
        assert time.monotonic() < deadline, pipeline.store.get("waf-403")
        completion.poll(poller)
        time.sleep(0.3)
    # Then its next attempt stored the video
    assert completion.wait_for_execution(execution_name("waf-403", 2))["status"] == "SUCCEEDED"


def test_a_refused_link_past_klings_thirty_days_is_expired(completion: Completion) -> None:
    # Given a DOWNLOADING job whose task finished 31 days ago, and a CDN that refuses its link
    pipeline = completion.pipeline
    job = submitted(completion, "old-link")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    video = done.first_video
    assert video is not None
    pipeline.sim.configure(cdn_not_ready_s=3600, cdn_not_ready_status=404)
    current = pipeline.store.get("old-link")
    downloading = pipeline.store.transition(
        current,
        Transition(
            current.state,
            JobState.DOWNLOADING,
            {"video_url": video.url, "kling_finished_at": int((time.time() - 31 * DAY_S) * 1000)},
            by="test",
        ),
    )
    # When the download step runs
    handler = load_function_module("download").lambda_handler
    from kling_local.stack.worker import LambdaContext

    answer = handler(
        {"job_id": "old-link", "attempt": 1, "version": downloading.version},
        LambdaContext.for_function("DownloadFunction"),
    )
    # Then the link is expired (the write fails the job with that reason)
    assert answer["ok"] is False
    assert answer["write"]["ExpressionAttributeValues"][":to"] == {"S": "FAILED"}
    assert "VIDEO_URL_EXPIRED" in str(answer["write"])


# -- item 6: a job Kling could not be asked about, and a `succeed` after the timeout -----------------


def poll_until(completion: Completion, handler: Any, done: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    reports = []
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not settled within {timeout_s}s: {reports[-3:]}"
        reports.append(completion.poll(handler))
        time.sleep(0.3)
    return reports


def test_a_job_kling_cannot_be_asked_about_is_not_timed_out_at_the_job_timeout(completion: Completion) -> None:
    # Given a job whose task Kling has finished (and billed), its callbacks lost, and then Kling unreachable
    # (every request 5001) from just after submission until past the job timeout (here 3 s)
    pipeline = completion.pipeline
    job = submitted(completion, "unreachable")
    kling_task(completion, job.kind, job.task_id, "succeed")
    outage_real_s = 4.5
    pipeline.sim.configure(outage_s=outage_real_s * pipeline.sim.config.speed)
    outage_ends = time.monotonic() + outage_real_s
    poller = completion.poller(JOB_TIMEOUT_MINUTES="0.05")
    # When the poller runs past the job timeout while Kling cannot be asked
    while time.monotonic() < outage_ends - 0.5:
        completion.poll(poller)
        time.sleep(0.3)
    assert time.time() - (pipeline.store.get("unreachable").submitted_at or 0) > 3
    # Then the job was not timed out: nothing showed its task unfinished
    assert job_in(pipeline, "unreachable", JobState.SUBMITTED, JobState.PROCESSING), pipeline.store.get(
        "unreachable"
    ).state
    # When Kling answers again
    while time.monotonic() < outage_ends + 0.2:
        time.sleep(0.1)
    poll_until(completion, poller, lambda: job_in(pipeline, "unreachable", JobState.COMPLETED))
    # Then the video it paid for is stored
    assert pipeline.store.get("unreachable").s3_uri


def timed_out_by_the_poller(completion: Completion, job_id: str, **env: str) -> Job:
    """A job whose task Kling is still running past the job timeout (here 0.6 s): TIMED_OUT by the poller
    on Kling's own answer. Kling finishes it a few seconds later."""
    pipeline = completion.pipeline
    speed = pipeline.sim.config.speed
    pipeline.sim.configure(generation_min_s=4 * speed, generation_max_s=4 * speed)
    job = submitted(completion, job_id)
    time.sleep(0.8)
    poller = completion.poller(JOB_TIMEOUT_MINUTES="0.01", **env)
    poll_until(completion, poller, lambda: job_in(pipeline, job_id, JobState.TIMED_OUT))
    assert job.task_id is not None
    return pipeline.store.get(job_id)


def test_a_succeed_callback_after_the_timeout_collects_the_paid_video(completion: Completion) -> None:
    # Given a job the poller timed out (announced Video Failed) while Kling was still running its task
    pipeline = completion.pipeline
    timed_out = timed_out_by_the_poller(completion, "late-callback")
    assert timed_out.error_code == "JOB_TIMED_OUT" and "keeps asking" in (timed_out.error_message or "")
    # When Kling finishes it and its succeed callback arrives
    done = kling_task(completion, timed_out.kind, timed_out.task_id, "succeed")
    answer = completion.callback("late-callback", as_callback_body(done))
    assert answer["statusCode"] == 200, answer
    # Then the job goes on to DOWNLOADING and COMPLETED with the video Kling charged for
    assert completion.wait_for_execution(execution_name("late-callback"))["status"] == "SUCCEEDED"
    job = pipeline.store.get("late-callback")
    assert job.state is JobState.COMPLETED and job.s3_uri
    assert job.error_code is None and job.error_message is None
    assert [h.state for h in job.history][-3:] == [JobState.TIMED_OUT, JobState.DOWNLOADING, JobState.COMPLETED]
    # and both ends were announced, the timeout first
    ends = [(e["detail-type"], e["detail"]["state"]) for e in completion.events()]
    assert ends == [("Video Failed", "TIMED_OUT"), ("Video Completed", "COMPLETED")]


def test_the_poller_still_looks_at_a_timed_out_job_and_collects_a_late_succeed(completion: Completion) -> None:
    # Given a job the poller timed out while Kling was still running its task, its callbacks lost
    pipeline = completion.pipeline
    timed_out = timed_out_by_the_poller(completion, "late-poll")
    raw = pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": "late-poll"}})["Item"]
    # Then it is still in the LiveJobs index, due again much later (rarely asked about)
    assert "live_shard" in raw and int(raw["next_poll_at"]["N"]) > time.time() + 60
    # When Kling finishes it, and that later look comes
    kling_task(completion, timed_out.kind, timed_out.task_id, "succeed")
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"job_id": {"S": "late-poll"}},
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )
    poll_until(completion, completion.poller(), lambda: job_in(pipeline, "late-poll", JobState.COMPLETED))
    # Then the poller carried it to DOWNLOADING and the video was stored; the finished job has its TTL again
    job = pipeline.store.get("late-poll")
    assert job.s3_uri and any(h.by == "poller" and h.state is JobState.DOWNLOADING for h in job.history)
    raw = pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": "late-poll"}})["Item"]
    assert "live_shard" not in raw and "expires_at" in raw


def test_a_timed_out_job_whose_task_kling_fails_is_no_longer_watched(completion: Completion) -> None:
    # Given a job the poller timed out, whose task Kling then fails
    pipeline = completion.pipeline
    pipeline.sim.configure(fail_rate=1.0)
    timed_out = timed_out_by_the_poller(completion, "late-fail")
    kling_task(completion, timed_out.kind, timed_out.task_id, "failed")
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"job_id": {"S": "late-fail"}},
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )
    # When the poller looks at it again
    completion.poll(completion.poller())
    # Then it stays TIMED_OUT and leaves the LiveJobs index
    raw = pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": "late-fail"}})["Item"]
    assert raw["state"]["S"] == "TIMED_OUT" and "live_shard" not in raw and "next_poll_at" not in raw


def test_a_timed_out_job_outlives_klings_thirty_days_whatever_the_finished_job_ttl(completion: Completion) -> None:
    # Given a deployment keeping finished jobs 1 day (FinishedJobTtlDays' minimum)
    # When the poller times a job out
    timed_out_by_the_poller(completion, "short-ttl", FINISHED_JOB_TTL_DAYS="1")
    # Then its record is kept past Kling's 30 days, for as long as it is watched for a late succeed
    expires_at = int(raw_record(completion, "short-ttl")["expires_at"]["N"])
    assert expires_at >= time.time() + 30 * 86400


# -- items 6 and 10 together: a TIMED_OUT end is announced once, and the job still watched -----------


def raw_record(completion: Completion, job_id: str) -> dict[str, Any]:
    pipeline = completion.pipeline
    return dict(pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": job_id}})["Item"])


def caller_resumes(completion: Completion, caller: str) -> list[str]:
    events = completion.sfn.get_execution_history(executionArn=caller)["events"]
    return [e["type"] for e in events if e["type"] in ("TaskSucceeded", "TaskFailed")]


def test_a_timed_out_end_whose_announcement_failed_is_announced_once_and_the_job_still_watched(
    completion: Completion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a caller waiting for a job Kling runs past the job timeout, and EventBridge refusing every
    # entry when the poller times the job out (and again at the poller's first announcing look)
    monkeypatch.setattr(job_store_module, "ANNOUNCE_GRACE_S", 1)
    AWS_FAULTS.clear()
    pipeline = completion.pipeline
    speed = pipeline.sim.config.speed
    pipeline.sim.configure(generation_min_s=7 * speed, generation_max_s=7 * speed)
    caller = pipeline.caller_waiting_for({"job_id": "late-told", "prompt": "a video for late-told"})
    pipeline.drain(
        pipeline.submit_handler(), lambda: job_in(pipeline, "late-told", JobState.SUBMITTED, JobState.PROCESSING)
    )
    time.sleep(0.8)
    refusals = AWS_FAULTS.inject("FailedEntries", "events", operation="PutEvents", times=8)
    try:
        poll_until(
            completion,
            completion.poller(JOB_TIMEOUT_MINUTES="0.01"),
            lambda: job_in(pipeline, "late-told", JobState.TIMED_OUT),
        )
        # Then the end stays marked, in the LiveJobs index, due soon (for its announcement), and the
        # watch cannot end while it is unannounced
        timed_out = pipeline.store.get("late-told")
        assert timed_out.announce_pending and refusals.fired == 4
        raw = raw_record(completion, "late-told")
        assert "live_shard" in raw and int(raw["next_poll_at"]["N"]) <= time.time() + 2
        assert raw["state_shard"]["S"].startswith("TIMED_OUT#")
        assert pipeline.store.stop_watching(timed_out) is False
        # When the poller's first look finds EventBridge still refusing
        time.sleep(1.2)
        report = completion.poll(completion.poller())
        assert refusals.fired == 8 and report["announced"] == 0, report
        # Then its announcement is due again soon (its grace), not at the rare look of a watched job (an hour)
        assert int(raw_record(completion, "late-told")["next_poll_at"]["N"]) <= time.time() + 31
    finally:
        AWS_FAULTS.clear()
    # When EventBridge takes events again and the poller comes by
    make_due_now(completion, "late-told")
    report = completion.poll(completion.poller())
    # Then the timeout is announced, its caller told, and the job still watched (rarely), its token gone
    assert report["announced"] == 1, report
    raw = raw_record(completion, "late-told")
    assert "announce_pending" not in raw and "task_token" not in raw
    assert "live_shard" in raw and int(raw["next_poll_at"]["N"]) > time.time() + 60
    assert raw["state"]["S"] == "TIMED_OUT"
    assert caller_resumes(completion, caller) == ["TaskFailed"]
    # When Kling finishes the task, and the job's next look comes
    kling_task(completion, timed_out.kind, timed_out.task_id, "succeed")
    make_due_now(completion, "late-told")
    poll_until(
        completion, completion.poller(), lambda: job_in(pipeline, "late-told", JobState.DOWNLOADING, JobState.COMPLETED)
    )
    # Then it left the terminal state live again: its shard in both indexes, no TTL, no mark of the old end
    moved = raw_record(completion, "late-told")
    if moved["state"]["S"] == "DOWNLOADING":
        assert moved["state_shard"]["S"].startswith("DOWNLOADING#") and "live_shard" in moved
        assert "expires_at" not in moved and "announce_pending" not in moved
    assert completion.wait_for_execution(execution_name("late-told"))["status"] == "SUCCEEDED"
    poll_until(completion, completion.poller(), lambda: announced_end(completion, "late-told"))
    # And each end was announced once, the timeout first; the caller was told once
    ends = [(e["detail-type"], e["detail"]["state"]) for e in completion.events()]
    assert ends == [("Video Failed", "TIMED_OUT"), ("Video Completed", "COMPLETED")]
    assert caller_resumes(completion, caller) == ["TaskFailed"]
    finished = raw_record(completion, "late-told")
    assert finished["state_shard"]["S"].startswith("COMPLETED#") and "live_shard" not in finished


def make_due_now(completion: Completion, job_id: str) -> None:
    pipeline = completion.pipeline
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )


def announced_end(completion: Completion, job_id: str) -> bool:
    job = completion.pipeline.store.get(job_id)
    return job.is_terminal and not job.announce_pending


# -- item 7: reconciliation on a busy account, and a job that cannot be proven -----------------------


def another_producers_tasks(completion: Completion, count: int) -> None:
    """Tasks someone else on the account made (Kling's list holds every task of the account)."""
    state = completion.pipeline.sim.state
    for i in range(count):
        state.create(ACCESS_KEY, "text2video", {"prompt": f"someone else's video {i}", "model_name": "kling-v1"})


def test_on_a_busy_account_an_unsettled_create_is_proven_absent_and_made_once(completion: Completion) -> None:
    # Given an account busy with another producer's tasks (over 5,000 of them, more than ten pages of
    # Kling's list), a look-up by external id Kling does not serve, and a create answered 5000 that made
    # no task
    pipeline = completion.pipeline
    pipeline.sim.configure(concurrency_limit=0, external_id_lookup="missing")
    another_producers_tasks(completion, 5_600)
    pipeline.sim.configure(force_create_errors=[5000])
    # When the job's message is handled until it settles
    pipeline.send({"job_id": "busy-account", "prompt": "a heron"})
    pipeline.drain(
        pipeline.submit_handler(),
        lambda: job_in(
            pipeline, "busy-account", JobState.SUBMITTED, JobState.PROCESSING, JobState.DOWNLOADING, JobState.COMPLETED
        ),
        deadline_s=90,
    )
    # Then the list scan reached back to the unsettled create (no page limit short of the invocation's
    # time), proved there was no task, and exactly one was made
    assert pipeline.tasks_for("busy-account") == 1


def unsettled_for_a_day(completion: Completion, job_id: str) -> Job:
    """A job whose create got no answer a day ago (so it may have made a task), claimed first long before."""
    pipeline = completion.pipeline
    request = JobRequest.model_validate({"job_id": job_id, "prompt": f"video for {job_id}"})
    job, _ = pipeline.store.create(job_id, request, by="test")
    long_ago = int(time.time()) - 3 * DAY_S
    claimed = pipeline.store.transition(
        job,
        Transition(
            job.state,
            JobState.SUBMITTING,
            {"lease_owner": "gone", "lease_expires_at": 0, "claimed_at": long_ago, "first_claimed_at": long_ago},
            by="test",
        ),
    )
    return pipeline.store.transition(
        claimed,
        Transition(
            claimed.state,
            JobState.QUEUED,
            {"needs_reconcile": True, "unsettled_since": int(time.time()) - DAY_S - 120},
            by="test",
            remove=("lease_owner", "lease_expires_at"),
        ),
    )


def test_a_job_that_cannot_be_proven_within_a_day_fails_with_what_to_check_and_an_operator_settles_it(
    completion: Completion,
) -> None:
    # Given a job whose create went unanswered over a day ago, and Kling unreachable for its reconciliation
    pipeline = completion.pipeline
    unsettled_for_a_day(completion, "never-proven")
    pipeline.sim.configure(outage_s=3_600 * pipeline.sim.config.speed)
    # When the submit path takes its message
    pipeline.send({"job_id": "never-proven", "prompt": "video for never-proven"})
    pipeline.drain(pipeline.submit_handler(), lambda: job_in(pipeline, "never-proven", JobState.FAILED), deadline_s=60)
    # Then it ends FAILED, saying what is known and how to check and settle it, and it is announced
    failed = pipeline.store.get("never-proven")
    assert failed.error_code == "KLING_UNSETTLED"
    assert "external_task_id never-proven" in (failed.error_message or "")
    assert "kling-pipeline settle never-proven" in (failed.error_message or "")
    assert [e["detail"]["state"] for e in completion.events() if e["detail-type"] == "Video Failed"] == ["FAILED"]
    assert pipeline.tasks_for("never-proven") == 0
    # When Kling is back and an operator, having found no such task in Kling's console, settles it
    pipeline.sim.configure(outage_s=0)
    assert settle_cli(pipeline, "never-proven", "--no-task") == 0
    # Then it is created, once, by the submit path
    pipeline.drain(
        pipeline.submit_handler(), lambda: job_in(pipeline, "never-proven", JobState.SUBMITTED, JobState.PROCESSING)
    )
    assert pipeline.tasks_for("never-proven") == 1


def test_an_operator_records_the_task_of_an_unsettled_job_and_its_video_is_collected(completion: Completion) -> None:
    # Given a job FAILED with KLING_UNSETTLED whose task Kling did make (seen in Kling's console)
    pipeline = completion.pipeline
    job = unsettled_for_a_day(completion, "made-after-all")
    pipeline.sim.configure(outage_s=3_600 * pipeline.sim.config.speed)
    pipeline.send({"job_id": "made-after-all", "prompt": "video for made-after-all"})
    pipeline.drain(
        pipeline.submit_handler(), lambda: job_in(pipeline, "made-after-all", JobState.FAILED), deadline_s=60
    )
    pipeline.sim.configure(outage_s=0)
    body = create_body(
        stored_request(job), default_model="kling-v1", callback_url=DEAD_API, external_task_id=job.job_id
    )
    made = pipeline.kling().create_task("text2video", body)
    # When the operator records it
    assert settle_cli(pipeline, "made-after-all", "--task-id", made.task_id) == 0
    # Then the poller collects its video, and no second task was made
    poll_until(completion, completion.poller(), lambda: job_in(pipeline, "made-after-all", JobState.COMPLETED))
    assert pipeline.store.get("made-after-all").task_id == made.task_id
    assert pipeline.tasks_for("made-after-all") == 1


def test_a_settled_job_is_live_again_and_queued_by_reference(completion: Completion) -> None:
    # Given a job FAILED with KLING_UNSETTLED whose end EventBridge refused to take (still marked)
    pipeline = completion.pipeline
    unsettled_for_a_day(completion, "settled-live")
    pipeline.sim.configure(outage_s=3_600 * pipeline.sim.config.speed)
    AWS_FAULTS.clear()
    AWS_FAULTS.inject("FailedEntries", "events", operation="PutEvents", times=4)
    try:
        pipeline.send({"job_id": "settled-live", "prompt": "video for settled-live"})
        pipeline.drain(
            pipeline.submit_handler(), lambda: job_in(pipeline, "settled-live", JobState.FAILED), deadline_s=60
        )
    finally:
        AWS_FAULTS.clear()
    assert pipeline.store.get("settled-live").announce_pending
    # When an operator settles it: Kling made no task
    pipeline.sim.configure(outage_s=0)
    assert settle_cli(pipeline, "settled-live", "--no-task") == 0
    # Then it is live again: QUEUED in its state's shard, back in LiveJobs, no TTL, the old end's mark gone,
    # awaiting the message that names it (the poller sends one if this one is lost)
    raw = raw_record(completion, "settled-live")
    assert raw["state"]["S"] == "QUEUED" and raw["state_shard"]["S"].startswith("QUEUED#")
    assert "live_shard" in raw and "next_poll_at" in raw
    assert "expires_at" not in raw and "announce_pending" not in raw and "error_code" not in raw
    assert raw["awaiting_message"]["BOOL"] is True
    (message,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"]) == job_reference("settled-live")


def test_settle_refuses_a_job_that_is_not_unsettled(completion: Completion) -> None:
    # Given a job that failed for another reason
    pipeline = completion.pipeline
    request = JobRequest.model_validate({"job_id": "plain-failure", "prompt": "x"})
    job, _ = pipeline.store.create("plain-failure", request, by="test")
    failed = pipeline.store.transition(
        job,
        Transition(job.state, JobState.FAILED, {"error_code": "KLING_TASK_FAILED", "error_message": "no"}, by="test"),
    )
    # When an operator tries to settle it, the CLI refuses, and even a direct write is refused by the store
    assert settle_cli(pipeline, "plain-failure", "--no-task") == 2
    with pytest.raises(TransitionRejectedError):
        pipeline.store.transition(failed, Transition(failed.state, JobState.QUEUED, {"next_poll_at": 1}, by="test"))
    assert pipeline.store.get("plain-failure").state is JobState.FAILED


def settle_cli(pipeline: Any, job_id: str, *flags: str) -> int:
    from kling_local.cli import main

    where = ["--queue-url", pipeline.queue_url, "--table", pipeline.table_name, "--dlq-url", pipeline.dlq_url]
    return main(["settle", job_id, *flags, *where])
