"""What the rows do to the stack besides the simulator's knobs: hostile servers that drip bytes, a trap
that counts connections from hostile downloads, a killer of function processes, a redeploy mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.chaos.faults import DRIP_INTERVAL_S


class Drips:
    """The row's hostile servers, up before the stack (ImageUrlHosts must name the image server's)."""

    def __init__(self) -> None:
        from kling_local.drip import DripServer

        # Long enough to outlast any Lambda's timeout: only a total deadline ends an exchange with them.
        self.image = DripServer(phase="headers", interval_s=DRIP_INTERVAL_S, max_s=900.0).start()
        self.webhook = DripServer(phase="body", interval_s=DRIP_INTERVAL_S, max_s=900.0).start()

    def close(self) -> None:
        self.image.stop()
        self.webhook.stop()


class Trap:
    """A loopback listener that only counts connections: a download that reaches it went where it must not."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.5)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.hits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-trap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def _children(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry))
    return pids


def socket_owner(local_port: int, remote_port: int) -> int | None:
    """The child process holding the TCP connection 127.0.0.1:local_port -> remote_port (Linux /proc)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.rsplit(":", 1)[1], 16) == local_port and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    inode = fields[9]
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                        return pid
    return None


class Killer:
    """The simulator's create hook: SIGKILLs the process that made a chosen job's create, after Kling
    made the task and before the answer (so before the submit function's DynamoDB write).

    Only creates within `window_s` of the row's start are killed: a kill takes down the whole SQS batch
    of that invocation, which comes back after the queue's 180 s visibility timeout, and killing again
    in that second wave would only add another 180 s to the run."""

    def __init__(self, api_port: int) -> None:
        self.api_port = api_port
        self.targets: set[str] = set()
        self.until = 0.0  # monotonic
        self.killed: Counter[str] = Counter()
        self.missed = 0
        self._lock = threading.Lock()

    def __call__(self, data: dict[str, Any], client: tuple[str, int]) -> None:
        external = str((data.get("task_info") or {}).get("external_task_id") or "")
        with self._lock:
            if external not in self.targets or time.monotonic() > self.until:
                return
            self.targets.discard(external)  # once per job
        pid = socket_owner(client[1], self.api_port)
        if pid is None:
            with self._lock:
                self.missed += 1
            return
        os.kill(pid, signal.SIGKILL)
        with self._lock:
            self.killed[external] += 1
