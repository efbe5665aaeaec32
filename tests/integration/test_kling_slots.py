"""Kling's slots (issue 24): the pipeline knows the account's concurrency per pool, takes a slot before
each create, gives it back exactly once when the task's time at Kling ends, and hands it at once to the
pool's next waiting job, by priority then arrival. Moto for AWS (from template.yaml), the simulator
over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

from kling_pipeline.adapters.job_queue import JobQueue
from kling_pipeline.adapters.job_store import JobStore, pool_key
from kling_pipeline.adapters.slot_pools import SlotPools
from kling_pipeline.claims import claim
from kling_pipeline.kling_body import create_body
from kling_pipeline.lifecycle import JobState
from kling_pipeline.requests import JobRequest
from kling_pipeline.slots import PoolLimits
from tests.support.jobs_api import JobsApi
from tests.support.scenarios import DEAD_API, Completion, Pipeline, as_callback_body, job_in, kling_task
from tests.support.sqs_driver import drive_queue, queue_messages

POOL = "kling-v2-6"  # DefaultModel's: the pool of every job here that names no model


def slots_of(pipeline: Pipeline, *, c: int = 5, queue: bool = True) -> SlotPools:
    jobs_queue = JobQueue(pipeline.queue_url, pipeline.dlq_url, sqs=pipeline.sqs) if queue else None
    return SlotPools(pipeline.table_name, PoolLimits(c), queue=jobs_queue, default_model=POOL)


def pool_item(pipeline: Pipeline) -> dict[str, Any]:
    item = pipeline.dynamodb.get_item(
        TableName=pipeline.table_name, Key={"job_id": {"S": pool_key(POOL)["job_id"]}}, ConsistentRead=True
    ).get("Item", {})
    return {k: int(v["N"]) for k, v in item.items() if "N" in v}


def submit_until(pipeline: Pipeline, handler: Any, done: Any, *, deadline_s: float = 60) -> None:
    drive_queue(handler, pipeline.sqs, pipeline.queue_url, until=done, deadline_s=deadline_s)


def waiting(pipeline: Pipeline, job_id: str) -> bool:
    job = pipeline.store.find(job_id)
    return job is not None and job.state is JobState.QUEUED and job.waiting_pool == POOL


def messages_for(pipeline: Pipeline, job_id: str) -> int:
    return sum(1 for m in queue_messages(pipeline.sqs, pipeline.queue_url) if json.loads(m["Body"])["job_id"] == job_id)


def test_a_job_finding_no_free_slot_waits_without_its_message_and_the_releaser_sends_it_at_once(
    completion: Completion,
) -> None:
    # Given an account that runs one task at a time: job `first` is at Kling, job `second` waits for its slot
    pipeline = completion.pipeline
    handler = pipeline.submit_handler(KLING_CONCURRENCY="1")
    pipeline.sim.configure(generation_min_s=300, generation_max_s=300)
    pipeline.send({"job_id": "first", "prompt": "a heron"})
    submit_until(pipeline, handler, lambda: job_in(pipeline, "first", JobState.SUBMITTED, JobState.PROCESSING))
    pipeline.send({"job_id": "second", "prompt": "a crane"})
    submit_until(pipeline, handler, lambda: waiting(pipeline, "second"))
    assert pool_item(pipeline)["held"] == 1
    assert messages_for(pipeline, "second") == 0  # waiting is not bouncing through SQS delays
    assert pipeline.sim.stats()["creates"]["refused_by_code"].get("1303", 0) == 0  # nothing asked of Kling
    # When Kling finishes `first` and its callback comes
    completion.reconfigure("CallbackFunction", KLING_CONCURRENCY="1")
    first = pipeline.store.get("first")
    task = kling_task(completion, first.kind, first.task_id, "succeed")
    assert completion.callback("first", as_callback_body(task))["statusCode"] == 200
    # Then the callback gave the slot back and sent `second` to the submit path at once (taken off the line)
    assert job_in(pipeline, "first", JobState.DOWNLOADING, JobState.COMPLETED)
    assert pipeline.store.get("first").slot_pool is None
    sent = pipeline.store.get("second")
    assert sent.waiting_pool is None and sent.awaiting_message
    assert messages_for(pipeline, "second") == 1
    # And `second` takes the slot when its message comes
    submit_until(pipeline, handler, lambda: job_in(pipeline, "second", JobState.SUBMITTED, JobState.PROCESSING))
    assert pool_item(pipeline)["held"] == 1 and pipeline.store.get("second").slot_pool == POOL


def test_two_releasers_never_send_the_same_waiting_job(pipeline: Pipeline) -> None:
    # Given one job waiting for a slot, and two releasers that both read the pool's line before either acts
    job, _ = pipeline.store.create("only-one", JobRequest(prompt="a wren"), by="test")
    releaser_a, releaser_b = slots_of(pipeline), slots_of(pipeline)
    assert releaser_a.mark_waiting(job, POOL) is not None
    seen_a, seen_b = releaser_a.line(POOL), releaser_b.line(POOL)
    assert seen_a == seen_b == ["only-one"]
    # When both take the job off the line to send it
    taken = [releaser_a.take_from_line("only-one", POOL), releaser_b.take_from_line("only-one", POOL)]
    # Then exactly one of them did; and a full refill after that finds nobody left to send
    assert sorted(taken) == [False, True]
    assert releaser_b.refill(POOL) == [] and messages_for(pipeline, "only-one") == 0
    assert releaser_a.line(POOL) == []


def test_a_worker_that_dies_after_taking_a_slot_is_healed_by_the_poller(completion: Completion) -> None:
    # Given a worker that claimed a job (taking a slot) and died before creating its task
    pipeline = completion.pipeline
    slots = slots_of(pipeline)
    store = JobStore(pipeline.table_name, schedule=pipeline.store.schedule, slots=slots)
    job, _ = store.create("orphan", JobRequest(prompt="a lark"), by="test")
    store.transition(job, claim(job, owner="dies", lease_s=0, now=int(time.time()) - 5))
    assert pool_item(pipeline)["held"] == 1
    # When the poller runs after the lease and the reconcile grace (no task at Kling)
    poller = completion.poller()
    deadline = time.monotonic() + 30
    while not job_in(pipeline, "orphan", JobState.QUEUED):
        assert time.monotonic() < deadline
        completion.poll(poller)
        time.sleep(0.5)
    # Then the job is back in QUEUED without its slot, and the pool holds none
    assert pipeline.store.get("orphan").slot_pool is None
    assert pool_item(pipeline)["held"] == 0
    # And its message, sent back, makes exactly one task, holding the pool's one slot in use
    submit_until(pipeline, pipeline.submit_handler(), lambda: job_in(pipeline, "orphan", JobState.SUBMITTED))
    assert pipeline.tasks_for("orphan") == 1 and pool_item(pipeline)["held"] == 1


def test_a_shared_accounts_1303_lowers_the_pools_limit_and_quiet_periods_restore_it(completion: Completion) -> None:
    # Given an account of 3 slots where another client runs a task, and the pipeline told C = 3
    pipeline = completion.pipeline
    pipeline.sim.configure(concurrency_limit=3, generation_min_s=600_000, generation_max_s=600_000)
    other = create_body(JobRequest(prompt="not ours"), default_model=POOL, callback_url=DEAD_API, external_task_id="x")
    pipeline.kling().create_task("text2video", other)
    handler = pipeline.submit_handler(KLING_CONCURRENCY="3")
    for name in ("one", "two", "three"):
        pipeline.send({"job_id": name, "prompt": f"a {name}"})
    # When the pipeline sends its three jobs
    submit_until(
        pipeline,
        handler,
        lambda: (
            sum(job_in(pipeline, j, JobState.SUBMITTED) for j in ("one", "two", "three")) == 2
            and any(waiting(pipeline, j) for j in ("one", "two", "three"))
        ),
    )
    # Then Kling's one 1303 lowered the pool's limit to the two it holds, and the third job waits in line
    assert pipeline.sim.stats()["creates"]["refused_by_code"].get("1303", 0) == 1
    assert pool_item(pipeline)["limit"] == 2 and pool_item(pipeline)["held"] == 2
    # And when the poller runs before a quiet period has passed, the limit stays
    poller = completion.poller(POOL_QUIET_S="2", KLING_CONCURRENCY="3")
    assert completion.poll(poller)["slot_limits_raised"] == 0 and pool_item(pipeline)["limit"] == 2
    # When a quiet period passes without a 1303, the poller gives one slot back and sends the waiting job
    time.sleep(2.1)
    report = completion.poll(poller)
    assert report["slot_limits_raised"] == 1 and pool_item(pipeline)["limit"] == 3
    assert report["slots_refilled"] == 1
    # (Kling still has no room for it: another 1303 lowers the limit again, and the job waits again)
    waiting_job = next(j for j in ("one", "two", "three") if pipeline.store.get(j).state is JobState.QUEUED)
    submit_until(pipeline, handler, lambda: waiting(pipeline, waiting_job))
    assert pool_item(pipeline)["limit"] == 2 and pipeline.tasks_for(waiting_job) == 0


def test_a_higher_priority_jumps_the_line_and_equal_priorities_keep_their_arrival_order(
    completion: Completion,
) -> None:
    # Given a one-slot pool that is full, and jobs arriving with priorities 5, 5, 9 and 0
    pipeline = completion.pipeline
    pipeline.sim.configure(generation_min_s=300, generation_max_s=300)
    handler = pipeline.submit_handler(KLING_CONCURRENCY="1")
    pipeline.send({"job_id": "busy", "prompt": "a heron"})
    submit_until(pipeline, handler, lambda: job_in(pipeline, "busy", JobState.SUBMITTED, JobState.PROCESSING))
    for job_id, priority in (("early", None), ("later", 5), ("urgent", 9), ("whenever", 0)):
        body = {"job_id": job_id, "prompt": f"{job_id} video"} | (
            {"priority": priority} if priority is not None else {}
        )
        pipeline.send(body)
        submit_until(pipeline, handler, lambda j=job_id: waiting(pipeline, j))  # type: ignore[misc]
        time.sleep(0.01)
    # When the line is read, and the busy slot frees
    slots = slots_of(pipeline, c=1)
    line = slots.line(POOL)
    places = {j: pipeline.store.place_in_line(pipeline.store.get(j)) for j in line}
    completion.reconfigure("CallbackFunction", KLING_CONCURRENCY="1")
    busy = pipeline.store.get("busy")
    task = kling_task(completion, busy.kind, busy.task_id, "succeed")
    completion.callback("busy", as_callback_body(task))
    # Then priority 9 goes first, the two of priority 5 (one by default) in their order of arrival, then 0
    assert line == ["urgent", "early", "later", "whenever"]
    assert places == {"urgent": (POOL, 1), "early": (POOL, 2), "later": (POOL, 3), "whenever": (POOL, 4)}
    assert messages_for(pipeline, "urgent") == 1 and slots.line(POOL) == ["early", "later", "whenever"]


def test_a_job_held_by_the_daily_budget_takes_no_slot(pipeline: Pipeline) -> None:
    # Given a daily budget with room for one job's estimate
    handler = pipeline.submit_handler(DAILY_BUDGET_UNITS="1.5")
    pipeline.sim.configure(generation_min_s=300, generation_max_s=300)
    pipeline.send({"job_id": "fits", "prompt": "a heron"})
    submit_until(pipeline, handler, lambda: job_in(pipeline, "fits", JobState.SUBMITTED, JobState.PROCESSING))
    # When a second job comes and the budget has no room for it
    pipeline.send({"job_id": "over", "prompt": "a crane"})
    submit_until(pipeline, handler, lambda: (j := pipeline.store.find("over")) is not None and bool(j.held_for))
    # Then it waits for the budget holding no slot: the pool holds only the job at Kling
    held = pipeline.store.get("over")
    assert held.state is JobState.QUEUED and held.slot_pool is None and held.waiting_pool is None
    assert pool_item(pipeline)["held"] == 1


def test_the_pollers_recount_fixes_a_pools_count_that_drifted(completion: Completion) -> None:
    # Given a pool whose counter says 3 slots are held while one job holds one
    pipeline = completion.pipeline
    handler = pipeline.submit_handler(KLING_CONCURRENCY="5")
    pipeline.sim.configure(generation_min_s=600_000, generation_max_s=600_000)
    pipeline.send({"job_id": "real", "prompt": "a heron"})
    submit_until(pipeline, handler, lambda: job_in(pipeline, "real", JobState.SUBMITTED, JobState.PROCESSING))
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"job_id": {"S": pool_key(POOL)["job_id"]}},
        UpdateExpression="SET held = :three",
        ExpressionAttributeValues={":three": {"N": "3"}},
    )
    poller = completion.poller(KLING_CONCURRENCY="5")
    # When the poller runs once (a drift seen once may be the index's lag), then again
    first = completion.poll(poller)
    assert first["slot_counts_fixed"] == 0 and pool_item(pipeline)["held"] == 3
    second = completion.poll(poller)
    # Then the second run corrected it to what the jobs really hold
    assert second["slot_counts_fixed"] == 1 and pool_item(pipeline)["held"] == 1


def test_the_clis_listing_counts_jobs_not_the_pools_counters(pipeline: Pipeline) -> None:
    from kling_local.commands.listing import scan_jobs, state_counts
    from kling_local.connection import PipelineConnection

    # Given a job at Kling holding a slot (so JobsTable holds its pool's counter too)
    pipeline.send({"job_id": "counted", "prompt": "a heron"})
    submit_until(pipeline, pipeline.submit_handler(), lambda: job_in(pipeline, "counted", JobState.SUBMITTED))
    assert pool_item(pipeline)["held"] == 1
    # When `kling-pipeline list` / `status` read the table
    connection = PipelineConnection(pipeline.queue_url, pipeline.dlq_url, pipeline.table_name, "videos", "us-east-1")
    # Then they see the job alone
    assert [item["job_id"] for item in scan_jobs(connection)] == ["counted"]
    assert state_counts(connection) == {"SUBMITTED": 1}


def test_the_jobs_api_takes_a_priority_and_refuses_one_out_of_range_naming_the_field(jobs_api: JobsApi) -> None:
    # When jobs are posted with a priority in range, and out of it
    taken = jobs_api.call("POST", "/jobs", {"job_id": "urgent", "prompt": "x", "priority": 9})
    refused = jobs_api.call("POST", "/jobs", {"job_id": "too-urgent", "prompt": "x", "priority": 12})
    # Then the first is queued with it, and the second refused saying which field and what to send
    assert taken.status == 202 and jobs_api.job("urgent").request["priority"] == 9
    assert refused.status == 400 and refused.error["field"] == "priority", refused.body
    assert "0 (lowest) to 9 (highest)" in refused.error["message"]
