"""The poller asks Kling about many jobs at once (kling_pipeline/task_lookups.py), on moto and the
simulator over HTTP: `/tasks` by task ids for the newer design (its batch size halved on Kling's refusal,
and kept), a kind's task list for several legacy jobs and single look-ups for the rest, one failed call
touching only its own jobs; and a run keeps looking while live jobs are due, and returns at once when
nothing is live. Every callback is lost here: whatever settles a job, the poller did."""

from __future__ import annotations

import time
from typing import Any

from kling_pipeline.adapters import reset_container_state
from kling_pipeline.adapters.kling_client import KlingClient
from kling_pipeline.errors import KlingFinalError
from kling_pipeline.lifecycle import Job, JobState
from kling_pipeline.poller import poller_dependencies, run_poller
from kling_pipeline.settings import PollerSettings
from kling_pipeline.task_lookups import batch_sizes, tasks_of
from tests.integration.test_kling_newer_design import api_key, store_credentials
from tests.support.scenarios import ACCESS_KEY, SECRET_KEY, Completion, as_callback_body, job_in, kling_task, submitted


def queries(completion: Completion) -> int:
    return int(completion.pipeline.sim.stats()["kling_queries"])


def tasks_calls(completion: Completion) -> int:
    """GET /tasks calls, as the simulator counts them."""
    return sum(n for name, n in completion.pipeline.sim.stats()["calls"].items() if name.startswith("GET tasks"))


def with_api_key(completion: Completion) -> KlingClient:
    pipeline = completion.pipeline
    store_credentials(pipeline, api_key=api_key(pipeline), access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return KlingClient(pipeline.sim.base_url, ACCESS_KEY, SECRET_KEY, api_key=api_key(pipeline))


def newer_jobs(completion: Completion, prefix: str, n: int) -> list[Job]:
    return [submitted(completion, f"{prefix}-{i}", model="kling-3.0", duration=5, resolution="1080p") for i in range(n)]


def finished_at_kling(completion: Completion, jobs: list[Job]) -> None:
    """Kling has finished every job's task (asked with the legacy look-up, or waited for)."""
    for job in jobs:
        if job.model_name and job.model_name.startswith("kling-v"):
            kling_task(completion, job.kind, job.task_id, "succeed")
    if any(not (j.model_name or "").startswith("kling-v") for j in jobs):
        time.sleep(0.5)  # newer-design tasks: 30-90 s of Kling's time at 600x
    time.sleep(1.2)  # past their first poll (ExpectedStdSeconds is 1 s here)


def test_one_call_answers_every_newer_design_job_of_a_run(completion: Completion) -> None:
    # Given six kling-3.0 jobs whose tasks Kling has finished, their callbacks lost
    with_api_key(completion)
    jobs = newer_jobs(completion, "batch", 6)
    finished_at_kling(completion, jobs)
    before = queries(completion)
    # When the poller runs once
    report = completion.poll(completion.poller())
    # Then one GET /tasks answered all six, and each job moved on from it
    assert queries(completion) - before == report["kling_queries"] == 1, report
    assert report["kling_gets"] == 6
    for job in jobs:
        assert job_in(completion.pipeline, job.job_id, JobState.DOWNLOADING, JobState.COMPLETED)


def test_a_refused_batch_size_is_halved_and_remembered(completion: Completion) -> None:
    # Given five newer-design tasks and a Kling that takes at most two ids a call
    kling = with_api_key(completion)
    jobs = newer_jobs(completion, "halve", 5)
    completion.pipeline.sim.configure(tasks_max_ids=2)
    batch_sizes.forget()
    before = queries(completion)
    # When they are asked about in batches of five
    first = tasks_of(kling, jobs, batch_size=5, page_budget=2)
    # Then the refused call was halved (5 -> 2), and every job answered
    assert first.calls == 1 + 3 and queries(completion) - before == 4
    assert all(first.answers[job.job_id].task_id == job.task_id for job in jobs)  # type: ignore[union-attr]
    # And the next questions of this container go in twos from the start: no refusal again
    again = tasks_of(kling, jobs, batch_size=5, page_budget=2)
    assert again.calls == 3 and batch_sizes.current(5) == 2
    reset_container_state()
    assert batch_sizes.current(5) == 5  # a new container starts from the setting


def test_legacy_jobs_are_found_in_their_kinds_list_and_the_rest_one_by_one(completion: Completion) -> None:
    # Given three legacy text2video jobs Kling has finished (an API key too: legacy tasks are not in /tasks)
    kling = with_api_key(completion)
    jobs = [submitted(completion, f"legacy-{i}") for i in range(3)]
    finished_at_kling(completion, jobs)
    # and a fourth whose recorded task Kling does not have in its list
    ghost = jobs[0].model_copy(update={"job_id": "ghost", "task_id": "no-such-task"})
    before, tasks_before = queries(completion), tasks_calls(completion)
    # When they are asked about with a budget of one list page
    found = tasks_of(kling, [*jobs, ghost], batch_size=50, page_budget=1)
    # Then one page answered the three, one look-up the fourth (Kling: task not found); /tasks never asked
    assert found.calls == 2 and queries(completion) - before == 2 and tasks_calls(completion) == tasks_before
    assert [found.answers[j.job_id].task_status for j in jobs] == ["succeed"] * 3  # type: ignore[union-attr]
    assert isinstance(found.answers["ghost"], KlingFinalError)
    # When the page budget is spent (none)
    spent = tasks_of(kling, jobs, batch_size=50, page_budget=0)
    # Then each is asked about alone
    assert spent.calls == 3 and all(spent.answers[j.job_id].task_id == j.task_id for j in jobs)  # type: ignore[union-attr]


def test_a_run_settles_legacy_and_newer_jobs_with_a_call_for_each_pool(completion: Completion) -> None:
    # Given three legacy and two newer-design jobs Kling has finished, on a deployment with an API key
    with_api_key(completion)
    legacy = [submitted(completion, f"pool-l{i}") for i in range(3)]
    newer = newer_jobs(completion, "pool-n", 2)
    finished_at_kling(completion, legacy + newer)
    before = queries(completion)
    # When the poller runs once
    report = completion.poll(completion.poller())
    # Then the legacy tasks were found in their kind's list (not in /tasks), the newer in /tasks: two calls
    assert queries(completion) - before == report["kling_queries"] == 2, report
    for job in legacy + newer:
        assert job_in(completion.pipeline, job.job_id, JobState.DOWNLOADING, JobState.COMPLETED)


def test_a_failed_batch_leaves_the_other_batches_jobs_answered(completion: Completion) -> None:
    # Given four newer-design tasks asked about two a call, one of them recorded with an id Kling's list
    # form cannot carry
    kling = with_api_key(completion)
    jobs = newer_jobs(completion, "fail", 4)
    broken = jobs[3].model_copy(update={"task_id": "a,b"})
    batch_sizes.forget()
    # When they are asked about
    found = tasks_of(kling, [*jobs[:3], broken], batch_size=2, page_budget=2)
    # Then the first batch's jobs have their tasks, the failed batch's jobs its error, and no other
    assert [found.answers[j.job_id].task_id for j in jobs[:2]] == [j.task_id for j in jobs[:2]]  # type: ignore[union-attr]
    assert all(isinstance(found.answers[j.job_id], ValueError) for j in jobs[2:])


def run_with(completion: Completion, **env: str) -> tuple[Any, list[float]]:
    """One poller run called directly, its time budget and sleep a test clock: each sleep waits for real
    (the jobs' due times are the store's) and spends the budget it slept."""
    completion.poller(**env)
    deps = poller_dependencies(PollerSettings.from_environment())
    budget = [120.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        budget[0] -= seconds
        time.sleep(seconds)

    return run_poller(deps, time_left_s=lambda: budget[0], sleep=sleep), slept


def test_a_run_with_nothing_live_returns_at_once(completion: Completion) -> None:
    # Given no live job
    # When the poller runs, with a minute to keep looking
    report, slept = run_with(completion, POLLER_RUN_S="60")
    # Then it looked once and did not wait
    assert (report.rounds, slept, report.looked_at) == (1, [], 0)


def test_a_run_keeps_looking_while_a_job_is_live(completion: Completion) -> None:
    # Given a job Kling is still working on, due for a poll
    completion.pipeline.sim.configure(generation_min_s=6000, generation_max_s=6000)
    job = submitted(completion, "loop-1")
    time.sleep(1.2)
    # When the poller runs, with three seconds to keep looking and a poll interval of one
    report, slept = run_with(completion, POLLER_RUN_S="3")
    # Then it looked again each interval (at most one apart) and asked Kling again each time it was due
    assert report.rounds >= 2 and slept and all(0 < s <= 1.0 for s in slept), (report, slept)
    assert report.kling_gets >= 2
    assert job_in(completion.pipeline, job.job_id, JobState.SUBMITTED, JobState.PROCESSING)


def test_a_job_seen_running_by_a_callback_rides_along_in_a_call_made_for_its_group(completion: Completion) -> None:
    # Given two legacy text2video jobs: one whose callbacks were all lost (due for its first look)
    completion.pipeline.sim.configure(generation_min_s=600, generation_max_s=600)
    lost = submitted(completion, "ride-lost")
    # and one whose callback showed it running (due on its own only once nearly every such job has ended
    # and a long wait for its callbacks has passed)
    completion.pipeline.resolver.parameters["CallbackWaitSeconds"] = "30"
    schedule = completion.pipeline.resolver.function_environment("CallbackFunction")["POLL_SCHEDULE"]
    completion.reconfigure("CallbackFunction", POLL_SCHEDULE=schedule)
    seen = submitted(completion, "ride-seen")
    running = kling_task(completion, seen.kind, seen.task_id, "processing")
    answer = completion.callback("ride-seen", as_callback_body(running))
    assert answer["statusCode"] == 200, answer
    seen = completion.pipeline.store.get("ride-seen")
    assert seen.state is JobState.PROCESSING and (seen.next_poll_at or 0) > time.time() + 20
    # and Kling has finished both, its final callbacks lost
    finished_at_kling(completion, [lost, seen])
    before = queries(completion)
    # When the poller runs once (only the first job due)
    report = completion.poll(completion.poller())
    # Then one page of the kind's list answered both: the second job's end noticed with the first's
    assert queries(completion) - before == report["kling_queries"] == 1, report
    assert report["pulled_forward"] == 1
    for job in (lost, seen):
        assert job_in(completion.pipeline, job.job_id, JobState.DOWNLOADING, JobState.COMPLETED)


def test_once_a_final_callback_is_found_lost_jobs_seen_running_are_asked_about_too(completion: Completion) -> None:
    # Given a newer-design job whose callbacks were all lost
    with_api_key(completion)
    completion.pipeline.sim.configure(generation_min_s=600, generation_max_s=600)
    lost = newer_jobs(completion, "loss-a", 1)[0]
    # and a legacy job whose callback showed it running (not due on its own for a long while)
    completion.pipeline.resolver.parameters["CallbackWaitSeconds"] = "30"
    schedule = completion.pipeline.resolver.function_environment("CallbackFunction")["POLL_SCHEDULE"]
    completion.reconfigure("CallbackFunction", POLL_SCHEDULE=schedule)
    seen = submitted(completion, "loss-b")
    running = kling_task(completion, seen.kind, seen.task_id, "processing")
    assert completion.callback("loss-b", as_callback_body(running))["statusCode"] == 200
    # and Kling has ended both, more than a poll interval ago, their final callbacks lost
    kling_task(completion, seen.kind, seen.task_id, "succeed")
    time.sleep(2.5)
    # When the poller runs (once: one pass)
    report = completion.poll(completion.poller())
    # Then the first job's end, found a while after Kling's, shows callbacks are being lost: the job seen
    # running was asked about too, and moved on (a call for each: /tasks, then the legacy look-up)
    assert report["kling_queries"] == 2 and report["resolved_by_poll"] == 2, report
    for job in (lost, seen):
        assert job_in(completion.pipeline, job.job_id, JobState.DOWNLOADING, JobState.COMPLETED)
