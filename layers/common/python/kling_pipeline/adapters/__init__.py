"""The only modules that talk to AWS or HTTP: the job store (DynamoDB), the job queue (SQS), the
download workflow (Step Functions), the Kling client, the video transfer (CDN -> S3), announcements
(EventBridge), the ledger and generation estimates (StatsTable), webhooks, secrets and callback URL
tokens, among others (docs/architecture.md, "Where each piece lives"). The six use cases (submit,
callback, download, poller, api, webhook) build them from their function's settings; the
rules (lifecycle, requests, kling_task, ...) import none of them.

Clients are built once per Lambda container and reused while it is warm (`per_container`);
`reset_container_state()` forgets them all, for tests and the local runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_resets: list[Callable[[], None]] = []


def per_container(factory: Callable[P, R]) -> Callable[P, R]:
    """Cache what `factory` builds for the life of the container (keyed by its arguments)."""
    cached = functools.cache(factory)
    _resets.append(cached.cache_clear)
    return cached  # type: ignore[return-value]


def on_reset(forget: Callable[[], None]) -> None:
    """Run `forget` when the container state is reset (for caches kept outside `per_container`)."""
    _resets.append(forget)


def reset_container_state() -> None:
    for forget in _resets:
        forget()
