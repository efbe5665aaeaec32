"""A 60-job slice of the fault-injection suite (`make chaos` runs 500): every fault alone and all together,
less the row that waits out the 120 s submit lease, in two shards at once (each its own local stack and
simulator in its own process), with the invariants asserted per row from the simulator's counts and S3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.template import ROOT


def run_shards(tmp_path: Path, shards: int = 2) -> list[dict[str, Any]]:
    processes = []
    for index in range(1, shards + 1):
        out = tmp_path / f"chaos-{index}.json"
        command = [sys.executable, "-m", "bench", "chaos", "--slice", "--jobs", "60", "--shard", f"{index}/{shards}"]
        processes.append(
            (
                out,
                subprocess.Popen(
                    [*command, "--out", str(out)],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
        )
    reports = []
    for out, process in processes:
        output, _ = process.communicate(timeout=280)
        assert out.exists(), output[-3000:]
        reports.append(json.loads(out.read_text()))
    return reports


def test_sixty_jobs_through_every_fault_lose_none_and_pay_once(tmp_path: Path) -> None:
    # When sixty jobs (and poison messages, forged callbacks, hostile URLs) run through the fault matrix
    reports = run_shards(tmp_path)
    rows = [row for report in reports for row in report["rows"]]
    # Then every row of the matrix ran, "all together" among them
    assert len(rows) >= 20 and any(row["row"].startswith("all together") for row in rows)
    assert sum(row["jobs"] for row in rows) == 60
    for row in rows:
        where = f"{row['row']}: {row['problems']}"
        # no valid job is left in no terminal state, and Kling made no job a second task
        assert row["lost"] == 0, where
        assert row["double_creates"] == 0, where
        # every completed job has one object in S3, with the checksum it recorded and Kling's video's
        assert row["s3_verified"] == row["completed"], where
        # every job ended the way Kling's task did (or refused, where its URL was hostile or expired)
        assert row["outcome_not_klings"] == 0, where
        # every poison message is in the DLQ with its reason; every forgery and hostile URL refused
        assert row["poison_in_dlq_with_reason"] == row["poison_sent"], where
        assert row["forged_refused"] == row["forged_sent"], where
        assert row["hostile_refused"] == row["hostile_sent"], where
        assert row["changed_after_end"] == 0, where
        assert row["ok"], where
    # and the faults really happened: the simulator counted them, the forgeries and poison were sent
    assert sum(row["forged_sent"] for row in rows) > 0
    assert sum(row["poison_sent"] for row in rows) > 0
    assert all(report["trap_hits"] == 0 for report in reports)
    faults = {name for report in reports for name in report["simulator_totals"]["faults"]}
    assert {"outage", "error_burst", "create_answer_lost"} <= faults
