"""A job through AceData's door, end to end: moto for AWS (from template.yaml), the AceData simulator over
HTTP, its unsigned callbacks caught where our API would be and handed to CallbackFunction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest

from kling_local.acedata_sim import AceDataSimConfig, AceDataSimulator
from kling_pipeline.lifecycle import JobState
from tests.fal_sim.conftest import Receiver
from tests.support.provider_doors import DoorHarness, harness, wait_until
from tests.support.scenarios import Completion

TOKEN = "acedata-integration-token"


@pytest.fixture
def acedata(completion: Completion) -> Iterator[DoorHarness]:
    receiver = Receiver()
    config = AceDataSimConfig(api_token=TOKEN, speed=1000.0, generation_min_s=30.0, generation_max_s=60.0, seed=5)
    with AceDataSimulator(config) as sim:
        pipeline = completion.pipeline
        boto3.client("secretsmanager").put_secret_value(
            SecretId=pipeline.resolver.refs["AceDataCredentials"], SecretString=json.dumps({"api_token": TOKEN})
        )
        env = {
            "ACEDATA_BASE_URL": sim.base_url,
            "ACEDATA_CREDENTIALS_SECRET": pipeline.resolver.refs["AceDataCredentials"],
            "ACEDATA_BATCH_SIZE": "2",
            "PUBLIC_API_BASE_URL": f"http://127.0.0.1:{receiver.server.server_address[1]}",
        }
        yield harness("acedata", completion, sim, receiver, env, model="kling-v2-6", mode="pro")
    receiver.close()


def test_an_acedata_job_completes_through_its_callback_read_back_first(acedata: DoorHarness) -> None:
    # Given a job naming provider acedata
    job = acedata.submit("ace-happy")
    # Then one task was made (with our callback URL: never the synchronous create), its id stored
    assert job.state is JobState.SUBMITTED and (job.provider_task or {})["id"] == job.task_id
    stats = acedata.stats()
    assert stats["creates"] == 1 and stats["sync_creates"] == 0
    # When AceData's (unsigned) callback arrives
    answers = acedata.forward_callbacks("ace-happy")
    assert [a["statusCode"] for a in answers] == [200], answers
    acedata.completion.wait_for_execution("ace-happy")
    # Then the task was read back once before acting, and the video is in S3
    assert acedata.store.get("ace-happy").state is JobState.COMPLETED
    assert acedata.stats()["retrieves"] == 1


def test_a_lying_callback_moves_nothing_the_read_back_does_not_show(acedata: DoorHarness) -> None:
    # Given AceData says "succeed" while the task still runs (an unsigned callback can say anything)
    acedata.sim.configure(early_callback_rate=1.0, generation_min_s=100_000.0, generation_max_s=100_000.0)
    job = acedata.submit("ace-liar")
    # When that callback arrives
    answers = acedata.forward_callbacks("ace-liar")
    # Then it is read back: the task runs, so nothing is downloaded and the job does not end
    assert answers[0]["statusCode"] == 200
    after = acedata.store.get("ace-liar")
    assert after.state in (JobState.SUBMITTED, JobState.PROCESSING) and after.video_url is None
    assert acedata.completion.executions() == []
    assert acedata.stats()["retrieves"] == 1 and job.task_id == after.task_id


def test_a_callback_with_a_bad_token_is_401_and_changes_nothing(acedata: DoorHarness) -> None:
    # Given a job whose callback is on its way
    job = acedata.submit("ace-token")
    wait_until(lambda: acedata.for_job("ace-token"), 15.0, "AceData's callback")
    real = acedata.for_job("ace-token")[0]
    # When it arrives with a token that is not ours for the job
    answer = acedata.callback("/callbacks/ace-token/acedata?token=not-the-token", real.body, real.headers)
    # Then it is refused (401), AceData is not even asked, and the job is as it was
    assert answer["statusCode"] == 401
    after = acedata.store.get("ace-token")
    assert after.state is JobState.SUBMITTED and after.version == job.version
    assert acedata.stats()["retrieves"] == 0
    # (the real delivery still settles it)
    assert acedata.callback(real.path, real.body, real.headers)["statusCode"] == 200


def test_the_poller_looks_up_many_jobs_in_batches_and_asks_again_for_missing_ids(acedata: DoorHarness) -> None:
    # Given five jobs whose callbacks are lost, and batch answers that leave ids out
    acedata.sim.configure(callback_loss_rate=1.0, batch_missing_rate=0.5, seed=3)
    ids = [f"ace-batch-{n}" for n in range(5)]
    for job_id in ids:
        acedata.submit(job_id)
    # When the poller runs until every job has left AceData
    handler = acedata.completion.poller(**acedata.env)
    for _ in range(40):
        acedata.completion.poll(handler)
        if all(acedata.store.get(j).state not in (JobState.SUBMITTED, JobState.PROCESSING) for j in ids):
            break
    # Then every job completed, none failed for an id an answer left out (asked again instead), and each
    # look asked for up to two ids a call (ACEDATA_BATCH_SIZE) with retrieve_batch, never one by one
    for job_id in ids:
        acedata.completion.wait_for_execution(job_id)
        assert acedata.store.get(job_id).state is JobState.COMPLETED
    stats = acedata.stats()
    assert stats["batch_ids_missing"] >= 1
    assert stats["retrieves"] == 0 and stats["batch_retrieves"] >= 3
    assert stats["batch_ids_asked"] <= 2 * stats["batch_retrieves"]


def test_a_batch_answer_missing_every_id_fails_no_job(acedata: DoorHarness) -> None:
    # Given a job whose callback is lost, and batch answers that hold none of the ids asked
    acedata.sim.configure(callback_loss_rate=1.0, batch_missing_rate=1.0)
    acedata.submit("ace-missing")
    # When the poller looks at it, once it is due, and again
    handler = acedata.completion.poller(**acedata.env)
    for _ in range(40):
        acedata.completion.poll(handler)
        if acedata.stats()["batch_ids_missing"] >= 2:
            break
        time.sleep(0.3)
    # Then it was asked about (twice) and, not in the answers, left for its next look: never failed
    assert acedata.stats()["batch_ids_missing"] >= 2
    job = acedata.store.get("ace-missing")
    assert job.state in (JobState.SUBMITTED, JobState.PROCESSING)


def test_an_unsettled_create_is_never_sent_again_and_its_callback_completes_it(acedata: DoorHarness) -> None:
    # Given AceData makes the task and the answer to our create is lost
    acedata.sim.configure(create_answer_loss_rate=1.0)
    job = acedata.submit("ace-unsettled")
    # Then the job waits unsettled (SUBMITTED, no task id), and AceData holds one task
    assert job.state is JobState.SUBMITTED and job.task_id is None and job.provider_unsettled_at
    # When its callback (its URL names the job) arrives
    answers = acedata.forward_callbacks("ace-unsettled")
    assert answers[0]["statusCode"] == 200
    acedata.completion.wait_for_execution("ace-unsettled")
    # Then the job adopts the task (read back first) and completes: one create in all
    done = acedata.store.get("ace-unsettled")
    assert done.state is JobState.COMPLETED and (done.provider_task or {})["id"] == done.task_id
    assert acedata.stats()["creates"] == 1


def test_a_cancel_is_refused_saying_acedata_has_none(acedata: DoorHarness) -> None:
    # Given a long task at AceData
    acedata.sim.configure(generation_min_s=100_000.0, generation_max_s=100_000.0)
    acedata.submit("ace-cancel")
    # When it is cancelled through the jobs API
    answer = acedata.jobs_api().call("POST", "/jobs/ace-cancel/cancel")
    # Then it is refused (409), saying AceData offers no cancel and bills the task as made
    assert answer.status == 409 and "no cancel" in answer.error["message"], answer.body
    assert acedata.store.get("ace-cancel").state is JobState.SUBMITTED
