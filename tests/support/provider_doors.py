"""A job through another provider's door on the integration pipeline (moto from template.yaml, the door's
simulator over HTTP): the door's callbacks are caught where our API would be and handed to
CallbackFunction as API Gateway would (the model is tests/integration/test_fal_door.py's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kling_local.stack.worker import LambdaContext
from kling_pipeline.lifecycle import Job, JobState
from tests.fal_sim.conftest import Receiver
from tests.support.jobs_api import JobsApi
from tests.support.lambda_runtime import api_gateway_event, load_function_module
from tests.support.scenarios import Completion
from tests.support.sqs_driver import drive_queue


@dataclass
class DoorHarness:
    provider: str
    completion: Completion
    sim: Any
    receiver: Receiver
    env: dict[str, str]
    request: dict[str, Any]  # what every job sends besides its id and prompt (provider, model, mode)

    @property
    def store(self) -> Any:
        return self.completion.pipeline.store

    def send(self, job_id: str, **request: Any) -> None:
        self.completion.pipeline.send({"job_id": job_id, "prompt": f"video for {job_id}", **self.request, **request})

    def drive(self, until: Callable[[], bool]) -> None:
        pipeline = self.completion.pipeline
        drive_queue(pipeline.submit_handler(**self.env), pipeline.sqs, pipeline.queue_url, until=until)

    def submit(self, job_id: str, **request: Any) -> Job:
        """The job sent on the queue and driven through the submit path until it leaves QUEUED/SUBMITTING."""
        self.send(job_id, **request)
        self.drive(
            lambda: (j := self.store.find(job_id)) is not None and j.state not in (JobState.QUEUED, JobState.SUBMITTING)
        )
        return self.store.get(job_id)

    def callback_handler(self) -> Any:
        self.completion.pipeline.use_function_env("CallbackFunction", **self.env)
        return load_function_module("callback").lambda_handler

    def callback(self, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """One delivery, as API Gateway hands POST /callbacks/{job_id}/<provider> to CallbackFunction."""
        parts = urlsplit(path)
        job_id = parts.path.split("/")[2]
        token = parse_qs(parts.query).get("token", [None])[0]
        event = api_gateway_event(job_id, token, body.decode(), headers)
        event["resource"] = f"/callbacks/{{job_id}}/{self.provider}"
        event["path"] = f"/callbacks/{job_id}/{self.provider}"
        answer: dict[str, Any] = self.completion.handlers["CallbackFunction"](
            event, LambdaContext.for_function("CallbackFunction")
        )
        return answer

    def forward_callbacks(self, job_id: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """Waits for the provider's callback(s) for the job and hands each to CallbackFunction."""
        wait_until(lambda: len(self.for_job(job_id)) > 0, timeout_s, f"{self.provider}'s callback for {job_id}")
        return [self.callback(d.path, d.body, d.headers) for d in self.for_job(job_id)]

    def for_job(self, job_id: str) -> list[Any]:
        return [d for d in self.receiver.deliveries if d.path.startswith(f"/callbacks/{job_id}/{self.provider}")]

    def poll_until(self, job_id: str, *states: JobState, timeout_s: float = 30.0) -> Job:
        handler = self.completion.poller(**self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.completion.poll(handler)
            job = self.store.get(job_id)
            if job.state in states:
                return job
            time.sleep(0.3)
        raise AssertionError(f"{job_id} never reached {states}: {self.store.get(job_id).state}")

    def jobs_api(self) -> JobsApi:
        pipeline = self.completion.pipeline
        pipeline.use_function_env("ApiFunction", **self.env, VIDEO_BUCKET=self.completion.bucket)
        events = pipeline.sqs.create_queue(QueueName=f"{self.provider}-api-events")["QueueUrl"]
        handler = load_function_module("api").lambda_handler
        return JobsApi(pipeline, handler, self.completion.s3, self.completion.bucket, events)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.sim.stats()
        return stats


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def harness(
    provider: str, completion: Completion, sim: Any, receiver: Receiver, env: dict[str, str], **request: Any
) -> DoorHarness:
    """The door's harness, CallbackFunction and DownloadFunction set up with its settings."""
    door = DoorHarness(provider, completion, sim, receiver, env, {"provider": provider, **request})
    completion.reconfigure("DownloadFunction", **env, ALLOWED_DOWNLOAD_HOSTS=sim.media_base_url)
    completion.handlers["CallbackFunction"] = door.callback_handler()
    return door
