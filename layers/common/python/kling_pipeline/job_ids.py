"""What a job id may be: the idempotency key every path checks first (the request model, the callback
route, the jobs API, webhooks), kept apart so that the callback's cold start does not build the
request model to check a path parameter."""

from __future__ import annotations

import json
import re
from typing import Any

# Letters, digits, '-' and '_', at most 64: safe in an S3 key, an execution name (with `-sN-aN`
# appended, under Step Functions' 80) and a URL path, with no escaping anywhere.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def is_valid_job_id(value: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, value) is not None


# The pipeline's own messages about a job it has recorded: {"job_id": ..., "resume": true}. The submit
# path takes the job's request from its record (read as stored), so a request near the message limit
# never travels again (its re-sends, a chain's next step, a parked job) and never rides in a workflow's
# state (docs/architecture.md, "Job messages").
RESUME_FIELD = "resume"


def job_reference(job_id: str) -> dict[str, Any]:
    """The message that sends a recorded job (its request is in its record) to the submit path again."""
    return {"job_id": job_id, RESUME_FIELD: True}


def referenced_job(raw_body: str) -> str | None:
    """The job id a reference message names; None for any other body (a request, or something unreadable)."""
    if len(raw_body) > 1024 or RESUME_FIELD not in raw_body:
        return None
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or set(payload) != {"job_id", RESUME_FIELD} or payload[RESUME_FIELD] is not True:
        return None
    job_id = payload["job_id"]
    return job_id if isinstance(job_id, str) and is_valid_job_id(job_id) else None
