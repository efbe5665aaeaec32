"""`kling-pipeline demo` as a user runs it: its own local stack in its own process, the summary as JSON.

With every callback lost the poller must settle every job; against Kling's worst case (everything its
contract does not promise, at once) no job may be paid for twice or left in no final state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.template import ROOT


def demo(tmp_path: Path, *flags: str) -> dict[str, Any]:
    (tmp_path / "template.yaml").symlink_to(ROOT / "template.yaml")
    for part in ("functions", "layers", "statemachine"):
        (tmp_path / part).symlink_to(ROOT / part)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kling_local.cli",
            "demo",
            "--json",
            "--count",
            "8",
            "--project-root",
            str(tmp_path),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    summary["exit_code"] = result.returncode
    return summary


def test_with_every_callback_lost_the_poller_settles_every_job(tmp_path: Path) -> None:
    # When the demo runs with the simulator dropping every callback
    summary = demo(tmp_path, "--callback-loss", "1.0", "--seed", "4")
    # Then every job completed through a poll, with at most three Kling GETs for any job
    assert summary["lost"] == 0 and summary["completed"] == 8, summary["lost_jobs"]
    assert summary["settled_by"] == {"poll": 8}
    assert summary["kling_gets_max"] <= 3
    # and the summary counts the query calls that took (every one, whatever its design): batched, under two
    # calls a video, where asking each job alone every PollIntervalSeconds until its end takes 2-4 (the
    # 8 jobs span four query groups, one call each per look; that one call answers a whole group is pinned
    # in tests/integration/test_poll_batches.py)
    assert 1 <= summary["kling_queries"] < 2 * 8
    assert summary["exit_code"] == 0


def test_against_klings_worst_case_no_job_is_paid_twice_or_lost(tmp_path: Path) -> None:
    # When the demo runs against everything Kling's contract does not promise
    summary = demo(tmp_path, "--worst-case", "--seed", "7")
    # Then Kling made exactly one task per job (a double charge would show as more creates than jobs),
    # and every job ended (lost callbacks and stranded downloads settled by the poller)
    assert summary["kling_creates"] == summary["jobs"] == 8
    assert summary["double_charged"] == 0
    assert summary["lost"] == 0, summary["lost_jobs"]
    assert summary["completed"] + summary["failed"] == 8
    # and what the pipeline counted as charged (`kling-pipeline cost`) is what Kling charged, though
    # callbacks came twice, late or never
    assert summary["units_counted"] == summary["units_charged"]
    assert summary["exit_code"] == 0


def test_a_daily_budget_holds_jobs_and_the_charges_never_pass_it(tmp_path: Path) -> None:
    # When the demo runs with a daily budget that fits only some of its jobs
    summary = demo(tmp_path, "--daily-budget-units", "5", "--seed", "3")
    # Then the rest wait in QUEUED for the next day (counted, not lost), Kling charged no more than the
    # budget, and the pipeline's ledger (what `kling-pipeline cost` reports) says what Kling charged
    assert summary["held_for_budget"] >= 1 and summary["lost"] == 0, summary["lost_jobs"]
    assert summary["completed"] + summary["failed"] + summary["held_for_budget"] == 8
    assert summary["kling_creates"] == summary["completed"] + summary["failed"]
    assert 0 < summary["units_charged"] <= 5
    assert summary["units_counted"] == summary["units_charged"]
    assert summary["exit_code"] == 0


def test_through_fal_every_job_completes_once_created_even_with_every_webhook_lost(tmp_path: Path) -> None:
    # When the demo sends its jobs through fal's door, the fal simulator dropping every webhook
    summary = demo(tmp_path, "--provider", "fal", "--count", "4", "--speed", "20", "--callback-loss", "1.0")
    # Then every job completed (the poller looked each one up), none lost
    assert summary["fal_jobs"] == 4 and summary["completed"] == 4, summary["failures"]
    assert summary["lost"] == 0, summary["lost_jobs"]
    assert summary["settled_by"] == {"poll": 4}
    # and fal was asked to create each exactly once (never twice: fal has no idempotency key)
    assert summary["fal_creates"] == 4 and summary["fal_creates_max"] == 1
    assert summary["kling_creates"] == 0
    assert summary["exit_code"] == 0


def test_through_replicate_every_job_completes_once_created_even_with_every_webhook_lost(tmp_path: Path) -> None:
    # When the demo sends its jobs through Replicate's door, the simulator dropping every webhook
    summary = demo(tmp_path, "--provider", "replicate", "--count", "4", "--speed", "20", "--callback-loss", "1.0")
    # Then every job completed through a look-up, none lost, each made once
    assert summary["replicate_jobs"] == 4 and summary["completed"] == 4, summary["failures"]
    assert summary["lost"] == 0 and summary["settled_by"] == {"poll": 4}, summary["lost_jobs"]
    assert summary["replicate_creates"] == 4 and summary["replicate_creates_max"] == 1
    assert summary["exit_code"] == 0


def test_through_acedata_every_job_completes_once_created_even_with_every_callback_lost(tmp_path: Path) -> None:
    # When the demo sends its jobs through AceData's door, the simulator dropping every callback
    summary = demo(tmp_path, "--provider", "acedata", "--count", "4", "--speed", "20", "--callback-loss", "1.0")
    # Then every job completed through the poller's batch look-ups, none lost, each made once
    assert summary["acedata_jobs"] == 4 and summary["completed"] == 4, summary["failures"]
    assert summary["lost"] == 0 and summary["settled_by"] == {"poll": 4}, summary["lost_jobs"]
    assert summary["acedata_creates"] == 4 and summary["acedata_creates_max"] == 1
    assert summary["exit_code"] == 0
