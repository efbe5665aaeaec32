"""The jobs API scenario: ApiFunction's real handler on the `pipeline` (moto, resources from
template.yaml), called with the proxy events the local stack's API server builds from the template's
own routes; and the steps its tests are made of.

The fixture that builds it lives in tests/integration/conftest.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from kling_local.stack.api import Router, proxy_event
from kling_local.stack.sam_translation import api_routes
from kling_local.stack.worker import LambdaContext
from kling_pipeline.lifecycle import Job, JobState, Transition
from tests.support.scenarios import Pipeline
from tests.support.sqs_driver import queue_messages
from tests.support.template import load_template

HOST = "jobs.example.test"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


@dataclass
class JobsApi:
    pipeline: Pipeline
    handler: Any
    s3: Any
    bucket: str
    events_queue_url: str

    router = Router(api_routes(load_template(), {"JobsApi": "v1", "CallbackApi": "v1"}))

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Answer:
        """One request as API Gateway hands it to ApiFunction (`path` without the stage)."""
        route, params, _ = self.router.match(method, f"/v1{path}")
        assert route is not None, f"no route for {method} {path}"
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        event = proxy_event(
            route=route.route,
            method=method,
            path=path,
            query=urlencode({k: v for k, v in query.items() if v is not None}),
            headers=[("Content-Type", "application/json"), ("Host", HOST), ("X-Forwarded-Proto", "https")],
            body=raw,
            path_parameters=params,
            source_ip="127.0.0.1",
            request_id=str(uuid.uuid4()),
            host=HOST,
        )
        response = self.handler(event, LambdaContext.for_function("ApiFunction"))
        headers = dict(response.get("headers") or {})
        headers |= {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items() if values}
        return Answer(int(response["statusCode"]), json.loads(response["body"]), headers)

    def queued(self) -> list[dict[str, Any]]:
        """The messages waiting in JobsQueue (left there)."""
        return [json.loads(m["Body"]) for m in queue_messages(self.pipeline.sqs, self.pipeline.queue_url)]

    def events(self) -> list[dict[str, Any]]:
        messages = self.pipeline.sqs.receive_message(
            QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def job(self, job_id: str) -> Job:
        return self.pipeline.store.get(job_id)


def moved(pipeline: Pipeline, job_id: str, *states: JobState, **changes: Any) -> Job:
    """Walk a job through `states` with the job store's own transitions (as the pipeline would)."""
    job = pipeline.store.get(job_id)
    for state in states:
        job = pipeline.store.transition(
            job, Transition(job.state, state, changes if state is states[-1] else {}, by="test")
        )
    return job
