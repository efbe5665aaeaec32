"""The download state machine writes a job record exactly as the job store does.

The store (adapters.job_store.transition_write) is the one definition of what a transition writes:
the history entry, `updated_at`, the live-index attribute, the TTL, what a finished job drops. The
state machine's only write, RecordOutcome, sends the write the Download step built with the store;
these tests run the workflow on a job and the store's write of the same transition on an identical
twin, and compare the records.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from kling_pipeline.adapters.download_workflow import DownloadWorkflow
from kling_pipeline.lifecycle import Job, JobState, Transition, observe_task
from tests.support.scenarios import WATCHED_ATTRS, Completion, kling_task, submitted
from tests.support.template import ROOT

BY = "download-workflow"  # what the state machine writes as `by`: the store is told the same


def downloading(completion: Completion, job_id: str) -> Job:
    """A job whose Kling task succeeded, moved to DOWNLOADING as the callback would, workflow not started."""
    job = submitted(completion, job_id)
    decision = observe_task(job, kling_task(completion, job.kind, job.task_id, "succeed"))
    assert decision is not None and decision.to_state is JobState.DOWNLOADING
    return completion.pipeline.store.transition(
        job, Transition(job.state, JobState.DOWNLOADING, decision.changes, by="callback")
    )


def raw_item(completion: Completion, job_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(completion.pipeline.table_name)
    item: dict[str, Any] = table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
    return item


def renamed(value: Any, old: str, new: str) -> Any:
    """`value` with every string's `old` replaced by `new` (numbers stay the Decimals DynamoDB gave)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, old, new) for v in value]
    return value


def twin_of(completion: Completion, job: Job, twin_id: str) -> Job:
    """An exact copy of `job`'s record under another id: the same state, version, history and request."""
    table = boto3.resource("dynamodb").Table(completion.pipeline.table_name)
    table.put_item(Item=renamed(raw_item(completion, job.job_id), job.job_id, twin_id))
    return completion.pipeline.store.get(twin_id)


def comparable(completion: Completion, job_id: str) -> tuple[dict[str, Any], int | None]:
    """The record with the job id (and its index shard), the clock readings and the TTL taken out (the TTL is
    returned)."""
    item = json.loads(json.dumps(raw_item(completion, job_id), default=str).replace(job_id, "<job>"))
    item.pop("updated_at")
    item["state_shard"] = item["state_shard"].split("#")[0]  # the shard number is the job id's hash
    for entry in item["history"]:
        entry.pop("at")
    ttl = item.pop("expires_at", None)
    return item, int(ttl) if ttl is not None else None


def start_workflow(completion: Completion, job: Job) -> dict[str, Any]:
    workflow = DownloadWorkflow(completion.state_machine_arn, attempts=3, sfn=completion.sfn)
    assert workflow.start(job)
    return completion.wait_for_execution(job.job_id)


def assert_same_record(completion: Completion, by_state_machine: str, by_store: str) -> None:
    machine, machine_ttl = comparable(completion, by_state_machine)
    store, store_ttl = comparable(completion, by_store)
    assert machine == store
    assert machine_ttl is not None and store_ttl is not None
    assert abs(machine_ttl - store_ttl) < 3600  # both "finished + FinishedJobTtlDays", taken minutes apart


def test_recording_a_completion_writes_what_the_store_writes(completion: Completion) -> None:
    # Given a DOWNLOADING job and an identical twin
    job = downloading(completion, "shape-done")
    twin = twin_of(completion, job, "shape-done-twin")
    # When the state machine completes the job, and the store completes the twin with the same result
    assert start_workflow(completion, job)["status"] == "SUCCEEDED"
    done = completion.pipeline.store.get(job.job_id)
    assert done.state is JobState.COMPLETED
    twin_done = completion.pipeline.store.transition(
        twin,
        Transition(
            twin.state,
            JobState.COMPLETED,
            {
                "s3_uri": f"s3://{completion.bucket}/videos/{twin.job_id}.mp4",
                "s3_key": f"videos/{twin.job_id}.mp4",
                "video_size": done.video_size,
                "sha256": done.sha256,
            },
            by=BY,
        ),
    )
    # (and marks it announced, as the workflow does once its event is taken)
    assert completion.pipeline.store.mark_announced(twin_done)
    # Then the two records are the same, and neither keeps the signed CDN URL, its live-index entry
    # nor its announcement mark
    assert_same_record(completion, job.job_id, twin.job_id)
    recorded = raw_item(completion, job.job_id)
    assert not {"video_url", *WATCHED_ATTRS} & set(recorded)


def test_recording_a_refusal_writes_what_the_store_writes(completion: Completion) -> None:
    # Given a DOWNLOADING job whose video host is not allowed, and an identical twin
    completion.reconfigure("DownloadFunction", ALLOWED_DOWNLOAD_HOSTS="*.klingai.com")
    job = downloading(completion, "shape-refused")
    twin = twin_of(completion, job, "shape-refused-twin")
    # When the state machine fails the job, and the store fails the twin with the same error
    assert start_workflow(completion, job)["status"] == "FAILED"
    failed = completion.pipeline.store.get(job.job_id)
    assert failed.state is JobState.FAILED and failed.error_code == "URL_NOT_ALLOWED"
    twin_failed = completion.pipeline.store.transition(
        twin,
        Transition(
            twin.state, JobState.FAILED, {"error_code": failed.error_code, "error_message": failed.error_message}, by=BY
        ),
    )
    assert completion.pipeline.store.mark_announced(twin_failed)
    # Then the two records are the same, and neither is left in the live index
    assert_same_record(completion, job.job_id, twin.job_id)
    assert not WATCHED_ATTRS & set(raw_item(completion, job.job_id))


def test_a_download_that_keeps_failing_leaves_the_job_downloading_for_repair(completion: Completion) -> None:
    # Given a DOWNLOADING job and a Download function that cannot read the table (an AWS fault)
    job = downloading(completion, "shape-crashed")
    completion.reconfigure("DownloadFunction", JOBS_TABLE_NAME="no-such-table")
    before = raw_item(completion, job.job_id)
    # When the workflow runs out of retries
    execution = start_workflow(completion, job)
    # Then it ends as DownloadNotFinished and writes nothing: no FAILED that would make the user pay
    # Kling again; the job stays DOWNLOADING for the stale-job repair
    assert execution["status"] == "FAILED"
    assert execution.get("error") == "DownloadNotFinished"
    assert raw_item(completion, job.job_id) == before


def test_a_workflow_started_for_an_older_version_writes_nothing(completion: Completion) -> None:
    # Given a DOWNLOADING job and a workflow started for the version before it
    job = downloading(completion, "shape-stale")
    stale = job.model_copy(update={"version": job.version - 1})
    before = raw_item(completion, job.job_id)
    # When the workflow runs
    execution = start_workflow(completion, stale)
    # Then the Download step sees it is not its job, and nothing is downloaded or written
    assert execution["status"] == "SUCCEEDED"  # AlreadyFinished: another execution owns this job
    assert raw_item(completion, job.job_id) == before
    assert completion.s3.list_objects_v2(Bucket=completion.bucket).get("KeyCount", 0) == 0


def test_the_state_machine_writes_only_what_the_download_step_hands_it() -> None:
    # The writes of the ASL are RecordOutcome (the transition) and ClearAnnouncement (the end announced),
    # and every value of them comes from the step's payload, built by the job store; it reads only back.
    definition = json.loads((ROOT / "statemachine" / "download.asl.json").read_text(encoding="utf-8"))
    states = definition["States"]
    writes = {name: state for name, state in states.items() if state.get("Resource", "").endswith(":updateItem")}
    assert list(writes) == ["RecordOutcome", "ClearAnnouncement"]
    for name, payload in (("RecordOutcome", "write"), ("ClearAnnouncement", "announced")):
        parameters = writes[name]["Parameters"]
        for key in ("UpdateExpression", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues"):
            assert parameters[f"{key}.$"] == f"$.download.payload.{payload}.{key}"
    others = {name for name, state in states.items() if ":dynamodb:" in state.get("Resource", "")} - set(writes)
    assert {states[name]["Resource"].rsplit(":", 1)[-1] for name in others} == {"getItem"}
