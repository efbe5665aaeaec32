"""Every AWS client the functions build, with one deliberate retry policy.

botocore's "standard" mode retries throttling (ThrottlingException, ProvisionedThroughputExceededException,
SlowDown, ...), 5xx (InternalError, ServiceUnavailable) and dropped connections with jittered
exponential backoff (up to 20 s a wait) and a client-side retry quota, the same for every service; the
default "legacy" mode retries a different list per service and is not what AWS's SDKs now recommend.
Five attempts: at a 5 % fault rate a call still fails one time in three million. What it does not retry
is the caller's: a TransactionCanceledException (adapters.job_store retries its conflicts) and
PutEvents' failed entries (adapters.announcements).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

RETRIES: dict[str, Any] = {"mode": "standard", "total_max_attempts": 5}  # the first call and four retries


def aws_config(**settings: Any) -> Config:
    retries: Any = dict(RETRIES)
    return Config(retries=retries, **settings)


def client(service: str, **settings: Any) -> Any:
    return boto3.client(service, config=aws_config(**settings))  # type: ignore[call-overload]


def resource(service: str) -> Any:
    return boto3.resource(service, config=aws_config())  # type: ignore[call-overload]
