"""Asking Kling about many jobs at once: which calls answer a set of jobs' tasks, and what each job got.

A query costs one call however many tasks it answers, so the poller plans its questions by pool
(docs/architecture.md, "The poller"):

- newer-design tasks: `GET /tasks?task_ids=` (the task ids we recorded), or `?external_task_ids=` for a
  claim whose task may exist unrecorded; `batch_size` ids a call. Kling does not document the most ids
  it takes: a refusal of the batch's size (1201 on a call of several ids) halves it, and the halved size
  is kept for the container's life (`BatchSizes`).
- legacy tasks of one kind, when several jobs of that kind are asked about: the kind's task list, 500 a
  page, newest first, until every job is found or `page_budget` pages are read; then one look-up per
  job still unanswered. Whether legacy tasks appear in `/tasks` is not documented, so they are never
  looked for there.

A call that fails answers its own jobs with its error and no others.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from kling_pipeline.adapters import on_reset
from kling_pipeline.adapters.kling_client import LIST_PAGE_SIZE, KlingClient
from kling_pipeline.capabilities import design_of
from kling_pipeline.errors import KlingApiError, KlingFinalError, KlingShapeError, KlingUnavailableError
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job
from kling_pipeline.observability import logger

ASK_ERRORS = (KlingApiError, KlingUnavailableError, KlingShapeError)
TOO_MANY_IDS = 1201  # the code Kling answers a /tasks call it will not take (the sim: "too many ids")


class NotFound:
    """Kling's answer proves the job has no task (a claim's look-up), or does not show the task asked."""

    def __repr__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND: Final = NotFound()
Answer = KlingTask | Exception | NotFound


@dataclass
class Lookups:
    """What a set of questions got: each job's answer (a job absent here was not asked, for want of
    time or, for a claim, of a batch that could prove anything) and the query calls made."""

    answers: dict[str, Answer] = field(default_factory=dict)
    calls: int = 0


class BatchSizes:
    """The ids a `/tasks` call carries: the setting, or less once Kling refused a batch of that size.
    Kept for the container's life: every run of a warm container asks in batches Kling takes."""

    def __init__(self) -> None:
        self._at_most: int | None = None
        self._lock = threading.Lock()

    def current(self, setting: int) -> int:
        with self._lock:
            return max(1, min(setting, self._at_most or setting))

    def refused(self, size: int) -> int:
        """Kling refused `size` ids in one call: the next calls carry half as many."""
        with self._lock:
            self._at_most = min(self._at_most or size, max(1, size // 2))
            halved = self._at_most
        logger.warning(
            "Kling refused a /tasks call of this many ids: asking in smaller batches from now on",
            extra={"refused": size, "batch_size": halved},
        )
        return halved

    def forget(self) -> None:
        with self._lock:
            self._at_most = None


batch_sizes = BatchSizes()
on_reset(batch_sizes.forget)


def is_new_design(job: Job) -> bool:
    return design_of(job.task_model) == "new"


def pool_of(job: Job) -> str:
    """The jobs one call can answer together: every newer-design task (`/tasks`), or the legacy tasks of
    one kind (its task list)."""
    return "new" if is_new_design(job) else f"legacy:{job.task_kind}"


def tasks_of(
    kling: KlingClient,
    jobs: Sequence[Job],
    *,
    batch_size: int,
    page_budget: int,
    parallelism: int = 1,
    time_left_s: Callable[[], float] | None = None,
) -> Lookups:
    """The tasks of jobs whose task ids are recorded: each job's task, or the error of the call that
    asked about it, or NOT_FOUND (a newer-design task `/tasks` did not show). A job left out for want of
    time (`time_left_s` below one request) has no answer."""
    result = Lookups()
    asking = [job for job in jobs if job.task_id]
    new = [job for job in asking if is_new_design(job)]
    by_kind: dict[str, list[Job]] = defaultdict(list)
    for job in asking:
        if not is_new_design(job):
            by_kind[job.task_kind].append(job)

    def has_time() -> bool:
        return time_left_s is None or time_left_s() > kling.timeout_s

    for batch, answer in batches(kling, "task_ids", [j.task_id or "" for j in new], batch_size, has_time, result):
        for job in [j for j in new if j.task_id in batch]:
            if isinstance(answer, Exception):
                result.answers[job.job_id] = answer
            else:
                result.answers[job.job_id] = next((t for t in answer if t.task_id == job.task_id), NOT_FOUND)
    for kind, jobs_of_kind in by_kind.items():
        if len(jobs_of_kind) > 1:
            found = scan_list(kling, kind, {j.task_id or "": j for j in jobs_of_kind}, page_budget, has_time, result)
            for job in jobs_of_kind:
                if job.task_id in found:
                    result.answers[job.job_id] = found[job.task_id or ""]
    singles = [job for jobs_of_kind in by_kind.values() for job in jobs_of_kind if job.job_id not in result.answers]

    def one(job: Job) -> Answer | None:
        if not has_time():
            return None
        try:
            return kling.get_task(job.task_kind, job.task_id or "", model=job.task_model)
        except ASK_ERRORS as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        for job, single in zip(singles, pool.map(one, singles), strict=True):
            if single is not None:
                result.calls += 1
                result.answers[job.job_id] = single
    return result


def claims_of(
    kling: KlingClient,
    jobs: Sequence[Job],
    *,
    since_ms: Callable[[Job], int],
    batch_size: int,
    page_budget: int,
    time_left_s: Callable[[], float] | None = None,
) -> Lookups:
    """For abandoned claims (SUBMITTING), whose task Kling may hold unrecorded: each job's task under its
    external id (one the job owns: Job.owns_task), NOT_FOUND where the answer proves there is none, or
    the error of its call. A newer-design job's proof is `/tasks` by external ids; a legacy job's, the
    list of its kind read back to `since_ms(job)`. A job these batches cannot settle either way has no
    answer: its own reconciliation asks (claims.reconcile). A job of the deployment's default model (its
    design not known here) is left to that too."""
    result = Lookups()

    def has_time() -> bool:
        return time_left_s is None or time_left_s() > kling.timeout_s

    new = [job for job in jobs if is_new_design(job) and kling.serves_new_design]
    by_kind: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.task_model is not None and not is_new_design(job):
            by_kind[job.task_kind].append(job)
    ids = [job.external_task_id for job in new]
    for batch, answer in batches(kling, "external_task_ids", ids, batch_size, has_time, result):
        for job in [j for j in new if j.external_task_id in batch]:
            if isinstance(answer, Exception):
                result.answers[job.job_id] = answer
            else:
                result.answers[job.job_id] = next((t for t in answer if job.owns_task(t)), NOT_FOUND)
    for kind, jobs_of_kind in by_kind.items():
        if len(jobs_of_kind) < 2:
            continue
        wanted = {job.external_task_id: job for job in jobs_of_kind}
        seen_back_to = scan_claims(kling, kind, wanted, since_ms, page_budget, has_time, result)
        for job in jobs_of_kind:
            if job.job_id not in result.answers and seen_back_to is not None and seen_back_to < since_ms(job):
                result.answers[job.job_id] = NOT_FOUND  # every task of the kind since its attempt was seen
    return result


def batches(
    kling: KlingClient,
    by: str,
    ids: list[str],
    batch_size: int,
    has_time: Callable[[], bool],
    result: Lookups,
) -> list[tuple[list[str], list[KlingTask] | Exception]]:
    """`/tasks` calls for `ids`, each answered by its tasks or its error; a refused size is halved (and
    remembered) and the same ids asked again in smaller batches."""
    answered: list[tuple[list[str], list[KlingTask] | Exception]] = []
    pending = list(dict.fromkeys(ids))
    while pending and has_time():
        size = batch_sizes.current(batch_size)
        batch, rest = pending[:size], pending[size:]
        result.calls += 1
        try:
            tasks = kling.tasks_by_ids(batch) if by == "task_ids" else kling.tasks_by_external_ids(batch)
        except KlingFinalError as exc:
            if exc.code == TOO_MANY_IDS and len(batch) > 1:
                batch_sizes.refused(len(batch))
                continue  # the same ids, in smaller batches
            answered.append((batch, exc))
        except (*ASK_ERRORS, ValueError) as exc:  # ValueError: an id Kling's list form cannot carry
            answered.append((batch, exc))
        else:
            answered.append((batch, tasks))
        pending = rest
    return answered


def scan_list(
    kling: KlingClient,
    kind: str,
    wanted: dict[str, Job],
    page_budget: int,
    has_time: Callable[[], bool],
    result: Lookups,
) -> dict[str, KlingTask]:
    """The kind's task list, a page at a time, until every wanted task id is found, the list ends, it
    reaches back before the oldest job was submitted, or the budget is spent. A page that fails ends the
    scan (its jobs are asked one by one)."""
    found: dict[str, KlingTask] = {}
    oldest_ms = min(((job.submitted_at or 0) - 60) * 1000 for job in wanted.values())
    for page in range(1, page_budget + 1):
        if len(found) == len(wanted) or not has_time():
            break
        result.calls += 1
        try:
            items = kling.list_tasks(kind, page_num=page, page_size=LIST_PAGE_SIZE)
        except ASK_ERRORS as exc:
            logger.info("a page of the task list gave no answer", extra={"kind": kind, "error": str(exc)[:200]})
            break
        found.update({task.task_id: task for task in items if task.task_id in wanted})
        if len(items) < LIST_PAGE_SIZE or min((t.created_at or 0) for t in items) < oldest_ms:
            break
    return found


def scan_claims(
    kling: KlingClient,
    kind: str,
    wanted: dict[str, Job],
    since_ms: Callable[[Job], int],
    page_budget: int,
    has_time: Callable[[], bool],
    result: Lookups,
) -> int | None:
    """The kind's task list for claims, by external id (the task a job owns); the creation time (ms) back
    to which every task of the kind was seen (0: the whole list), or None if no page was read."""
    seen_back_to: int | None = None
    for page in range(1, page_budget + 1):
        unanswered = [job for job in wanted.values() if job.job_id not in result.answers]
        if not unanswered or not has_time():
            break
        if seen_back_to is not None and seen_back_to < min(since_ms(job) for job in unanswered):
            break  # every unanswered job's proof is in
        result.calls += 1
        try:
            items = kling.list_tasks(kind, page_num=page, page_size=LIST_PAGE_SIZE)
        except ASK_ERRORS as exc:
            logger.info("a page of the task list gave no answer", extra={"kind": kind, "error": str(exc)[:200]})
            break
        for task in items:
            job = wanted.get(task.task_info.external_task_id or "")
            if job is not None and job.job_id not in result.answers and job.owns_task(task):
                result.answers[job.job_id] = task
        if len(items) < LIST_PAGE_SIZE:
            return 0
        seen_back_to = min((t.created_at or 0) for t in items)
    return seen_back_to
