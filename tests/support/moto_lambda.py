"""Run the project's real handlers when moto's Step Functions engine invokes a Lambda function.

moto's LambdaSimpleBackend echoes the payload; this swaps its invoke for one that calls our handler
in-process (the tests' equivalent of the local stack's function runtime), errors reported as Lambda
reports them so Retry/Catch see the error type.
"""

from __future__ import annotations

import io
import json
import traceback
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from tests.support.lambda_runtime import LambdaContext

Handler = Callable[[dict[str, Any], Any], Any]


@contextmanager
def handlers_for_moto_lambda(handlers: dict[str, Handler]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Within the block, invoking function NAME runs handlers[NAME]; yields the list of invocations."""
    calls: list[tuple[str, dict[str, Any]]] = []
    original = LambdaSimpleBackend.invoke

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> bytes:
        name = function_name.split(":function:")[-1].split(":")[0]
        event = json.loads(body) if body else {}
        calls.append((name, event))
        try:
            result = handlers[name](event, LambdaContext(name))
        except Exception as exc:  # reported to the caller as Lambda does
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }
            ).encode()
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


def placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    raise RuntimeError('placeholder')\n")
    return buffer.getvalue()
