"""Run a function's handler in this process the way the local stack's runtime runs it in a worker.

Same context class (`kling_local.stack.worker.LambdaContext`), same result/error shape
(`worker.invoke_handler`), answered as the runtime's `Invocation`, so moto's Lambda hook and the
SQS event source treat an in-process handler exactly as they treat a deployed function.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from kling_local.stack.runtime import Invocation
from kling_local.stack.worker import LambdaContext, invoke_handler
from tests.support.template import ROOT

Handler = Callable[[Any, Any], Any]


def load_function_module(directory: str) -> ModuleType:
    """functions/<directory>/app.py, imported under a unique name so functions do not share state.

    A handler turns the garbage collector off for its init and freezes what exists at its end
    (kling_pipeline.cold_start): right for a Lambda environment, which holds one handler, but here
    it would freeze the test process's objects for good. So the collector must be back on once the
    module has run (a handler that forgot `init_done()` fails here), and the freeze is undone."""
    path = ROOT / "functions" / directory / "app.py"
    name = f"lambda_fn_{directory}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        if not gc.isenabled():
            raise AssertionError(f"functions/{directory}/app.py left the garbage collector off: call init_done() last")
    finally:
        gc.enable()
        gc.unfreeze()
    return module


class InProcessFunctions:
    """Handlers by function name, invoked in this process (a `moto_lambda.LocalFunctions`).

    `calls` lists every invocation as (function name, event), in order."""

    def __init__(self, handlers: Mapping[str, Handler], *, timeout_s: float = 30.0) -> None:
        self.handlers = dict(handlers)
        self.timeout_s = timeout_s
        self.calls: list[tuple[str, Any]] = []

    def resolve(self, function: str) -> str | None:
        name = function.split(":function:")[-1].split(":")[0]
        return name if name in self.handlers else None

    def invoke(self, function: str, event: Any) -> Invocation:
        name = self.resolve(function)
        if name is None:
            raise KeyError(f"no in-process handler for {function!r}; known: {', '.join(sorted(self.handlers))}")
        self.calls.append((name, event))
        context = LambdaContext.for_function(name, timeout_s=self.timeout_s)
        started = time.monotonic()
        reply = invoke_handler(self.handlers[name], event, context)
        return Invocation.from_reply(context.aws_request_id, reply, time.monotonic() - started)

    def invoke_async(self, function: str, event: Any) -> str:
        request_id = str(uuid.uuid4())
        threading.Thread(target=self.invoke, args=(function, event), daemon=True).start()
        return request_id


def api_gateway_event(
    job_id: str, token: str | None, body: str, headers: dict[str, str] | None = None
) -> dict[str, object]:
    """events/api_callback_succeed.json with this job, token, body (and more headers): what API Gateway
    hands the function."""
    event: dict[str, object] = json.loads((ROOT / "events" / "api_callback_succeed.json").read_text())
    if headers:
        event["headers"] = {**event["headers"], **headers}  # type: ignore[dict-item]
        event["multiValueHeaders"] = {**event["multiValueHeaders"], **{k: [v] for k, v in headers.items()}}  # type: ignore[dict-item]
    event["path"] = f"/callbacks/{job_id}"
    event["pathParameters"] = {"job_id": job_id}
    query = {"token": token} if token is not None else None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["body"] = body
    return event
