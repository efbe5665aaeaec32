"""How long Kling takes, and what it charges, learned from finished jobs: one item per kind, model,
mode and duration in StatsTable, a running mean and mean deviation of the generation time
(exponentially weighted, so the estimate follows Kling when it gets faster or slower) and the units
the latest such task was charged. The poller's first look at a job is set from it (poll_schedule.py); the
daily budget reserves its units (unit_estimates.py).
"""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.kling_task import KlingTask
from kling_pipeline.lifecycle import Job, model_and_mode
from kling_pipeline.observability import logger
from kling_pipeline.poll_schedule import Estimate

WEIGHT = 0.2  # of a new sample in the running figures
CACHE_S = 60.0  # a warm function reads an estimate at most this often


PARTITION = "generation"


def estimate_key(job: Job) -> dict[str, str]:
    model, mode = model_and_mode(job)
    duration = job.request.get("duration", "5") if job.step == 1 else "extend"
    return {"pk": PARTITION, "sk": f"{job.task_kind}#{model}#{mode}#{duration}"}


class GenerationEstimates:
    def __init__(self, table_name: str, *, dynamodb: Any = None) -> None:
        self._table = (dynamodb or aws_clients.resource("dynamodb")).Table(table_name)
        self._cache: dict[str, tuple[float, Estimate | None]] = {}
        self._lock = threading.Lock()

    def expected(self, job: Job) -> Estimate | None:
        """The learned estimate for jobs like `job`; None before any such job has finished."""
        key = estimate_key(job)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key["sk"])
            if cached is not None and cached[0] > now:
                return cached[1]
        item = self._table.get_item(Key=key).get("Item")
        estimate = (
            Estimate(
                float(item["mean_s"]),
                float(item["deviation_s"]),
                int(item["samples"]),
                float(item["units"]) if "units" in item else None,
            )
            if item
            else None
        )
        with self._lock:
            self._cache[key["sk"]] = (now + CACHE_S, estimate)
        return estimate

    def learn(self, job: Job, task: KlingTask) -> None:
        """Fold in how long Kling took for `task` (its own timestamps: created to finished). Best effort:
        two writers at once keep one sample; a failure here never fails the job."""
        if task.created_at is None or task.updated_at is None or task.updated_at <= task.created_at:
            return
        sample = (task.updated_at - task.created_at) / 1000
        key = estimate_key(job)
        units = _units(task.final_unit_deduction)
        try:
            item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
            if item is None:
                mean, deviation, samples = sample, sample / 4, 0
            else:
                old_mean, samples = float(item["mean_s"]), int(item["samples"])
                mean = (1 - WEIGHT) * old_mean + WEIGHT * sample
                deviation = (1 - WEIGHT) * float(item["deviation_s"]) + WEIGHT * abs(sample - old_mean)
                if units is None and "units" in item:
                    units = float(item["units"])
            self._table.put_item(
                Item=key
                | {
                    "mean_s": Decimal(f"{mean:.3f}"),
                    "deviation_s": Decimal(f"{deviation:.3f}"),
                    "samples": samples + 1,
                }
                | ({"units": Decimal(str(units))} if units is not None else {}),
                ConditionExpression="attribute_not_exists(samples) OR samples = :seen",
                ExpressionAttributeValues={":seen": samples},
            )
        except ClientError as exc:
            logger.info("generation estimate not updated", extra={"reason": exc.response.get("Error", {}).get("Code")})
            return
        with self._lock:
            self._cache[key["sk"]] = (time.monotonic() + CACHE_S, Estimate(mean, deviation, samples + 1, units))


def _units(raw: str | None) -> float | None:
    try:
        units = float(raw) if raw else None
    except ValueError:
        return None
    return units if units is not None and math.isfinite(units) and units > 0 else None


@per_container
def generation_estimates(table_name: str) -> GenerationEstimates:
    return GenerationEstimates(table_name)
