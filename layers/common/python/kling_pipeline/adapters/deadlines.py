"""Total deadlines for outbound exchanges: DNS, connect, TLS, every read and write, all within one time.

httpx's timeouts apply per read: a server that drips one byte every few seconds never trips them, and
holds the caller (a Lambda holding a job's claim, a batch of innocent messages) for as long as it
likes. `within(seconds)` sets a deadline for everything under it, never later than an enclosing one
(the invocation's remaining time, set by the handler with `for_invocation`); the pinned transport
(adapters/pinned_http.py) bounds every socket operation by what is left, and `getaddrinfo` bounds a
DNS look-up the same way. The deadline is a context variable: a thread started under it must run in a
copy of the context (`contextvars.copy_context().run`) to carry it.

No HTTP client here: webhook_targets (imported by the jobs API) resolves through this module.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

DNS_TIMEOUT_S = 5.0  # a look-up that takes longer is as good as none
INVOCATION_MARGIN_S = 3.0  # kept back from the Lambda's remaining time: to record what happened

_deadline: ContextVar[float | None] = ContextVar("kling_pipeline_http_deadline", default=None)


class DeadlinePassedError(TimeoutError):
    """The total time for an exchange is spent (a TimeoutError, so an OSError, as socket timeouts are)."""


@contextmanager
def within(seconds: float | None) -> Iterator[float | None]:
    """Everything under this ends within `seconds` (None: no limit of its own), and never later than an
    enclosing deadline. Yields the seconds actually given."""
    enclosing = _deadline.get()
    at = enclosing
    if seconds is not None:
        own = time.monotonic() + max(seconds, 0.0)
        at = own if enclosing is None else min(own, enclosing)
    token = _deadline.set(at)
    try:
        yield None if at is None else max(at - time.monotonic(), 0.0)
    finally:
        _deadline.reset(token)


def for_invocation(remaining_ms: int | None, *, margin_s: float = INVOCATION_MARGIN_S) -> Any:
    """The deadline of a Lambda invocation: its remaining time less a margin to record the outcome."""
    return within(None if remaining_ms is None else max(remaining_ms / 1000 - margin_s, 0.0))


def remaining_s() -> float | None:
    """Seconds left before the current deadline (0 when passed); None without one."""
    at = _deadline.get()
    return None if at is None else max(at - time.monotonic(), 0.0)


def bounded(timeout: float | None, *, what: str = "the exchange") -> float | None:
    """`timeout` (one socket operation's) cut to what is left; raises DeadlinePassedError when nothing is."""
    left = remaining_s()
    if left is None:
        return timeout
    if left <= 0:
        raise DeadlinePassedError(f"{what}: the total deadline has passed")
    return left if timeout is None else min(timeout, left)


def getaddrinfo(host: str, port: int, *, limit_s: float = DNS_TIMEOUT_S) -> list[Any]:
    """`socket.getaddrinfo` (stream sockets) within `limit_s` and the current deadline. The resolver
    has no timeout of its own, so the look-up runs on a daemon thread that is abandoned if it is late.
    Raises socket.gaierror as the resolver does, DeadlinePassedError when it is late."""
    wait = bounded(limit_s, what=f"resolving {host}")
    assert wait is not None
    answer: list[Any] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            answer.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting thread as it is
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=look_up, name=f"dns-{host[:40]}", daemon=True).start()
    if not done.wait(wait):
        raise DeadlinePassedError(f"{host} did not resolve within {wait:.3g} s")
    if failure:
        raise failure[0]
    return answer
