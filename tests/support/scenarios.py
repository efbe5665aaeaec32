"""The scenarios the integration tests share: the pipeline's AWS side in moto built from
template.yaml (`Pipeline`), the completion path on top of it (`Completion`), and the steps a
scenario is made of (a job submitted, its Kling task finished, its callback delivered).

The fixtures that build them live in tests/integration/conftest.py; tests import these names from
here, never from a conftest module.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest

from kling_local.sim import KlingSimulator
from kling_pipeline.adapters import reset_container_state
from kling_pipeline.adapters.job_store import ANNOUNCE_ATTR, LIVE_ATTR, NEXT_POLL_ATTR, JobStore
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.kling_body import create_body
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job, JobState, Transition
from kling_pipeline.requests import JobRequest
from tests.support.lambda_runtime import load_function_module
from tests.support.sqs_driver import drive_queue, queue_messages
from tests.support.template import ROOT, TemplateResolver

ACCESS_KEY = "ak-integration"
SECRET_KEY = "sk-integration-0123456789abcdef0123456789"
SIGNING_SECRET = "k" * 64
DEAD_API = "http://127.0.0.1:9/v1"  # callbacks go nowhere in submit-path tests; the simulator shrugs

# What puts a job in the LiveJobs index, and the mark that keeps an ended job there until its end is
# announced: a finished, announced job holds none of them.
WATCHED_ATTRS = frozenset({LIVE_ATTR, NEXT_POLL_ATTR, ANNOUNCE_ATTR})


@dataclass
class Pipeline:
    """The AWS side of the stack in moto, built from template.yaml, and the functions' environments."""

    resolver: TemplateResolver
    sqs: Any
    dynamodb: Any
    queue_url: str
    dlq_url: str
    table_name: str
    store: JobStore
    sim: KlingSimulator
    monkeypatch: pytest.MonkeyPatch

    def use_function_env(self, logical_id: str, **overrides: str) -> None:
        for key, value in (self.resolver.function_environment(logical_id) | overrides).items():
            self.monkeypatch.setenv(key, value)
        reset_container_state()

    def submit_handler(self, **env_overrides: str) -> Any:
        self.use_function_env("SubmitFunction", **env_overrides)
        module: ModuleType = load_function_module("submit")
        return module.lambda_handler

    def send(self, body: dict[str, Any] | str) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return str(self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=text)["MessageId"])

    def kling(self) -> KlingClient:
        return KlingClient(self.sim.base_url, ACCESS_KEY, SECRET_KEY)

    def stored_attributes(self, job_id: str) -> set[str]:
        """The names of the job item's attributes as DynamoDB holds them (a `Job` declares some, not all)."""
        item = self.dynamodb.get_item(TableName=self.table_name, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        return set(item["Item"])

    def crash_after_kling_accepted(self, job_id: str, prompt: str) -> tuple[dict[str, Any], KlingTask]:
        """A worker claimed the job, Kling accepted its task, and the worker died before recording it.
        Returns the message SQS redelivers and the task Kling holds."""
        request = JobRequest.model_validate({"job_id": job_id, "prompt": prompt})
        job, _ = self.store.create(job_id, request, by="test")
        self.store.transition(
            job,
            Transition(
                job.state, JobState.SUBMITTING, {"lease_owner": "dead", "lease_expires_at": 0}, by="worker-that-dies"
            ),
        )
        body = create_body(request, default_model="kling-v1", callback_url=DEAD_API, external_task_id=job_id)
        return request.model_dump(mode="json", exclude_none=True), self.kling().create_task("text2video", body)

    def drain(self, handler: Any, until: Any, *, deadline_s: float = 120.0) -> None:
        """Deliver JobsQueue to the submit handler until `until()` holds."""
        drive_queue(handler, self.sqs, self.queue_url, until=until, deadline_s=deadline_s)

    def tasks_for(self, job_id: str) -> int:
        """How many tasks Kling holds (and bills) under this job's external_task_id."""
        return int(self.sim.stats()["tasks_by_external_task_id"].get(job_id, 0))

    def dead_letters(self) -> list[dict[str, Any]]:
        return queue_messages(self.sqs, self.dlq_url)

    def caller_waiting_for(self, job: dict[str, Any], *, name: str = "caller") -> str:
        """A Step Functions caller that sends `job` to JobsQueue with its task token and waits
        (`sqs:sendMessage.waitForTaskToken`); returns its execution's ARN."""
        sfn = boto3.client("stepfunctions")
        role = boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        ask = {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": self.queue_url, "MessageBody": job | {"task_token.$": "$$.Task.Token"}},
                    "End": True,
                }
            },
        }
        machine = sfn.create_state_machine(name=name, definition=json.dumps(ask), roleArn=role)["stateMachineArn"]
        return str(sfn.start_execution(stateMachineArn=machine, name="waits", input="{}")["executionArn"])

    def backpressured(self, job_id: str) -> bool:
        """The job has been sent back to the queue at least once."""
        job = self.store.find(job_id)
        return job is not None and job.backpressure_count >= 1


@dataclass
class Completion:
    """The completion path on top of `pipeline`: bucket, download workflow, events captured on SQS."""

    pipeline: Pipeline
    s3: Any
    sfn: Any
    bucket: str
    state_machine_arn: str
    events_queue_url: str
    invocations: list[tuple[str, dict[str, Any]]]

    def callback(
        self,
        job_id: str,
        body: dict[str, Any] | str,
        token: str | None = "auto",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        from kling_local.stack.worker import LambdaContext
        from kling_pipeline.adapters.callback_tokens import job_token
        from tests.support.lambda_runtime import api_gateway_event

        if token == "auto":
            token = job_token(SIGNING_SECRET, job_id)
        text = body if isinstance(body, str) else json.dumps(body)
        response: dict[str, Any] = self.handlers["CallbackFunction"](
            api_gateway_event(job_id, token, text, headers), LambdaContext.for_function("CallbackFunction")
        )
        return response

    handlers: dict[str, Any] = field(default_factory=dict)

    def reconfigure(self, function: str, **env: str) -> None:
        """Change a function's environment, as updating its configuration on AWS does: the next
        invocation is a cold start that reads the new settings."""
        for key, value in env.items():
            self.pipeline.monkeypatch.setenv(key, value)
        reset_container_state()
        directory = {"CallbackFunction": "callback", "DownloadFunction": "download"}[function]
        self.handlers[function] = load_function_module(directory).lambda_handler

    def executions(self) -> list[dict[str, Any]]:
        return list(self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"])

    def wait_for_execution(
        self, name: str, timeout_s: float = 60.0, *, state_machine_arn: str | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        machine = state_machine_arn or self.state_machine_arn
        arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        while time.monotonic() < deadline:
            execution: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                return execution
            time.sleep(0.1)
        raise TimeoutError(f"execution {name} still running after {timeout_s}s")

    def poller(self, **env: str) -> Any:
        """PollerFunction's handler with its environment from template.yaml (and `env`), loaded as a cold start."""
        self.pipeline.use_function_env(
            "PollerFunction", VIDEO_BUCKET=self.bucket, DOWNLOAD_STATE_MACHINE_ARN=self.state_machine_arn, **env
        )
        return load_function_module("poller").lambda_handler

    def poll(self, handler: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        """One poller run, as its schedule would start it."""
        from kling_local.stack.worker import LambdaContext

        event = json.loads((ROOT / "events" / "scheduled_poll.json").read_text())
        report: dict[str, Any] = handler(event, LambdaContext.for_function("PollerFunction", timeout_s=timeout_s))
        return report

    def events(self) -> list[dict[str, Any]]:
        messages = self.pipeline.sqs.receive_message(
            QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


# -- scenario steps ------------------------------------------------------------------------------


def job_in(pipeline: Pipeline, job_id: str, *states: JobState) -> bool:
    job = pipeline.store.find(job_id)
    return job is not None and job.state in states


def dead_letters(pipeline: Pipeline) -> int:
    return len(queue_messages(pipeline.sqs, pipeline.dlq_url))


def creates_for(pipeline: Pipeline, external_task_id: str) -> int:
    return int(pipeline.sim.stats()["tasks_by_external_task_id"].get(external_task_id, 0))


def submitted(completion: Completion, job_id: str, **request: Any) -> Job:
    pipeline = completion.pipeline
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": job_id, "prompt": f"video for {job_id}", **request})
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: (
            (j := pipeline.store.find(job_id)) is not None
            and j.state is not JobState.QUEUED
            and j.state is not JobState.SUBMITTING
        ),
    )
    return pipeline.store.get(job_id)


def kling_task(completion: Completion, kind: str, task_id: str | None, status: str, timeout_s: float = 30) -> KlingTask:
    client = completion.pipeline.kling()
    deadline = time.monotonic() + timeout_s
    assert task_id
    while time.monotonic() < deadline:
        task = client.get_task(kind, task_id)
        if task.task_status == status:
            return task
        time.sleep(0.05)
    raise TimeoutError(f"task never reached {status}")


def as_callback_body(task: KlingTask) -> dict[str, Any]:
    return task.model_dump(mode="json", exclude_none=True)


def finish(completion: Completion, job_id: str) -> tuple[Job, dict[str, Any]]:
    """Run the job to a finished Kling task, deliver the succeed callback, wait for the workflow."""
    job = submitted(completion, job_id)
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    response = completion.callback(job_id, as_callback_body(task))
    assert response["statusCode"] == 200, response
    execution = completion.wait_for_execution(job_id)
    return completion.pipeline.store.get(job_id), execution
