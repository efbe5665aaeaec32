"""The completion path on moto (Step Functions executing the real ASL) + the Kling simulator."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from kling_pipeline.lifecycle import Job, JobState
from tests.support.scenarios import WATCHED_ATTRS, Completion, as_callback_body, finish, kling_task, submitted
from tests.support.sqs_driver import drive_queue


def test_happy_path_stores_the_video_and_announces_it(completion: Completion) -> None:
    # When job done-1 is submitted, its Kling task finishes and the callback arrives
    job, execution = finish(completion, "done-1")
    # Then the MP4 is in S3 with its checksum and one event announces it
    assert execution["status"] == "SUCCEEDED", execution
    assert job.state is JobState.COMPLETED
    assert job.s3_uri == f"s3://{completion.bucket}/videos/done-1.mp4"
    body = completion.s3.get_object(Bucket=completion.bucket, Key="videos/done-1.mp4")
    data = body["Body"].read()
    assert len(data) == 300_000
    assert data[4:8] == b"ftyp"
    assert body["ContentType"] == "video/mp4"
    assert body["Metadata"]["job-id"] == "done-1"
    assert job.sha256 == hashlib.sha256(data).hexdigest()
    assert job.video_size == 300_000
    # (its end announced, it has left the poller's index)
    assert not job.announce_pending
    assert not WATCHED_ATTRS & completion.pipeline.stored_attributes("done-1")
    assert [h.state for h in job.history][-3:] == [JobState.SUBMITTED, JobState.DOWNLOADING, JobState.COMPLETED]
    events = completion.events()
    assert [e["detail-type"] for e in events] == ["Video Completed"]
    assert events[0]["detail"]["s3_uri"] == job.s3_uri
    assert events[0]["detail"]["job_id"] == "done-1"


def test_duplicate_and_out_of_order_callbacks_change_nothing(completion: Completion) -> None:
    # Given a submitted job whose Kling task has finished
    job = submitted(completion, "dup-cb")
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    gets_before = completion.pipeline.sim.stats()["gets_per_task"].get(done.task_id, 0)
    # When the success callback arrives three times, then a late "processing" one
    for _ in range(3):
        assert completion.callback("dup-cb", as_callback_body(done))["statusCode"] == 200
    completion.wait_for_execution("dup-cb")
    late = as_callback_body(done) | {"task_status": "processing", "task_result": None}
    answer = completion.callback("dup-cb", late)
    # Then the late one is acknowledged too, and the job completed once, through one execution
    assert answer["statusCode"] == 200
    assert completion.pipeline.store.get("dup-cb").state is JobState.COMPLETED
    assert len(completion.executions()) == 1
    # at most one Kling GET for this job on the callback path, however many callbacks came
    gets_after = completion.pipeline.sim.stats()["gets_per_task"].get(done.task_id, 0)
    assert gets_after - gets_before == 1


def test_forged_token_is_refused_and_changes_nothing(completion: Completion) -> None:
    # Given a submitted job and a callback body claiming success
    job = submitted(completion, "forged")
    before = completion.pipeline.sim.stats()["calls_total"]
    fake = {
        "task_id": job.task_id,
        "task_status": "succeed",
        "task_result": {"videos": [{"id": "v", "url": "https://evil.example.com/x.mp4"}]},
    }
    # When the callback comes with a wrong, missing or empty token, it is refused
    for token in ("0" * 64, None, ""):
        response = completion.callback("forged", fake, token=token)
        assert response["statusCode"] == 401
    # Then nothing changed: no job write, no Kling call, no execution
    assert completion.pipeline.store.get("forged").version == job.version
    assert completion.pipeline.sim.stats()["calls_total"] == before  # no Kling call
    assert completion.executions() == []


def test_callback_for_an_unknown_job_is_404(completion: Completion) -> None:
    response = completion.callback("nobody-home", {"task_id": "1", "task_status": "succeed"})
    assert response["statusCode"] == 404
    assert completion.pipeline.store.find("nobody-home") is None


def test_malformed_and_oversized_bodies_are_refused(completion: Completion) -> None:
    # Given a submitted job
    job = submitted(completion, "garbled")
    # When garbled, incomplete or oversized bodies arrive, they are refused
    assert completion.callback("garbled", "{not json")["statusCode"] == 400
    assert completion.callback("garbled", {"task_status": "succeed"})["statusCode"] == 400
    assert completion.callback("garbled", "x" * 70_000)["statusCode"] == 413
    # Then the job is unchanged
    assert completion.pipeline.store.get("garbled").version == job.version


def test_a_lying_body_loses_to_the_get(completion: Completion) -> None:
    """The body claims success with a foreign URL while Kling is still working: nothing downloads."""
    # Given a submitted job whose Kling task is still generating
    completion.pipeline.sim.configure(generation_min_s=3000, generation_max_s=3000)
    job = submitted(completion, "liar")
    # When a callback claims success with a foreign URL
    lie = {
        "task_id": job.task_id,
        "task_status": "succeed",
        "task_result": {"videos": [{"id": "v", "url": "https://evil.example.com/x.mp4"}]},
    }
    assert completion.callback("liar", lie)["statusCode"] == 200
    # Then nothing downloads: the job keeps waiting and no execution starts
    after = completion.pipeline.store.get("liar")
    assert after.state in (JobState.SUBMITTED, JobState.PROCESSING)
    assert after.video_url is None
    assert completion.executions() == []


def test_a_lying_url_is_replaced_by_klings(completion: Completion) -> None:
    # Given a submitted job whose Kling task has finished
    job = submitted(completion, "liar-url")
    real = kling_task(completion, job.kind, job.task_id, "succeed")
    # When the callback names a foreign video URL
    lie = as_callback_body(real)
    lie["task_result"] = {"videos": [{"id": "v", "url": "https://evil.example.com/x.mp4"}]}
    assert completion.callback("liar-url", lie)["statusCode"] == 200
    completion.wait_for_execution("liar-url")
    # Then the job completes with Kling's own video
    done = completion.pipeline.store.get("liar-url")
    assert done.state is JobState.COMPLETED
    assert real.first_video is not None
    # The download used Kling's video (the lie's host is not even allowed), and the signed URL is gone.
    assert done.kling_video_id == real.first_video.id
    assert done.video_url is None


def failed_download(completion: Completion, job_id: str) -> Job:
    job, execution = finish(completion, job_id)
    assert execution["status"] == "FAILED"
    assert job.state is JobState.FAILED
    assert completion.s3.list_objects_v2(Bucket=completion.bucket).get("KeyCount", 0) == 0
    assert [e["detail-type"] for e in completion.events()] == ["Video Failed"]
    return job


def test_download_host_not_allowed(completion: Completion) -> None:
    # Given downloads allowed only from *.klingai.com
    completion.reconfigure("DownloadFunction", ALLOWED_DOWNLOAD_HOSTS="*.klingai.com")
    # When a job finishes with a video on the simulator's host
    job = failed_download(completion, "foreign-host")
    # Then the download is refused and the job says why
    assert job.error_code == "URL_NOT_ALLOWED"
    assert job.error_message and "https" in job.error_message


def test_redirect_to_a_foreign_host_is_refused(completion: Completion) -> None:
    # Given a CDN that redirects to a foreign host
    completion.pipeline.sim.configure(cdn_redirect_url="https://evil.example.com/video.mp4")
    # When a job finishes and its video is downloaded
    job = failed_download(completion, "redirected")
    # Then the redirect is refused and the job names the host
    assert job.error_code == "URL_NOT_ALLOWED"
    assert "evil.example.com" in (job.error_message or "")


def test_non_mp4_body_is_refused(completion: Completion) -> None:
    # Given a CDN that serves HTML instead of an MP4
    completion.pipeline.sim.configure(cdn_body="html")
    # Then the download of a finished job fails with NOT_MP4
    assert failed_download(completion, "not-video").error_code == "NOT_MP4"


def test_size_cap_is_enforced_while_streaming(completion: Completion) -> None:
    # Given a size cap below the 300 kB video
    completion.reconfigure("DownloadFunction", MAX_VIDEO_BYTES="100000")
    # When a job finishes and its video is downloaded
    job = failed_download(completion, "too-big")
    # Then the download is stopped with VIDEO_TOO_LARGE
    assert job.error_code == "VIDEO_TOO_LARGE"


def test_a_stream_cut_mid_body_is_retried_to_success(completion: Completion) -> None:
    # Given a finished Kling task and a CDN that cuts every download after 100 kB
    sim = completion.pipeline.sim
    job = submitted(completion, "flaky-cdn")
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    sim.configure(cdn_drop_rate=1.0, cdn_drop_after_bytes=100_000)
    # When the callback arrives and the first download is cut
    assert completion.callback("flaky-cdn", as_callback_body(task))["statusCode"] == 200
    deadline = time.monotonic() + 30
    while sim.stats()["cdn"].get("downloads_dropped", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then the cut is seen and nothing half-written is in S3
    assert sim.stats()["cdn"].get("downloads_dropped", 0) >= 1
    assert completion.s3.list_objects_v2(Bucket=completion.bucket).get("KeyCount", 0) == 0  # nothing half-written
    # When the CDN works again
    sim.configure(cdn_drop_rate=0.0)
    execution = completion.wait_for_execution("flaky-cdn")
    # Then a retry stores the video and the job completes
    assert execution["status"] == "SUCCEEDED"
    assert completion.pipeline.store.get("flaky-cdn").state is JobState.COMPLETED
    downloads = [name for name, _ in completion.invocations if name == "DownloadFunction"]
    assert len(downloads) >= 2


CALLER_ASL = {
    "StartAt": "MakeVideo",
    "States": {
        "MakeVideo": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "QueueUrl": "QUEUE_URL",
                "MessageBody": {"job_id.$": "$.job_id", "prompt.$": "$.prompt", "task_token.$": "$$.Task.Token"},
            },
            "End": True,
        }
    },
}


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_waiting_step_functions_caller_is_resumed(completion: Completion, outcome: str) -> None:
    # Given a state machine waiting for the job with a task token (and an HTML CDN for "failure")
    pipeline = completion.pipeline
    if outcome == "failure":
        pipeline.sim.configure(cdn_body="html")
    definition = json.dumps(CALLER_ASL).replace("QUEUE_URL", pipeline.queue_url)
    caller = completion.sfn.create_state_machine(
        name="caller", definition=definition, roleArn="arn:aws:iam::123456789012:role/fn"
    )["stateMachineArn"]
    completion.sfn.start_execution(
        stateMachineArn=caller, name="order-7", input=json.dumps({"job_id": "waited", "prompt": "a blue kite"})
    )
    # When the job is submitted, its Kling task finishes and the callback arrives
    handler = pipeline.submit_handler()
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: (j := pipeline.store.find("waited")) is not None and j.state is JobState.SUBMITTED,
    )
    job = pipeline.store.get("waited")
    assert job.request.get("task_token")
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    assert completion.callback("waited", as_callback_body(task))["statusCode"] == 200
    completion.wait_for_execution("waited")
    # Then the waiting caller is resumed with the job's outcome
    deadline = time.monotonic() + 30
    arn = caller.replace(":stateMachine:", ":execution:") + ":order-7"
    while (result := completion.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the caller was never resumed"
        time.sleep(0.1)
    if outcome == "success":
        assert result["status"] == "SUCCEEDED"
        output = json.loads(result["output"])
        assert output["s3_uri"] == f"s3://{completion.bucket}/videos/waited.mp4"
        assert output["state"] == "COMPLETED"
    else:
        assert result["status"] == "FAILED"
        assert result.get("error") == "NOT_MP4"


def test_the_sample_download_input_is_what_the_download_function_takes(completion: Completion) -> None:
    from kling_local.stack.worker import LambdaContext
    from tests.support.template import ROOT

    # Given the sample download input and its job, only SUBMITTED so far
    event = json.loads((ROOT / "events" / "download_input.json").read_text())
    submitted(completion, event["job_id"])
    # When the download function takes it
    result = completion.handlers["DownloadFunction"](event, LambdaContext.for_function("DownloadFunction"))
    # Then it skips the job, with nothing to download yet
    assert result == {"ok": True, "skipped": True, "state": "SUBMITTED"}  # not DOWNLOADING yet: nothing to do


def test_a_reconciled_task_that_already_finished_is_downloaded(completion: Completion) -> None:
    """Kling finished while we did not know the task id (its callbacks found no task id): the submit path's
    reconciliation must carry the job on to the download, not leave it SUBMITTED."""

    # Given a dead worker's job whose Kling task has since finished
    pipeline = completion.pipeline
    handler = pipeline.submit_handler()
    message, created = pipeline.crash_after_kling_accepted("found-done", "a lantern in fog")
    kling_task(completion, "text2video", created.task_id, "succeed")
    # When the message comes back and the queue is drained until the job is reconciled
    pipeline.send(message)
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: pipeline.store.get("found-done").state is not JobState.SUBMITTING,
    )
    # Then the job goes on to the download and completes with that same task
    execution = completion.wait_for_execution("found-done")
    assert execution["status"] == "SUCCEEDED"
    done = pipeline.store.get("found-done")
    assert done.state is JobState.COMPLETED
    assert done.task_id == created.task_id
    assert done.video_url is None  # the signed CDN URL does not outlive the job
    assert int(pipeline.sim.stats()["tasks_by_external_task_id"]["found-done"]) == 1


def test_a_task_kling_fails_is_announced_once_by_the_callback_that_saw_it(completion: Completion) -> None:
    # Given a job whose task Kling accepts, bills and then fails
    job = submitted(completion, "kling-fails", prompt="a cat [[fail]]")
    failed = as_callback_body(kling_task(completion, job.kind, job.task_id, "failed"))
    # When its failure callback arrives twice
    answers = [completion.callback("kling-fails", failed)["statusCode"] for _ in range(2)]
    # Then the job is FAILED with Kling's reason, announced once, and nothing was downloaded
    assert answers == [200, 200]
    ended = completion.pipeline.store.get("kling-fails")
    assert ended.state is JobState.FAILED and ended.error_code == "KLING_TASK_FAILED"
    events = completion.events()
    assert [(e["detail-type"], e["detail"]["job_id"], e["detail"]["state"]) for e in events] == [
        ("Video Failed", "kling-fails", "FAILED")
    ]
    assert events[0]["detail"]["error_message"] == ended.error_message
    assert completion.executions() == []


def test_a_create_kling_refuses_for_good_is_announced(completion: Completion) -> None:
    # When Kling refuses a job's create for its content (1301: no task, nothing billed)
    refused = submitted(completion, "kling-refuses", prompt="a cat [[reject]]")
    # Then the job is FAILED naming Kling's code, and its end is announced like any other
    assert refused.state is JobState.FAILED and refused.error_code == "KLING_1301"
    assert [(e["detail-type"], e["detail"]["job_id"]) for e in completion.events()] == [
        ("Video Failed", "kling-refuses")
    ]
