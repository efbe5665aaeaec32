"""`kling-pipeline sim` alone, and `kling-pipeline local up --kling-url http://127.0.0.1:PORT` pointed at it:
the stack fetches the simulator's videos from its plain-http CDN on its own port, so a job completes
(before, the task was made and billed and its download refused: "only https video URLs are fetched")."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.cli.running import CLI, cli, local_up, project


def test_local_up_against_the_simulator_run_alone_completes_a_job(tmp_path: Path) -> None:
    root = project(tmp_path)
    keys = root / "sim-keys.json"
    keys.write_text(json.dumps({"access_key": "ak", "secret_key": "sk-for-the-simulator"}))
    sim = subprocess.Popen(
        [*CLI, "sim", "--port", "0", "--access-key", "ak", "--secret-key", "sk-for-the-simulator", "--speed", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert sim.stdout is not None
    out = sim.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    try:
        ready = lines.get(timeout=60)
        kling_url = ready.split(" ready at ", 1)[1].split(" ", 1)[0]
        assert kling_url.startswith("http://127.0.0.1:")
        # Given the local stack pointed at that simulator by URL
        with local_up(root, "--kling-url", kling_url, "--kling-keys-file", str(keys), "--out", str(tmp_path / "kept")):
            # When a job is submitted
            submitted = cli(root, "submit", "--prompt", "a red fox in snow", "--job-id", "alone-1")
            assert submitted.returncode == 0, submitted.stderr
            # Then it completes: the video came over http from the simulator's CDN port
            deadline = time.monotonic() + 90
            state = ""
            while time.monotonic() < deadline:
                status = cli(root, "status", "alone-1", "--json")
                job = json.loads(status.stdout) if status.returncode == 0 else {}
                state = job.get("state", "")
                if state in ("COMPLETED", "FAILED", "TIMED_OUT"):
                    break
                time.sleep(1)
            assert state == "COMPLETED", job.get("error_message")
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
