"""What a job id may be: the idempotency key every path checks first (the request model, the callback
route, the jobs API, webhooks), kept apart so that the callback's cold start does not build the
request model to check a path parameter."""

from __future__ import annotations

import json
import re
from typing import Any

# Letters, digits, '-' and '_', at most 64: safe in an S3 key, an execution name (internal_name, under
# Step Functions' 80) and a URL path, with no escaping anywhere.
JOB_ID_MAX_LENGTH = 64
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Every name derived from a job id (internal_name) is at least this long: no job id can be one.
INTERNAL_NAME_MIN_LENGTH = JOB_ID_MAX_LENGTH + 1


def is_valid_job_id(value: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, value) is not None


def internal_name(job_id: str, *parts: str) -> str:
    """A name derived from a job id (a chain step's Kling external_task_id, a later download attempt's
    execution) that no job id can ever be, nor any other job's derived name.

    Job ids already use every character such names may hold: Step Functions names must stay within
    `0-9A-Za-z-_` for CloudWatch Logs, and Kling's external_task_id is not documented to take more. So
    the name is told apart by its length: `<job_id>-<part>-<part>` padded with '_' to 65 characters, one
    more than a job id may have. The job id stays readable at its start (`shot-s2_____...`), and the
    name is unambiguous: each caller's parts end in a digit (`s2`, `a3`), so stripping the padding gives
    back `<job_id>-s2-a3`, which parts of a fixed shape (read from the end) split one way only. At most
    64 + 8 characters (`-s35-a5`, the longest chain and attempts), within Step Functions' 80."""
    assert parts and all(part and part[-1] != "_" for part in parts), "parts must end in a letter or digit"
    return "-".join((job_id, *parts)).ljust(INTERNAL_NAME_MIN_LENGTH, "_")


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
