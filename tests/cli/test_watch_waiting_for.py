"""`kling-pipeline watch` says what each live job waits for, from its record: Kling generating (and about
how long is left), a Kling slot (in its pool's line), the daily budget. And `list --stuck` with nothing
stuck says so instead of printing an empty table. Against `local up` at Kling's real pace, as a newcomer runs it."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from tests.cli.running import cli, local_up, project

GENERATING = re.compile(r"Kling generating \(~\d+ s left\)")
IN_LINE = "waiting for a Kling slot (in "


def watch_until(root: Path, done: Callable[[str], bool], within_s: float = 60) -> tuple[dict[str, str], str]:
    """`watch --once` every second until `done` holds for the live jobs' rows (or the time is up): the
    rows by job id, and the whole screen last seen."""
    deadline = time.monotonic() + within_s
    rows: dict[str, str] = {}
    seen = ""
    while time.monotonic() < deadline:
        watch = cli(root, "watch", "--once", env={**os.environ, "COLUMNS": "200"})
        assert watch.returncode == 0 and "Traceback" not in watch.stderr, watch.stderr
        seen = watch.stdout
        rows = {m.group(0): line for line in seen.splitlines() if (m := re.search(r"watch-\d", line))}
        if done(" ".join(rows.values())):
            break
        time.sleep(1)
    return rows, seen


def test_watch_shows_what_each_live_job_waits_for(tmp_path: Path) -> None:
    root = project(tmp_path)
    # Given `local up` at Kling's real pace (five tasks at once), with a budget of six jobs a day
    with local_up(root, "--param", "DailyBudgetUnits=6"):
        # When eight jobs are submitted
        for number in range(1, 9):
            submitted = cli(root, "submit", "--prompt", f"a red fox, take {number}", "--job-id", f"watch-{number}")
            assert submitted.returncode == 0, submitted.stderr
        # Then `watch --once` soon lists them with what each waits for: five generate at Kling (its five
        # slots), the others wait in the pool's line
        rows, seen = watch_until(root, lambda texts: len(GENERATING.findall(texts)) == 5 and texts.count(IN_LINE) == 3)
        assert sorted(rows) == [f"watch-{n}" for n in range(1, 9)], seen
        texts = " ".join(rows.values())
        assert len(GENERATING.findall(texts)) == 5, seen
        assert texts.count(IN_LINE) == 3, seen
        # And once slots free, a job handed a slot past the day's budget gives it back and says why
        rows, seen = watch_until(root, lambda texts: "queued: daily budget reached" in texts, within_s=150)
        assert "queued: daily budget reached" in " ".join(rows.values()), seen
        # And `list --stuck` (nothing has waited 15 minutes) says nothing is stuck
        listing = cli(root, "list", "--stuck")
        assert listing.returncode == 0 and "nothing stuck" in listing.stdout, listing.stdout
