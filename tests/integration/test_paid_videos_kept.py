"""Never give up on a video Kling has made (issue #21, items 5-7): a CDN that refuses a good link for a
moment, a Kling the poller cannot ask, a task reconciliation cannot prove on a busy account.

On moto (Step Functions executing the real ASL) and the Kling simulator over HTTP.
"""

from __future__ import annotations

import time

from kling_pipeline.adapters.download_workflow import execution_name
from kling_pipeline.lifecycle import JobState
from tests.support.lambda_runtime import load_function_module
from tests.support.scenarios import Completion, as_callback_body, job_in, kling_task, submitted

S = JobState
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
    assert finished.state is S.COMPLETED and finished.s3_uri, (finished.error_code, finished.error_message)
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
    assert pipeline.store.get("waf-403").state is S.DOWNLOADING
    # When the CDN serves it again and the poller comes by
    pipeline.sim.configure(cdn_not_ready_s=0)
    poller = completion.poller()
    deadline = time.monotonic() + 60
    while not job_in(pipeline, "waf-403", S.COMPLETED):
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
        S.DOWNLOADING,
        by="test",
        changes={"video_url": video.url, "kling_finished_at": int((time.time() - 31 * DAY_S) * 1000)},
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
