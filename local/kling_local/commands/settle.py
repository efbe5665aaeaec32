"""`cancel` (a job not yet sent to Kling, through the jobs API) and `settle` (a job FAILED with
KLING_UNSETTLED, from what Kling's console shows)."""

from __future__ import annotations

import argparse
import json

from kling_local.api_client import JobsApiClient
from kling_local.connection import PipelineConnection
from kling_local.terminal import UsageError
from kling_pipeline.errors import TransitionRejectedError
from kling_pipeline.job_ids import job_reference
from kling_pipeline.lifecycle import JobState


def cmd_cancel(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    """Through the jobs API (only it knows whether a create may have reached Kling): --api-url, else
    the pipeline's own (the local stack's state file, or the stack's JobsApiUrl output)."""
    url = args.api_url or (connection.jobs_api_url if connection else "")
    if not url:
        raise UsageError("no jobs API known for this pipeline: give --api-url (the stack's JobsApiUrl output)")
    job = JobsApiClient(url).call("POST", f"/jobs/{args.job_id}/cancel")
    said = job.get("error_message")  # what the cancel ended and what it costs (fal: what fal bills)
    print(f"{job['job_id']} {job['state']}" + (f": {said}" if said else ""))
    return 0


def cmd_settle(args: argparse.Namespace, connection: PipelineConnection) -> int:
    """Through the job store's transitions (claims.settle_unsettled); with --no-task a reference to the
    job (its request is in its record) is sent to the jobs queue, where the submit path creates its task
    (should the send fail, the poller sends it: the job is QUEUED awaiting its message)."""
    from kling_pipeline.claims import settle_unsettled  # the submit path's rules: only this command needs them

    store = connection.store()
    job = store.find(args.job_id)
    if job is None:
        raise UsageError(f"no job {args.job_id} ({connection.where})")
    try:
        settled = settle_unsettled(job, store, task_id=args.task_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except TransitionRejectedError:
        raise UsageError(f"job {args.job_id} moved meanwhile: look at it again (`kling-pipeline status`)") from None
    if settled.state is JobState.QUEUED:
        message = json.dumps(job_reference(settled.job_id))
        connection.client("sqs").send_message(QueueUrl=connection.queue_url, MessageBody=message)
        print(f"{settled.job_id} QUEUED: it is on the jobs queue, to be created")
    else:
        print(f"{settled.job_id} SUBMITTED with task {settled.task_id}: the poller collects it")
    return 0
