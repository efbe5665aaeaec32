"""The baseline: a naive 10-second polling worker, the simplest integration of Kling's API (a queue and a loop).

It submits jobs up to its concurrency, GETs every active task every 10 s, and when one has succeeded
downloads the video whole (`requests.get(url).content`) and stores it — here with `put_object` into the
same S3 (moto) the pipeline writes to. Its sleep is Kling's 10 s divided by the simulator's speed, the
same time scale the pipeline runs under. A create refused with 1302/1303 is tried again on the next
round (a naive worker would raise; a user's first fix is to retry). Nothing else is added: no callbacks, no
backoff, no persistence.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

POLL_S = 10.0  # its time.sleep(10), in Kling's seconds


@dataclass
class BaselineRun:
    creates: int = 0
    create_refusals: int = 0
    gets: int = 0
    completed: int = 0
    failed: int = 0
    succeed_to_stored_s: list[float] = field(default_factory=list)  # real seconds, Kling's clock to S3's
    stored_at: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0


def run_baseline(
    kling: Any,
    s3: Any,
    bucket: str,
    prompts: list[str],
    *,
    concurrency: int,
    speed: float,
    sample: Any = None,
) -> BaselineRun:
    """The worker's loop, until every job has ended. `kling` is the project's Kling client
    (the JWT and the requests a naive worker makes); `sample()` is called once a round (slot use)."""
    from kling_pipeline.errors import KlingApiError, KlingRetryableError

    run = BaselineRun(started=time.time())
    pending = deque(enumerate(prompts))
    active: dict[str, int] = {}
    http = httpx.Client(timeout=120.0)
    try:
        while pending or active:
            while len(active) < concurrency and pending:
                number, prompt = pending[0]
                try:
                    task = kling.create_task("text2video", {"prompt": prompt, "model_name": "kling-v1"})
                except (KlingRetryableError, KlingApiError):
                    run.create_refusals += 1
                    break
                run.creates += 1
                pending.popleft()
                active[task.task_id] = number
            done = []
            for task_id, number in active.items():
                task = kling.get_task("text2video", task_id)
                run.gets += 1
                if task.task_status == "succeed" and task.first_video is not None:
                    video = http.get(task.first_video.url).content  # a whole-body download
                    s3.put_object(Bucket=bucket, Key=f"baseline/{number}.mp4", Body=video)
                    stored = time.time()
                    assert task.updated_at is not None
                    run.succeed_to_stored_s.append(stored - task.updated_at / 1000)
                    run.stored_at[task_id] = stored
                    run.completed += 1
                    done.append(task_id)
                elif task.task_status == "failed":
                    run.failed += 1
                    done.append(task_id)
            for task_id in done:
                active.pop(task_id)
            if sample is not None:
                sample()
            time.sleep(POLL_S / speed)
    finally:
        http.close()
    run.ended = time.time()
    return run
