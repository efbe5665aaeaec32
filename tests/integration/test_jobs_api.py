"""The jobs API on moto (resources from template.yaml) + the Kling simulator: ApiFunction's real handler
submits through JobsQueue, reads, queries, lists and cancels; the submit function takes what it queued."""

from __future__ import annotations

import json
import time

import pytest

from kling_local.stack.worker import LambdaContext
from kling_pipeline.lifecycle import JobState, Transition
from tests.support.jobs_api import JobsApi, moved
from tests.support.scenarios import WATCHED_ATTRS, Completion, creates_for, job_in
from tests.support.sqs_driver import drive_queue
from tests.support.template import ROOT


def test_a_job_is_queued_once_and_its_id_is_its_idempotency_key(jobs_api: JobsApi) -> None:
    # When a job is submitted
    first = jobs_api.call("POST", "/jobs", {"job_id": "idem-1", "prompt": "a red fox in snow"})
    # Then it is accepted, recorded QUEUED and its message is on JobsQueue
    assert first.status == 202
    assert first.body["outcome"] == "accepted" and first.body["state"] == "QUEUED"
    assert first.body["url"] == "https://jobs.example.test/v1/jobs/idem-1" == first.headers["Location"]
    assert [m["job_id"] for m in jobs_api.queued()] == ["idem-1"]
    # When the same request is sent again
    again = jobs_api.call("POST", "/jobs", {"job_id": "idem-1", "prompt": "a red fox in snow"})
    # Then the answer is the existing job, whose message (not yet claimed) is sent again: a harmless copy
    assert again.status == 200 and again.body["outcome"] == "existing"
    assert [m["job_id"] for m in jobs_api.queued()] == ["idem-1", "idem-1"]
    # When the same id comes with a different request
    other = jobs_api.call("POST", "/jobs", {"job_id": "idem-1", "prompt": "a blue fox"})
    # Then it is refused, naming the field, and nothing is queued
    assert other.status == 409
    assert other.error["code"] == "JOB_ID_REUSED" and other.error["field"] == "job_id"
    assert len(jobs_api.queued()) == 2


def test_a_job_jobs_queue_does_not_take_is_discarded_and_asked_for_again(jobs_api: JobsApi) -> None:
    # Given a JobsQueue that refuses every send (gone: SQS answers QueueDoesNotExist)
    jobs_api.pipeline.sqs.delete_queue(QueueUrl=jobs_api.pipeline.queue_url)
    # When a job is submitted
    answer = jobs_api.call("POST", "/jobs", {"job_id": "no-queue-1", "prompt": "a red fox in snow"})
    # Then the queue adapter's QueueUnavailableError is a 503 asking for the same request again,
    # and the job's record is discarded (a retry makes it afresh)
    assert answer.status == 503 and answer.error["code"] == "QUEUE_UNAVAILABLE"
    assert jobs_api.pipeline.store.find("no-queue-1") is None


def test_the_submit_path_takes_what_the_api_queued(jobs_api: JobsApi) -> None:
    # Given a job submitted over HTTP without a job id (the API names it)
    answer = jobs_api.call("POST", "/jobs", {"prompt": "a lighthouse at dusk", "metadata": {"order": 7}})
    job_id = answer.body["job_id"]
    # When the submit function drains the queue
    pipeline = jobs_api.pipeline
    drive_queue(
        pipeline.submit_handler(),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, job_id, JobState.SUBMITTED),
    )
    # Then exactly one Kling task was made for it, and GET shows the job's life
    assert creates_for(pipeline, job_id) == 1
    view = jobs_api.call("GET", f"/jobs/{job_id}")
    assert view.status == 200
    assert [h["state"] for h in view.body["history"]] == ["QUEUED", "SUBMITTING", "SUBMITTED"]
    assert view.body["history"][0]["by"] == "api"
    assert view.body["request"]["metadata"] == {"order": 7}


def test_a_batch_is_answered_per_job(jobs_api: JobsApi) -> None:
    # Given one job already submitted
    jobs_api.call("POST", "/jobs", {"job_id": "b-old", "prompt": "old"})
    # When a batch repeats it, reuses another id for something else, and adds two new jobs
    jobs_api.call("POST", "/jobs", {"job_id": "b-taken", "prompt": "first use"})
    batch = [
        {"job_id": "b-old", "prompt": "old"},
        {"job_id": "b-taken", "prompt": "second use"},
        {"job_id": "b-new-1", "prompt": "new one"},
        {"job_id": "b-new-2", "prompt": "new two"},
    ]
    answer = jobs_api.call("POST", "/jobs", {"jobs": batch})
    # Then the new jobs are queued and the others answered for, in order
    assert answer.status == 202
    assert [(j["job_id"], j["outcome"]) for j in answer.body["jobs"]] == [
        ("b-old", "existing"),
        ("b-taken", "conflict"),
        ("b-new-1", "accepted"),
        ("b-new-2", "accepted"),
    ]
    assert answer.body["jobs"][1]["error"]["code"] == "JOB_ID_REUSED"
    # (b-old, not yet claimed, has its message sent again: a harmless copy)
    assert sorted(m["job_id"] for m in jobs_api.queued()) == ["b-new-1", "b-new-2", "b-old", "b-old", "b-taken"]
    # When the very same batch is sent again, nothing new is accepted (only copies of unclaimed messages)
    assert jobs_api.call("POST", "/jobs", {"jobs": batch}).status == 200
    assert {m["job_id"] for m in jobs_api.queued()} == {"b-new-1", "b-new-2", "b-old", "b-taken"}


def test_a_batch_with_an_invalid_job_queues_nothing(jobs_api: JobsApi) -> None:
    # When a batch holds a valid job, a number DynamoDB cannot store, a repeated id and a private webhook
    batch = [
        {"job_id": "ok-1", "prompt": "fine"},
        {"job_id": "bad-num", "prompt": "x", "metadata": {"n": 12345678901234567890123456789012345678901}},
        {"job_id": "ok-1", "prompt": "fine again"},
        {"job_id": "bad-hook", "prompt": "x", "webhook_url": "http://10.0.0.1/hook"},
    ]
    answer = jobs_api.call("POST", "/jobs", {"jobs": batch})
    # Then the whole batch is refused with a reason per bad job, and nothing is recorded or queued
    assert answer.status == 400
    details = answer.error["details"]
    assert [(d["index"], d["field"]) for d in details] == [
        (1, "jobs[1].request"),
        (2, "jobs[2].job_id"),
        (3, "jobs[3].webhook_url"),
    ]
    assert "38 significant digits" in details[0]["message"]
    assert jobs_api.queued() == []
    assert jobs_api.pipeline.store.find("ok-1") is None


def test_a_batch_of_a_hundred_is_accepted_and_one_more_is_refused(jobs_api: JobsApi) -> None:
    jobs = [{"job_id": f"many-{i}", "prompt": f"shot {i}"} for i in range(101)]
    assert jobs_api.call("POST", "/jobs", {"jobs": jobs}).error["field"] == "jobs"
    answer = jobs_api.call("POST", "/jobs", {"jobs": jobs[:100]})
    assert answer.status == 202
    assert {j["outcome"] for j in answer.body["jobs"]} == {"accepted"}
    assert len(jobs_api.pipeline.store.get_many([j["job_id"] for j in jobs])) == 100


def test_cancel_before_submission_ends_the_job_and_its_message_is_dropped(jobs_api: JobsApi) -> None:
    # Given a job queued through the API, its message not yet taken
    jobs_api.call("POST", "/jobs", {"job_id": "cancel-early", "prompt": "never made"})
    # When it is cancelled
    answer = jobs_api.call("POST", "/jobs/cancel-early/cancel")
    # Then it is CANCELLED (terminal, with a TTL), its end is announced and it is out of the live index
    assert answer.status == 200 and answer.body["state"] == "CANCELLED"
    job = jobs_api.job("cancel-early")
    assert job.state is JobState.CANCELLED and job.error_code == "CANCELLED"
    extra = job.model_extra or {}
    assert extra["expires_at"] > time.time()
    assert not job.announce_pending
    assert not WATCHED_ATTRS & jobs_api.pipeline.stored_attributes("cancel-early")
    (event,) = jobs_api.events()
    assert event["detail-type"] == "Video Failed" and event["detail"]["state"] == "CANCELLED"
    # When the submit function then takes its message
    pipeline = jobs_api.pipeline
    drive_queue(pipeline.submit_handler(), pipeline.sqs, pipeline.queue_url, until=lambda: jobs_api.queued() == [])
    # Then the message is dropped: no Kling task, the job still CANCELLED
    assert creates_for(pipeline, "cancel-early") == 0
    assert jobs_api.job("cancel-early").version == job.version
    # And cancelling again is the same answer
    assert jobs_api.call("POST", "/jobs/cancel-early/cancel").body["state"] == "CANCELLED"


def test_cancel_after_submission_is_refused_with_what_it_will_cost(jobs_api: JobsApi) -> None:
    # Given a job Kling has accepted
    jobs_api.call("POST", "/jobs", {"job_id": "cancel-late", "prompt": "too late", "mode": "pro", "duration": "10"})
    pipeline = jobs_api.pipeline
    drive_queue(
        pipeline.submit_handler(),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "cancel-late", JobState.SUBMITTED),
    )
    # When it is cancelled
    answer = jobs_api.call("POST", "/jobs/cancel-late/cancel")
    # Then the API refuses: Kling has no cancel, and the task is billed
    assert answer.status == 409
    assert answer.error["code"] == "KLING_CANNOT_CANCEL"
    assert "no cancel" in answer.error["message"] and "pro 10 s" in answer.error["message"]
    assert jobs_api.job("cancel-late").state is JobState.SUBMITTED
    assert jobs_api.events() == []


@pytest.mark.parametrize("stage", ["submitting", "unsettled"])
def test_a_job_that_may_have_reached_kling_cannot_be_cancelled(jobs_api: JobsApi, stage: str) -> None:
    # Given a job being sent to Kling, or back in the queue after a create whose answer proved nothing
    jobs_api.call("POST", "/jobs", {"job_id": f"maybe-{stage}", "prompt": "maybe made"})
    job = moved(jobs_api.pipeline, f"maybe-{stage}", JobState.SUBMITTING)
    if stage == "unsettled":
        job = jobs_api.pipeline.store.transition(
            job,
            Transition(
                job.state, JobState.QUEUED, {"needs_reconcile": True, "unsettled_since": int(time.time())}, by="test"
            ),
        )
    # When it is cancelled
    answer = jobs_api.call("POST", f"/jobs/maybe-{stage}/cancel")
    # Then it is refused and the job is untouched
    assert answer.status == 409 and answer.error["code"] == "KLING_CANNOT_CANCEL"
    assert jobs_api.job(f"maybe-{stage}").version == job.version


def test_a_finished_or_unknown_job_cannot_be_cancelled(jobs_api: JobsApi) -> None:
    assert jobs_api.call("POST", "/jobs/nobody/cancel").status == 404
    jobs_api.call("POST", "/jobs", {"job_id": "done-already", "prompt": "x"})
    moved(jobs_api.pipeline, "done-already", JobState.FAILED, error_code="X", error_message="y")
    answer = jobs_api.call("POST", "/jobs/done-already/cancel")
    assert answer.status == 409 and answer.error["code"] == "JOB_ENDED"


WAITING_CALLER = {
    "StartAt": "HandOver",
    "States": {
        # Any .waitForTaskToken task hands out a token; the caller then POSTs it with the job (what an
        # apigateway:invoke.waitForTaskToken task's RequestBody does with "task_token.$": "$$.Task.Token").
        "HandOver": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": "TOKENS_URL", "MessageBody": {"task_token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}


def test_a_caller_waiting_with_a_task_token_is_told_of_the_cancel(jobs_api: JobsApi) -> None:
    # Given a state machine waiting with a task token, and a job posted with that token
    import boto3

    pipeline = jobs_api.pipeline
    tokens = pipeline.sqs.create_queue(QueueName="tokens")["QueueUrl"]
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="api-caller",
        definition=json.dumps(WAITING_CALLER).replace("TOKENS_URL", tokens),
        roleArn="arn:aws:iam::123456789012:role/caller",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="order-9")["executionArn"]
    deadline = time.monotonic() + 30
    messages: list[dict[str, str]] = []
    while not messages and time.monotonic() < deadline:
        messages = pipeline.sqs.receive_message(QueueUrl=tokens, WaitTimeSeconds=1).get("Messages", [])
    token = json.loads(messages[0]["Body"])["task_token"]
    posted = jobs_api.call("POST", "/jobs", {"job_id": "waited-api", "prompt": "a kite", "task_token": token})
    assert posted.status == 202
    assert "task_token" not in jobs_api.call("GET", "/jobs/waited-api").body["request"]  # never shown
    # When the job is cancelled
    jobs_api.call("POST", "/jobs/waited-api/cancel")
    # Then the waiting caller is resumed with the failure
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the caller was never told"
        time.sleep(0.1)
    assert described["status"] == "FAILED" and described.get("error") == "CANCELLED"


def test_get_and_query_show_jobs_with_a_download_link_once_completed(jobs_api: JobsApi) -> None:
    # Given a completed job whose video is in S3, and a queued one
    jobs_api.call("POST", "/jobs", {"job_id": "shown-1", "prompt": "done"})
    jobs_api.call("POST", "/jobs", {"job_id": "shown-2", "prompt": "waiting"})
    jobs_api.s3.put_object(Bucket=jobs_api.bucket, Key="videos/shown-1.mp4", Body=b"\0\0\0\x18ftypmp42")
    s3_uri = f"s3://{jobs_api.bucket}/videos/shown-1.mp4"
    moved(
        jobs_api.pipeline,
        "shown-1",
        JobState.SUBMITTING,
        JobState.SUBMITTED,
        JobState.DOWNLOADING,
        JobState.COMPLETED,
        s3_uri=s3_uri,
        units_charged="2",
        video_size=12,
    )
    # When both are read, with an unknown id
    single = jobs_api.call("GET", "/jobs/shown-1")
    both = jobs_api.call("POST", "/jobs/query", {"ids": ["shown-1", "nope", "shown-2", "shown-1"]})
    # Then the completed one has its S3 URI, units and a presigned link; the unknown id is listed
    assert single.status == 200
    assert single.body["s3_uri"] == s3_uri and single.body["units_charged"] == "2"
    assert "X-Amz-Signature=" in single.body["download_url"] and "X-Amz-Expires=900" in single.body["download_url"]
    assert [j["job_id"] for j in both.body["jobs"]] == ["shown-1", "shown-2"]
    assert both.body["unknown"] == ["nope"]
    assert both.body["jobs"][1]["download_url"] is None
    assert jobs_api.call("GET", "/jobs/nope").error == {
        "code": "JOB_NOT_FOUND",
        "message": "no job nope",
        "field": "job_id",
    }


def test_the_sample_api_event_reads_its_job(jobs_api: JobsApi) -> None:
    # Given the sample event from events/ (GET /jobs/{job_id}) and its job, queued through the API
    sample = json.loads((ROOT / "events" / "api_get_job.json").read_text())
    job_id = sample["pathParameters"]["job_id"]
    jobs_api.call("POST", "/jobs", {"job_id": job_id, "prompt": "a sample"})
    # When ApiFunction's real handler takes it
    answer = jobs_api.handler(sample, LambdaContext.for_function("ApiFunction"))
    # Then it answers with the job
    assert answer["statusCode"] == 200, answer
    body = json.loads(answer["body"])
    assert body["job_id"] == job_id and body["state"] == "QUEUED"


def test_listing_pages_through_one_state_newest_first(jobs_api: JobsApi) -> None:
    # Given seven cancelled jobs (and one queued one) created one after another
    for i in range(7):
        jobs_api.call("POST", "/jobs", {"job_id": f"page-{i}", "prompt": f"shot {i}"})
        jobs_api.call("POST", f"/jobs/page-{i}/cancel")
        time.sleep(0.002)
    jobs_api.call("POST", "/jobs", {"job_id": "page-live", "prompt": "still queued"})
    # When they are listed three at a time
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = jobs_api.call("GET", "/jobs", state="CANCELLED", limit=3, next_token=token)
        assert page.status == 200
        seen += [j["job_id"] for j in page.body["jobs"]]
        pages += 1
        token = page.body.get("next_token")
        if not token:
            break
    # Then every cancelled job comes once, newest first, over three pages
    assert seen == [f"page-{i}" for i in reversed(range(7))]
    assert pages in (3, 4)  # DynamoDB may need one more, empty page to say it is at the end
    # And `since` leaves out what was updated before it
    middle = jobs_api.job("page-3").updated_at
    recent = jobs_api.call("GET", "/jobs", state="CANCELLED", since=middle)
    assert [j["job_id"] for j in recent.body["jobs"]] == ["page-6", "page-5", "page-4", "page-3"]
    # And a token of another listing is refused
    other = jobs_api.call("GET", "/jobs", state="FAILED", next_token=page.body.get("next_token") or "x")
    assert other.status == 400 and other.error["field"] == "next_token"


def test_a_webhook_url_that_breaks_the_rules_is_refused(jobs_api: JobsApi) -> None:
    for url in ("ftp://example.com/x", "https://10.1.2.3/hook", "http://example.com/hook"):
        answer = jobs_api.call("POST", "/jobs", {"job_id": "hooked", "prompt": "x", "webhook_url": url})
        assert answer.status == 400 and answer.error["field"] == "webhook_url", (url, answer.body)
    assert jobs_api.call("POST", "/jobs", {"prompt": "x", "webhook_url": "http://127.0.0.1:9/h"}).status == 202


def test_a_job_naming_no_model_is_checked_against_the_deployments_default_model(jobs_api: JobsApi) -> None:
    # Given the template's DefaultModel (kling-v2-6: 5 or 10 seconds), an 8-second job naming no model
    eight_seconds = {"job_id": "no-model-8s", "prompt": "a fox", "duration": "8"}
    # When it is posted, it is refused as the submit path would refuse it, naming the field
    refused = jobs_api.call("POST", "/jobs", eight_seconds)
    assert refused.status == 400 and refused.error["field"] == "duration", refused.body
    # Given a deployment whose DefaultModel is kling-v3 (3 to 15 seconds)
    from tests.support.lambda_runtime import load_function_module

    jobs_api.pipeline.use_function_env("ApiFunction", DEFAULT_MODEL="kling-v3")
    v3_api = JobsApi(
        jobs_api.pipeline,
        load_function_module("api").lambda_handler,
        jobs_api.s3,
        jobs_api.bucket,
        jobs_api.events_queue_url,
    )
    # When the same job is posted, it is accepted and queued for the submit path
    accepted = v3_api.call("POST", "/jobs", eight_seconds)
    assert accepted.status == 202, accepted.body
    assert [m["job_id"] for m in v3_api.queued()] == ["no-model-8s"]


def test_a_batch_that_fails_midway_is_queued_whole_by_its_retry(jobs_api: JobsApi) -> None:
    from kling_local.aws_faults import AWS_FAULTS

    pipeline = jobs_api.pipeline
    batch = {"jobs": [{"job_id": f"mid-{i}", "prompt": f"shot {i}"} for i in range(3)]}
    # Given DynamoDB throttling every put of the batch's second job, past the client's retries
    AWS_FAULTS.inject("ThrottlingException", "dynamodb", operation="PutItem", contains="mid-1", times=None)
    try:
        # When the batch is sent
        failed = jobs_api.call("POST", "/jobs", batch)
    finally:
        AWS_FAULTS.clear()
    # Then the API asks for a retry, and the first job is recorded but was never queued
    assert failed.status == 503, failed.body
    assert jobs_api.job("mid-0").state is JobState.QUEUED and jobs_api.queued() == []
    # When the same batch is sent again
    retried = jobs_api.call("POST", "/jobs", batch)
    # Then every job is queued, the one recorded by the first try too
    assert retried.status == 202
    assert [j["outcome"] for j in retried.body["jobs"]] == ["existing", "accepted", "accepted"]
    assert sorted(m["job_id"] for m in jobs_api.queued()) == ["mid-0", "mid-1", "mid-2"]
    # And the submit path makes each once, which no longer awaits a message
    drive_queue(
        pipeline.submit_handler(),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: all(job_in(pipeline, f"mid-{i}", JobState.SUBMITTED, JobState.PROCESSING) for i in range(3)),
    )
    assert [creates_for(pipeline, f"mid-{i}") for i in range(3)] == [1, 1, 1]
    assert not jobs_api.job("mid-0").awaiting_message
    # And a retry once they are claimed is `existing`, queueing nothing
    again = jobs_api.call("POST", "/jobs", batch)
    assert [j["outcome"] for j in again.body["jobs"]] == ["existing"] * 3 and jobs_api.queued() == []


def test_the_poller_queues_an_api_job_whose_message_never_went(completion: Completion, jobs_api: JobsApi) -> None:
    pipeline = jobs_api.pipeline
    # Given a job the API recorded, whose message was lost before any submitter claimed it (and no retry)
    assert jobs_api.call("POST", "/jobs", {"job_id": "no-message", "prompt": "a quiet pond"}).status == 202
    while messages := pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert jobs_api.job("no-message").awaiting_message
    # When the poller looks at it (its next look moved forward here)
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"job_id": {"S": "no-message"}},
        UpdateExpression="SET next_poll_at = :now",
        ExpressionAttributeValues={":now": {"N": "0"}},
    )
    report = completion.poll(completion.poller())
    # Then it sent the job's message, and the job goes to Kling once
    assert report["messages_resent"] == 1, report
    drive_queue(
        pipeline.submit_handler(),
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: job_in(pipeline, "no-message", JobState.SUBMITTED, JobState.PROCESSING),
    )
    assert creates_for(pipeline, "no-message") == 1


def test_a_batch_spreads_over_the_state_index_and_lists_whole_newest_first(jobs_api: JobsApi) -> None:
    pipeline = jobs_api.pipeline
    # When a batch of 40 jobs is accepted (each recorded QUEUED)
    batch = {"jobs": [{"job_id": f"spread-{i:02d}", "prompt": f"shot {i}"} for i in range(40)]}
    assert jobs_api.call("POST", "/jobs", batch).status == 202
    # Then their index entries spread over the state's partitions, not one
    partitions = {
        pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": f"spread-{i:02d}"}})["Item"][
            "state_shard"
        ]["S"]
        for i in range(40)
    }
    assert len(partitions) > 8 and all(p.startswith("QUEUED#") for p in partitions)
    # And a listing pages through every shard: each job once, newest first
    seen: list[dict[str, str]] = []
    token = None
    while True:
        page = jobs_api.call("GET", "/jobs", state="QUEUED", limit=7, next_token=token)
        assert page.status == 200 and len(page.body["jobs"]) <= 7
        seen += page.body["jobs"]
        token = page.body.get("next_token")
        if not token:
            break
    assert sorted(j["job_id"] for j in seen) == [f"spread-{i:02d}" for i in range(40)]
    assert [j["updated_at"] for j in seen] == sorted((j["updated_at"] for j in seen), reverse=True)
    # And a transition moves the job to its new state's shard
    jobs_api.call("POST", "/jobs/spread-00/cancel")
    item = pipeline.dynamodb.get_item(TableName=pipeline.table_name, Key={"job_id": {"S": "spread-00"}})["Item"]
    assert item["state_shard"]["S"].startswith("CANCELLED#")
    listed = jobs_api.call("GET", "/jobs", state="CANCELLED").body["jobs"]
    assert [j["job_id"] for j in listed] == ["spread-00"] and listed[0]["state"] == "CANCELLED"


def test_an_unknown_model_is_accepted_with_the_warning_the_cli_gives(jobs_api: JobsApi) -> None:
    # Given a job naming a model the capability table does not know, one character off a known one
    answer = jobs_api.call("POST", "/jobs", {"job_id": "typo-1", "prompt": "a fox", "model": "kling-v2.6"})
    # Then it is queued (Kling may know it) and the answer says so, with the likely model
    assert answer.status == 202
    assert answer.body["warnings"] == [
        "model kling-v2.6 is not in the capability table (did you mean kling-2.6 or kling-v2-6?); "
        "it is passed to Kling as is and checked only by the rules that hold for every model"
    ]
    # And a batch says it of its job only
    batch = jobs_api.call("POST", "/jobs", {"jobs": [{"prompt": "ok"}, {"prompt": "x", "model": "kling-v9-preview"}]})
    assert batch.body["jobs"][0].get("warnings") is None
    assert "model kling-v9-preview is not in the capability table;" in batch.body["jobs"][1]["warnings"][0]
