"""Kling's slots, visible (issue 24 item 5): `kling-pipeline status` and the jobs API show a waiting
job's pool and its place in line; the poller publishes each pool's held slots, limit and line for the
dashboard. Moto for AWS (from template.yaml), the simulator over HTTP."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kling_local.commands.status import cmd_status
from kling_local.connection import PipelineConnection
from kling_pipeline.lifecycle import JobState
from tests.support.jobs_api import JobsApi
from tests.support.scenarios import Completion, Pipeline, job_in
from tests.support.sqs_driver import drive_queue
from tests.support.template import TEMPLATE_PATH

POOL = "kling-2.6"  # DefaultModel's (kling-v2-6) version: the pool of every job here that names no model
SLOT_METRICS = ("SlotsHeld", "SlotsLimit", "JobsWaiting")


def one_at_kling_two_waiting(pipeline: Pipeline) -> None:
    """An account that runs one task at a time: `busy` at Kling, `next` and `after` waiting in that order."""
    handler = pipeline.submit_handler(KLING_CONCURRENCY="1")
    pipeline.sim.configure(generation_min_s=600_000, generation_max_s=600_000)
    for job_id in ("busy", "next", "after"):
        pipeline.send({"job_id": job_id, "prompt": f"{job_id} heron"})
        drive_queue(
            handler,
            pipeline.sqs,
            pipeline.queue_url,
            until=lambda j=job_id: (  # type: ignore[misc]
                job_in(pipeline, j, JobState.SUBMITTED, JobState.PROCESSING)
                or ((job := pipeline.store.find(j)) is not None and job.waiting_pool == POOL)
            ),
        )


def status_json(pipeline: Pipeline, job_id: str, capsys: Any) -> dict[str, Any]:
    connection = PipelineConnection(pipeline.queue_url, pipeline.dlq_url, pipeline.table_name, "videos", "us-east-1")
    capsys.readouterr()
    assert cmd_status(argparse.Namespace(api_url=None, job_id=job_id, json=True), connection) == 0
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return summary


def test_status_and_the_jobs_api_show_a_waiting_jobs_pool_and_place_in_line(jobs_api: JobsApi, capsys: Any) -> None:
    # Given one job at Kling holding the only slot and two waiting for it
    pipeline = jobs_api.pipeline
    one_at_kling_two_waiting(pipeline)
    # When `status` and GET /jobs/{job_id} are asked about the second in line
    summary = status_json(pipeline, "after", capsys)
    answer = jobs_api.call("GET", "/jobs/after")
    # Then both say it waits for the pool's slot, second in line
    assert (summary["state"], summary["waiting_pool"], summary["place_in_line"]) == ("QUEUED", POOL, 2)
    assert answer.status == 200
    assert (answer.body["waiting_pool"], answer.body["place_in_line"]) == (POOL, 2)
    assert jobs_api.call("GET", "/jobs/next").body["place_in_line"] == 1
    # And a job at Kling waits in no line
    assert status_json(pipeline, "busy", capsys)["place_in_line"] is None
    assert jobs_api.call("GET", "/jobs/busy").body.get("place_in_line") is None


def emitted(out: str, metric: str) -> list[tuple[float, str | None]]:
    """Each EMF record of `metric`: (value, its pool dimension)."""
    found = []
    for line in out.splitlines():
        if line.startswith("{") and metric in (record := json.loads(line)) and "_aws" in record:
            found.append(
                (float(record[metric][0] if isinstance(record[metric], list) else record[metric]), record.get("pool"))
            )
    return found


def test_the_poller_publishes_each_pools_held_slots_limit_and_line_and_the_dashboard_shows_them(
    completion: Completion, capsys: Any
) -> None:
    # Given a one-slot pool: one job at Kling, two waiting
    pipeline = completion.pipeline
    one_at_kling_two_waiting(pipeline)
    poller = completion.poller(KLING_CONCURRENCY="1")
    capsys.readouterr()
    # When the poller runs
    completion.poll(poller)
    out = capsys.readouterr().out
    # Then it published, for the pool, one slot held of one, and two jobs waiting
    assert emitted(out, "SlotsHeld") == [(1.0, POOL)]
    assert emitted(out, "SlotsLimit") == [(1.0, POOL)]
    assert emitted(out, "JobsWaiting") == [(2.0, POOL)]
    # And the dashboard's slots widget shows those metrics, per pool
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    for metric in SLOT_METRICS:
        assert f'{{KlingPipeline,pool,service}} MetricName=\\"{metric}\\"' in template, metric
