"""moto's Lambda invoke routed to the project's real functions: the one patch of moto's Lambda.

moto's LambdaSimpleBackend echoes the payload. Its Step Functions engine (`lambda:invoke` tasks,
function ARNs as Task resources) and anyone calling Invoke on the moto endpoint end in
`LambdaSimpleBackend.invoke`; while a `LocalFunctions` is installed, that runs the function there
instead and answers as Lambda does (X-Amz-Function-Error on errors, so Retry/Catch see the error
type). The local stack installs its worker runtime; the integration tests an in-process invoker.

This replaces a private moto method with a fixed signature: pyproject caps moto below 5.3.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from kling_local.stack.runtime import Invocation, RuntimeStoppedError


class LocalFunctions(Protocol):
    """What moto's invoke is routed to (runtime.FunctionRuntime, or handlers in this process)."""

    def resolve(self, function: str) -> str | None:
        """The local name of a function name or ARN, or None when it does not run here."""

    def invoke(self, function: str, event: Any) -> Invocation: ...

    def invoke_async(self, function: str, event: Any) -> str:
        """Lambda's Event invocation: accepted now, run soon; returns the request id."""


_hook_lock = threading.Lock()
_active: LocalFunctions | None = None
_original_invoke: Any = None


def install_moto_hook(functions: LocalFunctions) -> None:
    """Route moto's Lambda invoke (Step Functions tasks, the Lambda API on the moto endpoint) to
    `functions`; the last one installed wins."""
    global _active, _original_invoke
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with _hook_lock:
        if _original_invoke is None:
            _original_invoke = LambdaSimpleBackend.invoke
            LambdaSimpleBackend.invoke = _moto_invoke  # type: ignore[method-assign,assignment]
        _active = functions


def uninstall_moto_hook(functions: LocalFunctions) -> None:
    """Give moto its own invoke back, if `functions` is what is installed."""
    global _active, _original_invoke
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with _hook_lock:
        if _active is functions:
            _active = None
            if _original_invoke is not None:
                LambdaSimpleBackend.invoke = _original_invoke  # type: ignore[method-assign]
                _original_invoke = None


@contextmanager
def moto_lambda_runs(functions: LocalFunctions) -> Iterator[LocalFunctions]:
    """Within the block, moto's Lambda invoke runs `functions`."""
    install_moto_hook(functions)
    try:
        yield functions
    finally:
        uninstall_moto_hook(functions)


def _moto_invoke(
    backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> str | bytes | None:
    """Replacement for `LambdaSimpleBackend.invoke(self, function_name, qualifier, body, headers,
    response_headers)`: runs the function locally and answers as Lambda does."""
    functions = _active
    function = backend.get_function(function_name, qualifier)  # raises ResourceNotFound as moto would
    local_name = functions.resolve(function.function_name) if functions is not None else None
    if functions is None or local_name is None:
        result: str | bytes | None = _original_invoke(
            backend, function_name, qualifier, body, headers, response_headers
        )
        return result
    raw = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
    try:
        event = json.loads(raw) if raw.strip() else {}
    except ValueError:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(
            {"errorMessage": "Could not parse request body into json", "errorType": "InvalidRequestContentException"}
        ).encode("utf-8")
    invocation_type = (headers.get("X-Amz-Invocation-Type") if headers is not None else None) or "RequestResponse"
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        functions.invoke_async(local_name, event)
        return b""
    try:
        invocation = functions.invoke(local_name, event)
    except RuntimeStoppedError as exc:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorMessage": str(exc), "errorType": "ServiceException"}).encode("utf-8")
    if not invocation.ok:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["x-amz-executed-version"] = "$LATEST"
    return json.dumps(invocation.payload).encode("utf-8")
