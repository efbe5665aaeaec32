"""JobsTable on DynamoDB: every transition is one conditional update on (state, version).

A duplicate or late event therefore can never move a job backwards or twice: the losing writer gets
TransitionRejectedError and treats it as "already done".
"""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError

from kling_pipeline.jobs import (
    Job,
    JobNotFoundError,
    TransitionRejectedError,
    check_transition,
    utc_now_iso,
)
from kling_pipeline.models import TERMINAL_STATES, JobRequest, JobState

# Non-terminal jobs carry LIVE_ATTR = LIVE_VALUE: the sparse LiveJobs GSI (sorted by updated_at)
# holds exactly the jobs the poller has to look at, oldest first.
LIVE_ATTR = "live"
LIVE_VALUE = "1"
LIVE_INDEX = "LiveJobs"
TTL_ATTR = "expires_at"


def prompt_hash(request: JobRequest) -> str:
    return hashlib.sha256(request.prompt.encode()).hexdigest()[:16]


class JobStore:
    def __init__(self, table_name: str, *, finished_ttl_days: int = 90, dynamodb: Any = None) -> None:
        resource = dynamodb or boto3.resource("dynamodb")
        self._table = resource.Table(table_name)
        self._ttl_s = finished_ttl_days * 86400

    # -- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise JobNotFoundError(job_id)
        return Job.model_validate(_plain(item))

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except JobNotFoundError:
            return None

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """Up to 100 jobs per BatchGetItem call (one request instead of one per job); missing ones are absent."""
        found: dict[str, Job] = {}
        table = self._table.name
        for start in range(0, len(job_ids), 100):
            keys: list[dict[str, Any]] = [{"job_id": j} for j in dict.fromkeys(job_ids[start : start + 100])]
            request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._table.meta.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(table, []):
                    job = Job.model_validate(_plain(item))
                    found[job.job_id] = job
                request = response.get("UnprocessedKeys") or {}
        return found

    def live_jobs(self, *, updated_before: str | None = None, limit: int = 100) -> list[Job]:
        """Non-terminal jobs, least recently updated first, from the sparse GSI (never a scan)."""
        kwargs: dict[str, Any] = {
            "IndexName": LIVE_INDEX,
            "KeyConditionExpression": "#live = :live" + (" AND updated_at < :before" if updated_before else ""),
            "ExpressionAttributeNames": {"#live": LIVE_ATTR},
            "ExpressionAttributeValues": {":live": LIVE_VALUE}
            | ({":before": updated_before} if updated_before else {}),
            "ScanIndexForward": True,
            "Limit": limit,
        }
        items = self._table.query(**kwargs).get("Items", [])
        return [Job.model_validate(_plain(item)) for item in items]

    # -- writes -------------------------------------------------------------------------------

    def create(
        self, job_id: str, request: JobRequest, *, by: str, state: JobState = JobState.QUEUED, **extra: Any
    ) -> tuple[Job, bool]:
        """First sight of a job: a conditional put. Returns (job, created); an existing job is returned as is."""
        check_transition(None, state)
        now = utc_now_iso()
        item: dict[str, Any] = {
            "job_id": job_id,
            "state": state.value,
            "version": 1,
            "kind": request.kind,
            "request": request.model_dump(mode="json", exclude_none=True) | {"job_id": job_id},
            "prompt_hash": prompt_hash(request),
            "created_at": now,
            "updated_at": now,
            "history": [{"state": state.value, "at": now, "by": by}],
            "submit_attempts": 0,
            "backpressure_count": 0,
            # Read by the download state machine (JSONPath cannot read nested maps in plain form).
            "metadata_json": json.dumps(request.metadata, separators=(",", ":"), default=str),
            "task_token": request.task_token,
        }
        item |= extra
        item = {k: v for k, v in item.items() if v is not None}
        if state in TERMINAL_STATES:
            item[TTL_ATTR] = int(time.time()) + self._ttl_s
        else:
            item[LIVE_ATTR] = LIVE_VALUE
        try:
            self._table.put_item(Item=_dynamo(item), ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if _is_condition_failure(exc):
                return self.get(job_id), False
            raise
        return Job.model_validate(item), True

    def transition(
        self,
        job: Job,
        to_state: JobState,
        *,
        by: str,
        changes: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
        add: dict[str, int] | None = None,
        note: str | None = None,
    ) -> Job:
        """Move `job` (as last read) to `to_state`, if nobody moved it since. Returns the job as written."""
        check_transition(job.state, to_state)
        now = utc_now_iso()
        names: dict[str, str] = {"#state": "state", "#version": "version"}
        values: dict[str, Any] = {
            ":expected_state": job.state.value,
            ":expected_version": job.version,
            ":to": to_state.value,
            ":next_version": job.version + 1,
            ":now": now,
            ":entry": [{"state": to_state.value, "at": now, "by": by} | ({"note": note} if note else {})],
        }
        sets = [
            "#state = :to",
            "#version = :next_version",
            "updated_at = :now",
            "history = list_append(history, :entry)",
        ]
        removes: list[str] = list(remove)
        if to_state in TERMINAL_STATES:
            removes.append(LIVE_ATTR)
            sets.append(f"{TTL_ATTR} = :ttl")
            values[":ttl"] = int(time.time()) + self._ttl_s
            removes.extend(r for r in ("lease_owner", "lease_expires_at") if r not in removes)
        for i, (key, value) in enumerate((changes or {}).items()):
            if value is None:
                removes.append(key)
                continue
            names[f"#c{i}"] = key
            values[f":c{i}"] = value
            sets.append(f"#c{i} = :c{i}")
        for i, (key, amount) in enumerate((add or {}).items()):
            names[f"#a{i}"] = key
            values[f":a{i}"] = amount
            values[":zero"] = 0
            sets.append(f"#a{i} = if_not_exists(#a{i}, :zero) + :a{i}")
        expression = "SET " + ", ".join(sets)
        unique_removes = list(dict.fromkeys(removes))
        if unique_removes:
            for i, key in enumerate(unique_removes):
                names[f"#r{i}"] = key
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(unique_removes)))
        try:
            result = self._table.update_item(
                Key={"job_id": job.job_id},
                UpdateExpression=expression,
                ConditionExpression="#state = :expected_state AND #version = :expected_version",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_dynamo(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
                current = JobState(old["state"]["S"]) if "state" in old else None
                raise TransitionRejectedError(job.job_id, job.state, current) from exc
            raise
        return Job.model_validate(_plain(result["Attributes"]))


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _dynamo(value: Any) -> Any:
    """Floats are not allowed by boto3's DynamoDB serializer: store them as Decimal."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _plain(value: Any) -> Any:
    """Decimals back to int/float so pydantic and JSON see ordinary numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
