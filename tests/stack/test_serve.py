"""`python -m kling_local.stack --json` as a separate process: prints its endpoints as one JSON
object, writes the state file, and on SIGTERM stops cleanly, leaving no worker process behind."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3

from tests.stack.synthetic import write_project
from tests.support.waiting import wait_for


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serve_prints_json_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    template = write_project(tmp_path)
    env = {**os.environ, "KLING_ACCESS_KEY": "unused", "KLING_SECRET_KEY": "unused-secret"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kling_local.stack",
            "--json",
            "--template",
            str(template),
            "--project-root",
            str(tmp_path),
            "--param",
            f"RecordDir={tmp_path / 'records'}",
            "--kling-url",
            "http://127.0.0.1:9",
            "--stack-name",
            "serve-test",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        endpoints = json.loads(lines.get(timeout=120))
        state_file = tmp_path / ".kling-pipeline" / "local-stack.json"
        assert json.loads(state_file.read_text())["moto_endpoint"] == endpoints["moto_endpoint"]
        assert "unused-secret" not in json.dumps(endpoints)

        lam = boto3.client(
            "lambda",
            endpoint_url=endpoints["moto_endpoint"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        name = next(f["FunctionName"] for f in lam.list_functions()["Functions"] if "SlowFunction" in f["FunctionName"])
        result = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        workers = _children(process.pid)
        assert result["pid"] in workers  # the function ran in a worker process of the stack

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not state_file.exists()
        wait_for(lambda: not any(_alive(pid) for pid in workers), 10, what="worker processes to exit")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
