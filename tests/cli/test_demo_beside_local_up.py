"""`kling-pipeline demo` beside a running `kling-pipeline local up` from the same folder: the demo's stack
is its own (no state file, its own logs), so the commands keep finding the running stack; a second
`local up` refuses to start over the first; and the demo starts with one note, not a page of warnings."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.running import cli, local_up, project


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line]


def test_a_demo_beside_local_up_keeps_to_its_own_files_and_the_cli_still_finds_the_stack(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "out").mkdir()
    (root / "out" / "an-earlier-run.mp4").write_bytes(b"not this run's")
    with local_up(root) as running:
        state_file = root / ".kling-pipeline" / "local-stack.json"
        assert json.loads(state_file.read_text())["moto_endpoint"] == running.endpoints["moto_endpoint"]
        # When a second `local up` starts from the same folder
        second = cli(root, "local", "up")
        # Then it refuses, saying which stack runs there, and leaves that stack's state file alone
        assert second.returncode == 1, second.stderr
        assert f"a local stack already runs from {root.resolve()}" in second.stderr
        assert json.loads(state_file.read_text())["moto_endpoint"] == running.endpoints["moto_endpoint"]

        # When a small demo runs beside it
        demo = cli(root, "demo", "--count", "3", "--json", "--out", "out/", timeout=300)
        assert demo.returncode == 0, demo.stderr[-3000:]
        summary = json.loads(demo.stdout)
        # Then the running stack's state file is still there, and the CLI still finds that stack
        assert json.loads(state_file.read_text())["moto_endpoint"] == running.endpoints["moto_endpoint"]
        listing = cli(root, "list", "--json")
        assert listing.returncode == 0, listing.stderr
        assert json.loads(listing.stdout) == []  # the demo's jobs were in the demo's own stack
        # And the demo's function logs are its own: none of its jobs is in the running stack's logs
        assert summary["log_dir"] != running.endpoints["log_dir"]
        assert Path(summary["log_dir"]).is_relative_to(root.resolve() / ".kling-pipeline")
        assert "demo-" in (Path(summary["log_dir"]) / "SubmitFunction.log").read_text()
        stack_logs = "".join(p.read_text() for p in Path(running.endpoints["log_dir"]).glob("*.log"))
        assert "demo-" not in stack_logs

    # And the demo copied exactly this run's videos, named by job and kind, with an index of the run
    assert len(summary["copied"]) == summary["completed"] == 3
    index = json.loads(Path(summary["index_file"]).read_text())
    for entry in index["jobs"]:
        assert entry["file"] == f"{entry['job_id']}-{entry['kind']}.mp4" and entry["prompt"]
        assert (root / "out" / entry["file"]).stat().st_size > 1000
    assert sorted(e["file"] for e in index["jobs"]) == sorted(summary["copied"])
    # And neither the demo nor `local up` opened with a warning: one note says what the local stack leaves out
    for stderr in (demo.stderr, "".join(running.stderr)):
        assert warnings_in(stderr) == []
        (line,) = [line for line in stderr.splitlines() if "the local stack leaves out" in line]
        assert line.startswith("note: ") and "what moto cannot create" in line and "CloudWatch::Alarm" in line
