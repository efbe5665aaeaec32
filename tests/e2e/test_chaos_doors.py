"""One door row of the fault-injection suite through the runner (`make chaos` runs every door row; the 60-job
slice make test runs stays on Kling's faults): the row's jobs go through fal.ai's door, and its figures come
from the fal simulator (its requests per job's webhook URL, its videos' checksums), not from Kling's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.chaos.faults import fault_matrix, slice_matrix
from tests.support.template import ROOT

ROW = "fal: answers lost, webhooks late and repeated"


def test_the_door_rows_stay_out_of_the_slice_make_test_runs() -> None:
    # Given the fault matrix, with a row per door and its faults
    rows = fault_matrix("127.0.0.1:9")
    doors = {row.provider for row in rows} - {"kling"}
    # Then every door has its rows in make chaos, and none is in the slice make test runs
    assert doors == {"fal", "replicate", "acedata"}
    assert not [row.name for row in slice_matrix(rows) if row.provider != "kling"]


def test_a_fal_row_through_the_runner_is_measured_from_the_fal_simulator(tmp_path: Path) -> None:
    # When ten jobs run through the fal row alone (its own stack, its report written aside)
    out = tmp_path / "chaos-fal.json"
    command = [sys.executable, "-m", "bench", "chaos", "--jobs", "10", "--row", ROW, "--out", str(out)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.exists(), finished.stdout[-3000:] + finished.stderr[-3000:]
    report = json.loads(out.read_text())
    [row] = report["rows"]
    where = f"{row['row']}: {row['problems']}"
    # Then every job went through fal's door: fal made exactly one request per job, none twice
    assert row["provider"] == "fal" and row["jobs"] == 10, where
    assert row["kling_tasks"] == row["expected_tasks"] == 10, where
    assert row["double_creates"] == 0 and row["lost"] == 0, where
    # and every completed job's object in S3 hashes to the video fal served; no paid video was left unstored
    assert row["completed"] > 0 and row["s3_verified"] == row["completed"], where
    assert row["outcome_not_klings"] == 0 and row["unsettled_paid"] == 0, where
    assert row["ok"], where
    # and the fal simulator's faults happened (every result's first fetch a 504), counted from it, not Kling
    assert row["fault_counts"].get("results_504", 0) >= row["completed"], where
    assert report["door_totals"]["fal"]["creates"] == 10
    assert report["simulator_totals"]["creates_accepted"] == 0
