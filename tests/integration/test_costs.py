"""What Kling charges: units counted once per task, the daily aggregate under concurrency, the daily
budget (reserve, release, adjust, the next day), the account's errors parked, its packs read.

Kling (the simulator) charges 0.5 units for a std 5-second video here, half of what the pipeline's
estimate table reserves, so every test also sees reservations corrected to the real charge.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from kling_local import cli
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.adapters.ledger import Ledger, day_of
from kling_pipeline.callback import callback_dependencies, handle_callback
from kling_pipeline.claims import Outcome
from kling_pipeline.lifecycle import JobState
from kling_pipeline.settings import CallbackSettings, SubmitSettings
from kling_pipeline.submit import (
    BUDGET_TOO_SMALL,
    HELD_FOR_BUDGET,
    SubmitDependencies,
    handle_job_message,
    submit_dependencies,
)
from tests.support.scenarios import (
    ACCESS_KEY,
    SIGNING_SECRET,
    Completion,
    Pipeline,
    as_callback_body,
    finish,
    job_in,
    kling_task,
    submitted,
)

HALF_UNIT = 0.5  # what the simulator charges a std 5 s video in these tests; the table reserves 1


@pytest.fixture(autouse=True)
def kling_charges_half_a_unit(pipeline: Pipeline) -> None:
    pipeline.sim.configure(units_std_5s=HALF_UNIT, concurrency_limit=0)


def ledger_of(pipeline: Pipeline) -> Ledger:
    return Ledger(pipeline.resolver.refs["StatsTable"])


def submit_deps(pipeline: Pipeline, **env: str) -> SubmitDependencies:
    """The submit function's dependencies, as a cold start with this environment builds them."""
    pipeline.use_function_env("SubmitFunction", **env)
    return submit_dependencies(SubmitSettings.from_environment())


def job_message(job_id: str, **fields: Any) -> str:
    return json.dumps({"job_id": job_id, "prompt": f"a video for {job_id}", **fields})


def today() -> date:
    return datetime.now(UTC).date()


def confirm(completion: Completion, job_id: str) -> None:
    """Kling's callback once the job's task has ended; the callback confirms it with a GET."""
    job = completion.pipeline.store.get(job_id)
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    completion.pipeline.use_function_env("CallbackFunction")
    deps = callback_dependencies(CallbackSettings.from_environment())
    from kling_pipeline.adapters.callback_tokens import job_token

    answer = handle_callback(job_id, job_token(SIGNING_SECRET, job_id), json.dumps(as_callback_body(task)), deps)
    assert answer.status == 200, answer


def confirm_concurrently(completion: Completion, job_ids: list[str], copies: int = 2) -> list[int]:
    """Kling's `succeed` callback for each job, `copies` times each, all at once (callbacks are
    delivered more than once, in no order); returns the HTTP statuses answered."""
    pipeline = completion.pipeline
    bodies = []
    for job_id in job_ids:
        job = pipeline.store.get(job_id)
        bodies.append((job_id, json.dumps(as_callback_body(kling_task(completion, job.kind, job.task_id, "succeed")))))
    pipeline.use_function_env("CallbackFunction")
    deps = callback_dependencies(CallbackSettings.from_environment())
    from kling_pipeline.adapters.callback_tokens import job_token

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(
            pool.map(
                lambda item: handle_callback(item[0], job_token(SIGNING_SECRET, item[0]), item[1], deps),
                [item for item in bodies for _ in range(copies)],
            )
        )
    for job_id in job_ids:  # the downloads the callbacks started end before the test goes on
        completion.wait_for_execution(job_id)
    return [answer.status for answer in answers]


# -- units, counted once ------------------------------------------------------------------------


def test_a_confirmed_task_counts_its_units_once_in_the_job_event_and_daily_aggregate(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a job whose task Kling finished, confirmed by its callback and stored in S3
    job, execution = finish(completion, "units-once")
    assert execution["status"] == "SUCCEEDED"
    # When the same callback comes again and the poller comes by
    task = kling_task(completion, job.kind, job.task_id, "succeed")
    assert completion.callback("units-once", as_callback_body(task))["statusCode"] == 200
    completion.poll(completion.poller())
    # Then the job, its completion event and the day's aggregate say what Kling charged, once
    assert pipeline.store.get("units-once").units_charged == "0.5"
    (event,) = completion.events()
    assert event["detail"]["units_charged"] == "0.5"
    (row,) = ledger_of(pipeline).costs(today(), today())
    assert (row.model, row.mode, row.units, row.tasks) == ("kling-v2-6", "std", HALF_UNIT, 1)
    assert pipeline.sim.stats()["units_charged_total"] == HALF_UNIT


def test_the_daily_aggregate_adds_up_under_concurrent_duplicate_callbacks(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given twelve jobs of two modes and durations whose tasks Kling has finished
    shapes = [{"mode": "std"}, {"mode": "pro"}, {"mode": "std", "duration": "10"}]
    ids = [f"agg-{i:02}" for i in range(12)]
    for i, job_id in enumerate(ids):
        submitted(completion, job_id, **shapes[i % 3])
    # When every job's succeed callback arrives twice, all at once
    statuses = confirm_concurrently(completion, ids)
    # Then every callback was answered, and each task was counted exactly once, by model and mode
    assert set(statuses) == {200}
    rows = ledger_of(pipeline).costs(today(), today())
    assert sum(r.tasks for r in rows) == 12
    assert {(r.mode, r.units, r.tasks) for r in rows} == {("std", 4 * 0.5 + 4 * 1.0, 8), ("pro", 4 * 1.0, 4)}
    assert sum(r.units for r in rows) == pipeline.sim.stats()["units_charged_total"]
    assert [float(pipeline.store.get(j).units_charged or "nan") for j in ids] == [0.5, 1.0, 1.0] * 4


def test_cost_report_from_the_cli_matches_what_kling_charged(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given three jobs confirmed and charged
    ids = ["cli-cost-1", "cli-cost-2", "cli-cost-3"]
    for job_id in ids:
        submitted(completion, job_id, mode="pro" if job_id.endswith("3") else "std")
    confirm_concurrently(completion, ids, copies=1)
    # When an operator asks for the cost report by mode
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["cost", "--json", "--by", "mode", "--stats-table", pipeline.resolver.refs["StatsTable"]])
    report = json.loads(out.getvalue())
    # Then it shows Kling's own count of units charged, per mode
    assert code == 0
    assert report["total"] == {"units": pipeline.sim.stats()["units_charged_total"], "tasks": 3}
    assert report["rows"] == [{"mode": "pro", "units": 1.0, "tasks": 1}, {"mode": "std", "units": 1.0, "tasks": 2}]


def test_the_cost_report_refuses_a_bad_date_naming_the_flag(pipeline: Pipeline, capsys: Any) -> None:
    code = cli.main(["cost", "--since", "23/11/2026", "--stats-table", pipeline.resolver.refs["StatsTable"]])
    assert code == 2
    assert "--since '23/11/2026' is not a date: give YYYY-MM-DD" in capsys.readouterr().err


# -- the daily budget ---------------------------------------------------------------------------


def test_fifty_concurrent_submits_against_a_budget_for_ten_create_exactly_ten(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a daily budget of 10 units, and 50 jobs each estimated at 1 unit
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="10")
    ids = [f"budget-{i:02}" for i in range(50)]
    # When all 50 are handled at once
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda j: handle_job_message(job_message(j), f"m-{j}", deps, owner=f"w-{j}"), ids))
    # Then exactly 10 tasks were created and 40 jobs wait in QUEUED for the budget, none failed or dead-lettered
    assert Counter(r.outcome for r in results) == {Outcome.SUBMITTED: 10, Outcome.HELD: 40}
    assert pipeline.sim.stats()["creates"]["accepted"] == 10
    jobs = [pipeline.store.get(j) for j in ids]
    held = [j for j in jobs if j.state is JobState.QUEUED]
    assert len(held) == 40 and {j.held_for for j in held} == {HELD_FOR_BUDGET}
    assert all(j.reserved_units is None for j in held)
    assert all("daily budget reached" in r.detail for r in results if r.outcome is Outcome.HELD)
    assert pipeline.dead_letters() == []
    waiting = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert int(waiting["ApproximateNumberOfMessagesDelayed"]) == 40  # each held message comes back later
    ledger = ledger_of(pipeline)
    assert ledger.reserved(day_of()) == 10
    # When Kling's charges for the ten become known (half the estimate each)
    confirm_concurrently(completion, [j.job_id for j in jobs if j.state is not JobState.QUEUED])
    # Then the day's counter ends equal to the sum of what was charged
    charged = pipeline.sim.stats()["units_charged_total"]
    assert charged == 10 * HALF_UNIT
    assert ledger.reserved(day_of()) == charged


def test_a_held_job_goes_the_next_day_on_that_days_budget(pipeline: Pipeline) -> None:
    # Given a budget of 2 units, filled today by two jobs, and a third held
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="2")
    now = datetime.now(UTC).timestamp()
    for job_id in ("day-1", "day-2"):
        assert handle_job_message(job_message(job_id), f"m-{job_id}", deps, owner="w").outcome is Outcome.SUBMITTED
    assert handle_job_message(job_message("day-3"), "m-day-3", deps, owner="w").outcome is Outcome.HELD
    # When its message comes back after midnight (UTC)
    tomorrow = replace(deps, clock=lambda: now + 86_400)
    result = handle_job_message(job_message("day-3"), "m-day-3-again", tomorrow, owner="w")
    # Then it is submitted on the next day's budget, and today's counter is untouched
    assert result.outcome is Outcome.SUBMITTED
    job = pipeline.store.get("day-3")
    assert (job.reserved_day, job.reserved_units, job.held_for) == (day_of(now + 86_400), 1.0, None)
    ledger = ledger_of(pipeline)
    assert (ledger.reserved(day_of(now)), ledger.reserved(day_of(now + 86_400))) == (2.0, 1.0)


def test_a_held_job_goes_as_soon_as_the_budget_is_raised(pipeline: Pipeline) -> None:
    # Given a budget of 1 unit: one job submitted, the next held
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="1")
    assert handle_job_message(job_message("raise-1"), "m-1", deps, owner="w").outcome is Outcome.SUBMITTED
    held = handle_job_message(job_message("raise-2"), "m-2", deps, owner="w")
    assert held.outcome is Outcome.HELD and held.delay_s <= 900
    # When the operator raises DailyBudgetUnits (a new configuration: a cold start) and the message comes back
    raised = submit_deps(pipeline, DAILY_BUDGET_UNITS="2")
    # Then the job is submitted the same day
    assert handle_job_message(job_message("raise-2"), "m-2-again", raised, owner="w").outcome is Outcome.SUBMITTED
    assert pipeline.sim.stats()["creates"]["accepted"] == 2


def test_a_job_larger_than_the_whole_budget_fails_naming_its_estimate_and_the_budget(pipeline: Pipeline) -> None:
    # Given a daily budget of 1 unit, and a pro job the table estimates at 2
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="1")
    # When it is submitted
    result = handle_job_message(job_message("too-big", mode="pro"), "m", deps, owner="w")
    # Then it fails at once, saying why, instead of waiting for a budget it can never fit
    assert (result.outcome, result.error) == (Outcome.FAILED, BUDGET_TOO_SMALL)
    job = pipeline.store.get("too-big")
    assert (job.state, job.error_code) == (JobState.FAILED, BUDGET_TOO_SMALL)
    assert "estimated at 2 units, more than the whole daily budget of 1 (DailyBudgetUnits)" in (job.error_message or "")
    # And nothing was created, reserved or dead-lettered
    assert pipeline.sim.stats()["creates"]["accepted"] == 0
    assert ledger_of(pipeline).reserved(day_of()) == 0
    assert pipeline.dead_letters() == []


def test_a_succeed_without_a_video_turns_its_reservation_into_the_charge(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a budget, and a job whose task Kling ends `succeed` with no video (charged 0.5 units)
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="5")
    assert handle_job_message(job_message("no-video"), "m", deps, owner="w").outcome is Outcome.SUBMITTED
    assert ledger_of(pipeline).reserved(day_of()) == 1.0
    pipeline.sim.configure(succeed_without_videos=True)
    # When Kling's callback is confirmed
    confirm(completion, "no-video")
    # Then the job failed for the missing video, and the day's budget holds the charge, not the estimate
    job = pipeline.store.get("no-video")
    assert (job.state, job.error_code) == (JobState.FAILED, "KLING_NO_VIDEO")
    assert ledger_of(pipeline).reserved(day_of()) == HALF_UNIT


def test_a_charge_kling_does_not_give_keeps_the_reservation(completion: Completion) -> None:
    pipeline = completion.pipeline
    # Given a budget, and a job whose finished task Kling answers without final_unit_deduction
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="5")
    assert handle_job_message(job_message("no-units"), "m", deps, owner="w").outcome is Outcome.SUBMITTED
    pipeline.sim.configure(omit_unit_deduction=True)
    # When its `succeed` is confirmed
    confirm(completion, "no-units")
    completion.wait_for_execution("no-units")
    # Then the reservation stays (unknown is not zero), and no charge of 0 was counted
    assert pipeline.store.get("no-units").state in (JobState.DOWNLOADING, JobState.COMPLETED)
    assert ledger_of(pipeline).reserved(day_of()) == 1.0
    assert ledger_of(pipeline).costs(today(), today()) == []


def test_an_account_error_while_reconciling_keeps_the_reservation_of_a_create_that_may_be_billed(
    pipeline: Pipeline,
) -> None:
    # Given a budget, and a job whose create Kling made (and bills) but whose answer was lost
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="5")
    pipeline.sim.configure(create_lost_answer_rate=1.0)
    assert handle_job_message(job_message("lost-answer"), "m-1", deps, owner="w").outcome is Outcome.REQUEUED
    assert pipeline.tasks_for("lost-answer") == 1 and pipeline.store.get("lost-answer").needs_reconcile
    # When the message comes back and Kling refuses our account while the job looks for its task
    refusing = KlingClient(pipeline.sim.base_url, ACCESS_KEY, "not-the-secret-key-" * 3)
    refused = replace(deps, kling_client=lambda: refusing)
    result = handle_job_message(job_message("lost-answer"), "m-2", refused, owner="w")
    # Then the job is parked, still holding its reservation: the task Kling made may be billed
    assert result.outcome is Outcome.PARKED
    job = pipeline.store.get("lost-answer")
    assert job.state is JobState.QUEUED and job.needs_reconcile and job.reserved_units == 1.0
    assert ledger_of(pipeline).reserved(day_of()) == 1.0


def test_a_refused_create_gives_its_reservation_back(pipeline: Pipeline) -> None:
    # Given a budget, and a job Kling refuses for its content (1301: no task made)
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="5")
    # When it is submitted
    result = handle_job_message(job_message("refused", prompt="a [[reject]] video"), "m", deps, owner="w")
    # Then the job failed with Kling's reason and the day's budget holds nothing for it
    assert result.outcome is Outcome.FAILED and result.kling_code == 1301
    assert pipeline.store.get("refused").state is JobState.FAILED
    assert ledger_of(pipeline).reserved(day_of()) == 0


def test_a_used_up_resource_pack_parks_the_job_and_releases_its_reservation(pipeline: Pipeline) -> None:
    # Given Kling's resource pack has 0.5 units left: one std 5 s video
    pipeline.sim.configure(unit_budget=HALF_UNIT)
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="10")
    assert handle_job_message(job_message("pack-1"), "m-1", deps, owner="w").outcome is Outcome.SUBMITTED
    # When the next job's create is refused with 1102 (resource pack used up)
    result = handle_job_message(job_message("pack-2"), "m-2", deps, owner="w")
    # Then the job is parked, not failed: QUEUED, its message in the DLQ with the fix
    assert (result.outcome, result.kling_code) == (Outcome.PARKED, 1102)
    job = pipeline.store.get("pack-2")
    assert job.state is JobState.QUEUED and job.reserved_units is None
    (letter,) = pipeline.dead_letters()
    reason = letter["MessageAttributes"]["failure_reason"]["StringValue"]
    assert "1102" in reason and "top up the Kling account" in reason and "dlq --redrive" in reason
    assert json.loads(letter["Body"])["job_id"] == "pack-2"
    # And only the created task's reservation is held
    assert ledger_of(pipeline).reserved(day_of()) == 1.0


# -- the account ----------------------------------------------------------------------------------


def test_the_poller_publishes_the_remaining_units_the_alarm_watches(completion: Completion, capsys: Any) -> None:
    pipeline = completion.pipeline
    # Given a resource pack of 100 units, three tasks under way (Kling deducts at the create)
    pipeline.sim.configure(unit_budget=100)
    for job_id in ("pack-a", "pack-b", "pack-c"):
        submitted(completion, job_id)
    capsys.readouterr()
    # When the poller runs, and runs again within AccountCheckSeconds
    poller = completion.poller(ACCOUNT_CHECK_S="600")
    report = completion.poll(poller)
    again = completion.poll(poller)
    # Then Kling's account costs were read once, and what is left published as the alarm expects it
    assert (report["remaining_units"], again["remaining_units"]) == (100 - 3 * HALF_UNIT, None)
    assert pipeline.sim.stats()["calls"].get("GET account/costs") == 1
    published = [
        (sorted(record["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]), record["RemainingUnits"])
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "RemainingUnits" in (record := json.loads(line))
    ]
    assert (["service"], [98.5]) in published  # RemainingUnitsAlarm: dimension service only
    assert (["pack", "service"], [98.5]) in published  # and per pack


def test_jobs_ended_for_the_budget_never_touch_the_queue_dlq(completion: Completion) -> None:
    """Held jobs are re-sent, never received over and over: SQS's receive count never reaches the DLQ."""
    pipeline = completion.pipeline
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="1")
    assert handle_job_message(job_message("q-0"), "m-0", deps, owner="w").outcome is Outcome.SUBMITTED
    assert handle_job_message(job_message("q-1"), "m-1", deps, owner="w").outcome is Outcome.HELD
    for attempt in range(6):  # more than MaxReceiveCount
        assert handle_job_message(job_message("q-1"), f"m-{attempt}", deps, owner="w").outcome is Outcome.HELD
    assert job_in(pipeline, "q-1", JobState.QUEUED)
    assert pipeline.store.get("q-1").backpressure_count == 7
    assert pipeline.dead_letters() == []


def test_a_job_too_large_for_the_budget_whose_earlier_create_made_a_task_keeps_that_task(pipeline: Pipeline) -> None:
    # Given a pro job (estimated at 2 units) sent with no budget, whose create Kling made but answered 5000
    pipeline.sim.configure(create_lost_answer_rate=1.0)
    first = handle_job_message(job_message("big-unsettled", mode="pro"), "m", submit_deps(pipeline), owner="w")
    assert first.outcome is not Outcome.SUBMITTED and pipeline.tasks_for("big-unsettled") == 1
    assert pipeline.store.get("big-unsettled").needs_reconcile
    pipeline.sim.configure(create_lost_answer_rate=0.0)
    # When a redeploy sets a daily budget of 1 unit and the job's message comes back
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="1")
    handle_job_message(job_message("big-unsettled", mode="pro"), "m", deps, owner="w")
    # Then the task Kling holds (and bills) is found and recorded, not failed for the job's size
    job = pipeline.store.get("big-unsettled")
    assert job.state in (JobState.SUBMITTED, JobState.PROCESSING) and job.task_id is not None, job.error_message
    assert pipeline.tasks_for("big-unsettled") == 1


def test_an_account_error_while_looking_up_a_1201_keeps_the_reservation(pipeline: Pipeline) -> None:
    # Given a budget, and a create answered 1201 (which may mean Kling already holds our task), after which
    # the look-up by external id meets an account error (arrears)
    deps = submit_deps(pipeline, DAILY_BUDGET_UNITS="5")
    pipeline.sim.configure(force_create_errors=[1201], force_lookup_errors=[1101])
    # When the submit path takes the job
    result = handle_job_message(job_message("lookup-arrears"), "m", deps, owner="w")
    # Then the job is parked for the operator, and its reservation stays (Kling may bill a task of it)
    assert result.outcome is Outcome.PARKED, result.detail
    job = pipeline.store.get("lookup-arrears")
    assert job.state is JobState.QUEUED
    assert ledger_of(pipeline).reserved(day_of()) == 1.0
