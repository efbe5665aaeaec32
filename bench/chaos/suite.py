"""The fault-injection suite (`make chaos`; a 60-job slice runs in `make test`).

One local stack (template.yaml in moto, the real functions, the Kling simulator) takes a batch of jobs
per row of a fault matrix — each fault alone, then all together — and every figure is computed from
what the pipeline cannot embellish: the simulator's own counts (tasks made per external_task_id, GETs
per task, the checksum of the video it served), the objects in S3 and their bytes, the DLQ's messages.
The pipeline's job records are read only for their state (is the job in a terminal state?) and to
check that a forged or late event changed nothing.

Invariants per row: lost (valid jobs in no terminal state) = 0; Kling tasks per job = 1 (double
creates 0); one S3 object per completed job whose bytes hash to the checksum the job recorded and to
the video Kling served; every poison message in the DLQ with its reason; every forged callback and
every hostile URL refused with no state change; no terminal job changed afterwards.

Rows run one after the other on one stack (the simulator's knobs are account-wide); the simulator's
time scale (`--speed`) turns Kling's minutes into seconds, and the stack's schedules and the
pipeline's expectations of Kling follow it (StackOptions.time_scale), as in `kling-pipeline demo`.
What is AWS time, not Kling's (the submit lease, SQS visibility), is not scaled: the row that kills
the submit function between its create and its DynamoDB write waits out the 120 s lease.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos.faults import BASE_KNOBS, DOOR_BASE_KNOBS, SPEED, Fault, fault_matrix, shard_of, slice_matrix
from bench.chaos.runner import BASE_DEFAULTS, ChaosRun, RowResult, _defaults
from bench.chaos.saboteurs import Drips, Trap
from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]
CHAOS_JSON = ROOT / "bench" / "chaos.json"


def allot(faults: list[Fault], total: int, least: int = 2) -> list[int]:
    """Jobs per row: `total` shared by weight (at least `least` each), the remainder to the heaviest rows."""
    weights = sum(f.weight for f in faults)
    counts = [max(least, int(total * f.weight / weights)) for f in faults]
    heaviest = sorted(range(len(faults)), key=lambda i: -faults[i].weight)
    n = 0
    while sum(counts) < total:
        counts[heaviest[n % len(heaviest)]] += 1
        n += 1
    return counts


def run_chaos(
    total_jobs: int = 500,
    *,
    slice_only: bool = False,
    only: Iterable[str] | None = None,
    shard: tuple[int, int] = (1, 1),
    project_root: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from kling_local.acedata_sim import AceDataSimConfig
    from kling_local.fal_sim import FalSimConfig
    from kling_local.replicate_sim import ReplicateSimConfig
    from kling_local.sim import SimConfig
    from kling_local.stack import LocalStack, StackOptions

    BASE_DEFAULTS.update(_defaults())
    trap = Trap()
    faults = fault_matrix(trap.address)
    if slice_only:
        faults = slice_matrix(faults)
    if only:
        wanted = set(only)
        faults = [f for f in faults if f.name in wanted]
    counts = allot(faults, total_jobs)
    index, shards = shard
    shard_numbers = shard_of(faults, shards)
    picked = [(f, n) for f, n, number in zip(faults, counts, shard_numbers, strict=True) if number == index]
    faults, counts = [f for f, _ in picked], [n for _, n in picked]
    config = SimConfig(
        access_key=f"chaos-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        seed=15,
        fetch_image_urls=True,
        **BASE_KNOBS,
    )
    root = project_root or ROOT
    drips = Drips() if any(f.drip for f in faults) else None
    overrides = {"ImageUrlHosts": f"*,http://{drips.image.address}"} if drips is not None else {}
    options = StackOptions(
        template_path=ROOT / "template.yaml",
        project_root=root,
        sim_config=config,
        clock_speed=SPEED,
        time_scale=SPEED,
        max_concurrency=2,
        write_state_file=False,
        parameter_overrides=overrides,
        # The doors' simulators at the stack's speed, their keys fresh (each door enabled by them).
        fal_sim_config=FalSimConfig(
            api_key=f"chaos-fal-{secrets.token_hex(8)}", seed=15, speed=SPEED, **DOOR_BASE_KNOBS
        ),
        replicate_sim_config=ReplicateSimConfig(
            api_token=f"r8_chaos_{secrets.token_hex(8)}", seed=15, speed=SPEED, **DOOR_BASE_KNOBS
        ),
        acedata_sim_config=AceDataSimConfig(
            api_token=f"chaos-acedata-{secrets.token_hex(8)}", seed=15, speed=SPEED, **DOOR_BASE_KNOBS
        ),
    )
    started = time.monotonic()
    run_id = datetime.now(UTC).strftime("%H%M%S") + f"s{index}"
    results: list[RowResult] = []
    rows_jobs: list[list[str]] = []
    stack = LocalStack(options).start()
    try:
        run = ChaosRun(stack, trap, run_id, drips)
        try:
            for index, (fault, jobs) in enumerate(zip(faults, counts, strict=True)):
                results.append(run.run_row(index, fault, jobs, log))
                rows_jobs.append(list(run.row_job_ids))
            run._settle(20.0)
            run.recheck(results, rows_jobs)
            sim_stats = stack.simulator.stats()
            door_stats = {name: sim.stats() for name, sim in run.doors.items()}
        finally:
            run.close()
    finally:
        stack.stop()
        trap.close()
        if drips is not None:
            drips.close()
    return {
        "generated_by": "make chaos" if not slice_only else "the make test slice",
        "command": f"python -m bench chaos --jobs {total_jobs}"
        + (" --slice" if slice_only else "")
        + (f" --shard {index}/{shards}" if shards > 1 else ""),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "jobs": sum(counts),
            "speed": SPEED,
            "simulator": {k: v for k, v in BASE_KNOBS.items()},
            "stack": "kling-pipeline local stack (moto in-process, real functions in worker processes, 2 per function)",
            "note": "Kling's times run SPEED times faster; AWS times (submit lease 120 s, SQS visibility) do not",
        },
        "duration_s": round(time.monotonic() - started, 1),
        "trap_hits": trap.hits,
        "kills_missed": run.killer.missed,
        "forgeries_not_counted": run.inconclusive,
        "simulator_totals": {
            "creates_accepted": sim_stats["creates"]["accepted"],
            "creates_refused_by_code": sim_stats["creates"]["refused_by_code"],
            "errors_by_code": sim_stats["errors_by_code"],
            "faults": sim_stats["faults"],
            "callbacks": sim_stats["callbacks"],
            "double_charged_external_ids": sim_stats["double_charged_external_ids"],
        },
        # What each door's simulator did over the run (its counts; the per-job tables left out).
        "door_totals": {
            name: {k: v for k, v in stats.items() if not isinstance(v, dict)} for name, stats in door_stats.items()
        },
        "all_ok": all(r.ok for r in results),
        "rows": [asdict(r) for r in results],
    }
