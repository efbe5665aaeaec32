"""What a job id may be: the idempotency key every path checks first (the request model, the callback
route, the jobs API, webhooks), kept apart so that the callback's cold start does not build the
request model to check a path parameter."""

from __future__ import annotations

import re

# Letters, digits, '-' and '_', at most 64: safe in an S3 key, an execution name (with `-sN-aN`
# appended, under Step Functions' 80) and a URL path, with no escaping anywhere.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def is_valid_job_id(value: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, value) is not None
