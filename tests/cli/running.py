"""The CLI as a user runs it: `kling-pipeline local up` in a process of its own, and commands beside it."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.template import ROOT

CLI = [sys.executable, "-m", "kling_local.cli"]


def project(folder: Path) -> Path:
    """A folder a user runs the CLI from: the template and the code it names (as a clone has them)."""
    for part in ("template.yaml", "functions", "layers", "statemachine"):
        (folder / part).symlink_to(ROOT / part)
    return folder


def cli(
    cwd: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env)


@dataclass
class LocalUp:
    process: subprocess.Popen[str]
    endpoints: dict[str, Any]
    stderr: list[str] = field(default_factory=list)


@contextmanager
def local_up(cwd: Path, *flags: str) -> Iterator[LocalUp]:
    """`kling-pipeline local up --json` from `cwd` until the block ends (then SIGTERM, as Ctrl-C)."""
    process = subprocess.Popen(
        [*CLI, "local", "up", "--json", *flags], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr: list[str] = []
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout, process.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    reader = threading.Thread(target=lambda: [stderr.append(line) for line in err], daemon=True)
    reader.start()
    try:
        try:
            first = lines.get(timeout=120)
        except queue.Empty:
            raise AssertionError("local up printed no endpoints: " + "".join(stderr)[-3000:]) from None
        yield LocalUp(process, json.loads(first), stderr)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        reader.join(timeout=5)
