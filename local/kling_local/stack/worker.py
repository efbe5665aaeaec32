"""One Lambda execution environment: a process that imports one handler once and serves invocations.

Started by `runtime.py` as `python -P worker.py '<json spec>'`. Standard library only, so that the
function's own code decides what gets imported (as on Lambda). Protocol, one JSON object per line:
  worker -> parent  {"type": "init", "ok": true, "init_ms": 812} (or ok false + errorType/errorMessage)
  parent -> worker  {"request_id", "event", "deadline_ms", "function_arn"}
  worker -> parent  {"type": "result", "ok": true, "result": ...} (or ok false + the Lambda error)
The protocol uses private copies of stdin/stdout; the handler's stdout and stderr go to the log.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from typing import IO, Any


class LambdaContext:
    """The context object of the Python Lambda runtime (same attributes, same string memory size).

    The worker builds one per request from its environment (`from_environment`); tests that call a
    handler in this process build one with `for_function`, so both hand handlers the same object."""

    def __init__(
        self,
        *,
        request_id: str,
        function_arn: str,
        deadline_ms: int,
        function_name: str,
        memory_limit_in_mb: str,
        function_version: str = "$LATEST",
        log_group_name: str = "",
        log_stream_name: str = "",
    ) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    @classmethod
    def from_environment(cls, request_id: str, function_arn: str, deadline_ms: int) -> LambdaContext:
        """A request's context in an execution environment (the AWS_LAMBDA_* variables of runtime.py)."""
        env = os.environ
        return cls(
            request_id=request_id,
            function_arn=function_arn,
            deadline_ms=deadline_ms,
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            memory_limit_in_mb=env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            log_group_name=env.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=env.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        )

    @classmethod
    def for_function(
        cls,
        function_name: str,
        *,
        timeout_s: float = 30.0,
        memory_mb: int = 256,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> LambdaContext:
        """A fresh invocation of `function_name` with `timeout_s` left, for calling a handler directly."""
        return cls(
            request_id=str(uuid.uuid4()),
            function_arn=f"arn:aws:lambda:{region}:{account}:function:{function_name}",
            deadline_ms=int((time.time() + timeout_s) * 1000),
            function_name=function_name,
            memory_limit_in_mb=str(memory_mb),
            log_group_name=f"/aws/lambda/{function_name}",
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {
        "ok": False,
        "errorMessage": message if message is not None else str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    try:
        line = json.dumps(message)
    except (TypeError, ValueError) as exc:
        line = json.dumps(
            {
                "type": message.get("type", "result"),
                "ok": False,
                "errorMessage": f"Unable to marshal response: {exc}",
                "errorType": "Runtime.MarshalError",
            }
        )
    channel.write(line + "\n")
    channel.flush()


def _load_handler(spec: dict[str, Any]) -> Any:
    module_name, _, function_name = str(spec["handler"]).rpartition(".")
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        traceback.print_exc()
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


def invoke_handler(handler: Any, event: Any, context: LambdaContext) -> dict[str, Any]:
    """One invocation, answered as the Python runtime answers: {"ok": true, "result"} or the Lambda
    error ({"errorMessage", "errorType", "stackTrace"}), logged as Lambda logs it. A handler that
    exits (SystemExit) is answered with "exiting": its execution environment is gone."""
    try:
        return {"type": "result", "ok": True, "result": handler(event, context)}
    except SystemExit as exc:
        error = _error(exc, "Runtime.ExitError", f"Runtime exited with error: exit status {exc.code!r}")
        return {"type": "result", "exiting": True, **error}
    except Exception as exc:
        # Lambda logs the error (and returns it); the log is where people look.
        print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc()
        return {"type": "result", **_error(exc)}


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    # Private protocol channels; fd 0 becomes /dev/null and fd 1 the log, like Lambda's stdout.
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    # Lambda's order: the function's code first, then the layers (/opt/python), then the runtime.
    sys.path[0:0] = [spec["code_dir"], *spec.get("layer_paths", [])]
    os.chdir(spec["code_dir"])

    started = time.monotonic()
    try:
        handler = _load_handler(spec)
    except _InitError as exc:
        _send(replies, {"type": "init", **_error(exc, exc.error_type)})
        return 1
    except BaseException as exc:  # a module that exits or raises anything at import time
        traceback.print_exc()
        _send(replies, {"type": "init", **_error(exc, "Runtime.ExitError", f"Runtime exited during init: {exc!r}")})
        return 1
    _send(replies, {"type": "init", "ok": True, "init_ms": int((time.monotonic() - started) * 1000)})

    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        context = LambdaContext.from_environment(
            request["request_id"], request["function_arn"], int(request["deadline_ms"])
        )
        print(f"START RequestId: {context.aws_request_id} Version: {context.function_version}", flush=True)
        began = time.monotonic()
        reply = invoke_handler(handler, request["event"], context)
        if reply.get("exiting"):
            _send(replies, reply)
            return 1
        sys.stdout.flush()
        sys.stderr.flush()
        elapsed = (time.monotonic() - began) * 1000
        print(f"END RequestId: {context.aws_request_id}", flush=True)
        print(f"REPORT RequestId: {context.aws_request_id}\tDuration: {elapsed:.2f} ms", flush=True)
        _send(replies, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
