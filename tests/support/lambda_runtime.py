"""Load a function's handler the way Lambda does (its own module) and give it a Lambda context."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from dataclasses import dataclass, field
from types import ModuleType

from tests.support.template import ROOT


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that Powertools reads."""

    function_name: str
    memory_limit_in_mb: int = 256
    timeout_s: float = 30
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.timeout_s - (time.monotonic() - self.started)) * 1000)


def load_function_module(directory: str) -> ModuleType:
    """functions/<directory>/app.py, imported under a unique name so functions do not share state."""
    path = ROOT / "functions" / directory / "app.py"
    name = f"lambda_fn_{directory}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def api_gateway_event(job_id: str, token: str | None, body: str) -> dict[str, object]:
    """events/api_callback_succeed.json with this job, token and body: what API Gateway hands the function."""
    import json

    event: dict[str, object] = json.loads((ROOT / "events" / "api_callback_succeed.json").read_text())
    event["path"] = f"/callbacks/{job_id}"
    event["pathParameters"] = {"job_id": job_id}
    query = {"token": token} if token is not None else None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["body"] = body
    return event
