"""The function runtime: each function runs its real handler in its own warm worker processes.

As on Lambda: the function's own environment (what moto's Lambda holds for it), module state kept
between invocations of one worker, a cold start per new worker, the configured timeout (the worker
is killed and the invocation fails with Sandbox.Timedout), a few workers per function at once, and
Lambda-style errors ({"errorMessage", "errorType"}).

moto's own Lambda invoke (used by its Step Functions engine for `lambda:invoke` and by anyone
calling the Lambda API on the moto endpoint) is routed here by `moto_lambda.install_moto_hook`, so
every path into a function ends in the same runtime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kling_local.stack.deploy import FunctionConfig
from kling_local.stack.moto_server import AwsTarget

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("worker.py")


class RuntimeStoppedError(RuntimeError):
    """An invocation arrived while the runtime was stopping."""


@dataclass(frozen=True)
class Invocation:
    """What one invocation returned: the handler's result, or a Lambda error payload."""

    request_id: str
    ok: bool
    payload: Any  # the result, or {"errorMessage", "errorType", ...}
    duration_s: float
    cold_start: bool = False
    timed_out: bool = False

    @property
    def error_type(self) -> str | None:
        return None if self.ok else str(self.payload.get("errorType", "Unhandled"))

    @classmethod
    def from_reply(
        cls, request_id: str, reply: Mapping[str, Any], duration_s: float, cold_start: bool = False
    ) -> Invocation:
        """An invocation from the reply of `worker.invoke_handler` (in a worker, or in this process)."""
        if reply.get("ok"):
            return cls(request_id, True, reply.get("result"), duration_s, cold_start)
        payload = {k: reply[k] for k in ("errorMessage", "errorType", "stackTrace") if k in reply}
        return cls(request_id, False, payload, duration_s, cold_start)


@dataclass
class _Counters:
    invocations: int = 0
    errors: int = 0
    cold_starts: int = 0
    timeouts: int = 0
    running: int = 0

    def public(self) -> dict[str, int]:
        """The counts, without `running` (what is under way now, not a count)."""
        return {name: value for name, value in asdict(self).items() if name != "running"}


class _Worker:
    """One execution environment: a subprocess plus a thread reading its protocol channel."""

    def __init__(
        self, config: FunctionConfig, env: Mapping[str, str], log_file: IO[bytes], generation: int = 0
    ) -> None:
        self.generation = generation  # the pool's configuration it was started with (FunctionPool.redeploy)
        spec = {
            "code_dir": str(config.code_dir),
            "handler": config.handler,
            "layer_paths": [str(_layer_path(p)) for p in config.layer_dirs],
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own worker script with our own interpreter
            [sys.executable, "-P", "-u", str(WORKER_SCRIPT), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=dict(env),
            cwd=str(config.code_dir),
            start_new_session=True,  # Ctrl-C in the terminal is the stack's to handle, not the worker's
        )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"worker-{config.logical_id}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                self._replies.put(json.loads(raw))
            except ValueError:
                log.warning("worker %s wrote a bad protocol line", self.process.pid)
        self._replies.put(None)

    def receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message; raises TimeoutError, returns None when the process has gone."""
        try:
            return self._replies.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            raise TimeoutError from None

    def send(self, message: Mapping[str, Any]) -> bool:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not get ignored
            log.warning("worker %s did not exit after SIGKILL", self.process.pid)
        self._close_pipes()

    def close(self, grace_s: float) -> None:
        """Ask politely (EOF on its request channel), then kill."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def _layer_path(layer_dir: Path) -> Path:
    """A Python layer's content is importable from its python/ directory (/opt/python on Lambda)."""
    python = layer_dir / "python"
    return python if python.is_dir() else layer_dir


def _exit_error(request_id: str, worker: _Worker) -> dict[str, Any]:
    try:
        code = worker.process.wait(timeout=1)  # it has closed its channel: it is exiting
    except subprocess.TimeoutExpired:
        code = None
    return {
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}",
        "errorType": "Runtime.ExitError",
    }


class FunctionPool:
    """The execution environments of one function, at most `max_workers` of them at once."""

    def __init__(
        self,
        config: FunctionConfig,
        env: Mapping[str, str],
        *,
        max_workers: int,
        log_path: Path,
        init_timeout_s: float,
    ) -> None:
        self.config = config
        self.env = dict(env)
        self.max_workers = max(1, max_workers)
        self.init_timeout_s = init_timeout_s
        self.log_path = log_path
        self.counters = _Counters()
        self._idle: list[_Worker] = []
        self._workers = 0  # alive or being started
        self._all: set[_Worker] = set()  # every live process, busy or idle: stop() kills stragglers
        self._cond = threading.Condition()
        self._stopping = False
        self._generation = 0  # bumped by redeploy: older environments are not reused
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - shared by this pool's workers

    # -- invocation ------------------------------------------------------------------------------

    def invoke(self, event: Any, request_id: str | None = None) -> Invocation:
        request_id = request_id or str(uuid.uuid4())
        started = time.monotonic()
        with self._cond:
            self.counters.running += 1
        try:
            worker, cold, init_error = self._acquire()
            if worker is None:
                payload = init_error or {"errorMessage": "no execution environment", "errorType": "Runtime.Unknown"}
                return self._finish(Invocation(request_id, False, payload, time.monotonic() - started, True))
            deadline = time.time() + self.config.timeout_s
            sent = worker.send(
                {
                    "request_id": request_id,
                    "event": event,
                    "deadline_ms": int(deadline * 1000),
                    "function_arn": self.config.arn,
                }
            )
            reply: dict[str, Any] | None
            try:
                reply = worker.receive(self.config.timeout_s) if sent else None
            except TimeoutError:
                worker.kill()  # Lambda discards an environment whose invocation timed out
                self._release(worker, keep=False)
                message = (
                    f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {request_id} "
                    f"Task timed out after {self.config.timeout_s:.2f} seconds"
                )
                self._log(f"{message}\n")
                payload = {"errorMessage": message, "errorType": "Sandbox.Timedout"}
                return self._finish(Invocation(request_id, False, payload, time.monotonic() - started, cold, True))
            if reply is None:
                payload = _exit_error(request_id, worker)
                worker.kill()
                self._release(worker, keep=False)
                return self._finish(Invocation(request_id, False, payload, time.monotonic() - started, cold))
            self._release(worker, keep=worker.alive() and not reply.get("exiting"))
            return self._finish(Invocation.from_reply(request_id, reply, time.monotonic() - started, cold))
        finally:
            with self._cond:
                self.counters.running -= 1
                self._cond.notify_all()

    def _finish(self, invocation: Invocation) -> Invocation:
        with self._cond:
            self.counters.invocations += 1
            self.counters.errors += 0 if invocation.ok else 1
            self.counters.timeouts += 1 if invocation.timed_out else 0
        return invocation

    def _acquire(self) -> tuple[_Worker | None, bool, dict[str, Any] | None]:
        """A warm worker, or a new one (a cold start) when none is idle and the pool has room."""
        with self._cond:
            while True:
                if self._stopping:
                    raise RuntimeStoppedError(f"{self.config.logical_id}: the local stack is stopping")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive() and worker.generation == self._generation:
                        return worker, False, None
                    self._workers -= 1  # it exited while idle (e.g. sys.exit in the handler)
                    self._all.discard(worker)
                    worker.close(grace_s=0)
                if self._workers < self.max_workers:
                    self._workers += 1
                    self.counters.cold_starts += 1
                    break
                self._cond.wait(timeout=1.0)
        try:
            with self._cond:
                env, generation = self.env, self._generation
            worker = _Worker(self.config, env, self._log_file, generation)
            with self._cond:
                self._all.add(worker)
        except OSError as exc:
            with self._cond:
                self._workers -= 1
                self._cond.notify_all()
            return None, True, {"errorMessage": f"could not start the function: {exc}", "errorType": "Runtime.Unknown"}
        try:
            init = worker.receive(self.init_timeout_s)
        except TimeoutError:
            init = {"ok": False, "errorType": "Runtime.InitTimeout", "errorMessage": "init did not finish in time"}
        if init is None or not init.get("ok"):
            worker.kill()
            with self._cond:
                self._workers -= 1
                self._all.discard(worker)
                self._cond.notify_all()
            error = init or {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited during init"}
            return None, True, {k: error[k] for k in ("errorMessage", "errorType", "stackTrace") if k in error}
        return worker, True, None

    def _release(self, worker: _Worker, *, keep: bool) -> None:
        with self._cond:
            keep = keep and not self._stopping and worker.generation == self._generation
            if keep:
                self._idle.append(worker)
            else:
                self._workers -= 1
                self._all.discard(worker)
            self._cond.notify_all()
        if not keep:
            worker.close(grace_s=0.5)

    def _log(self, text: str) -> None:
        try:
            self._log_file.write(text.encode("utf-8"))
            self._log_file.flush()
        except (OSError, ValueError):
            pass

    # -- lifecycle -------------------------------------------------------------------------------

    def redeploy(self, env: Mapping[str, str]) -> None:
        """A new configuration, as Lambda rolls one out: invocations from now on start in new environments
        with `env`; those running finish in theirs, which are then discarded (never reused)."""
        with self._cond:
            self.env = dict(env)
            self._generation += 1
            idle, self._idle = self._idle, []
            self._workers -= len(idle)
            self._all.difference_update(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close(grace_s=0.5)

    def stop(self, grace_s: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.close(grace_s)
        deadline = time.monotonic() + grace_s
        with self._cond:
            while self.counters.running and time.monotonic() < deadline:
                self._cond.wait(timeout=0.1)
            stragglers, self._all = list(self._all), set()
        for worker in stragglers:  # still busy after the grace period (or still starting): no orphans
            worker.kill()
        with contextlib.suppress(OSError):
            self._log_file.close()

    def busy(self) -> int:
        with self._cond:
            return self.counters.running


class FunctionRuntime:
    """All functions of the stack, invoked by logical id, name or ARN."""

    def __init__(
        self,
        functions: Mapping[str, FunctionConfig],
        aws: AwsTarget,
        *,
        log_dir: Path,
        max_concurrency: int = 4,
        init_timeout_s: float = 60.0,
        extra_env: Mapping[str, str] | None = None,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.aws = aws
        self.log_dir = log_dir
        self.pools: dict[str, FunctionPool] = {}
        for lid, config in functions.items():
            self.pools[lid] = FunctionPool(
                config,
                function_environment(config, aws, extra_env or {}, (credentials or {}).get(lid, {})),
                max_workers=max_concurrency,
                log_path=log_dir / f"{lid}.log",
                init_timeout_s=init_timeout_s,
            )
        self._names: dict[str, str] = {}
        for lid, config in functions.items():
            for key in (lid, config.name, config.arn, f"{config.arn}:$LATEST"):
                self._names[key] = lid
        self._async = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda-async")
        self._async_pending = 0
        self._lock = threading.Lock()
        self._stopped = False

    def resolve(self, function: str) -> str | None:
        """Logical id for a logical id, function name, ARN or partial ARN (`function:name`)."""
        if function in self._names:
            return self._names[function]
        tail = function.split(":function:")[-1].split(":")[0]
        return self._names.get(tail)

    def invoke(self, function: str, event: Any, request_id: str | None = None) -> Invocation:
        lid = self.resolve(function)
        if lid is None:
            raise KeyError(f"no local function {function!r}; known: {', '.join(sorted(self.pools))}")
        return self.pools[lid].invoke(event, request_id)

    def invoke_async(self, function: str, event: Any) -> str:
        """Lambda's Event invocation: accepted now, run soon; failures are logged, not returned."""
        request_id = str(uuid.uuid4())
        with self._lock:
            if self._stopped:
                raise RuntimeStoppedError("the local stack is stopping")
            self._async_pending += 1

        def run() -> None:
            try:
                result = self.invoke(function, event, request_id)
                if not result.ok:
                    log.warning("async invocation of %s failed: %s", function, result.payload.get("errorMessage"))
            except RuntimeStoppedError:
                pass
            except Exception:
                log.exception("async invocation of %s failed", function)
            finally:
                with self._lock:
                    self._async_pending -= 1

        self._async.submit(run)
        return request_id

    def redeploy(self, function: str, **env: str) -> None:
        """Change a function's environment variables, as updating its configuration on AWS does (a
        redeploy with new parameters): its next invocations start cold and read them."""
        lid = self.resolve(function)
        if lid is None:
            raise KeyError(f"no local function {function!r}; known: {', '.join(sorted(self.pools))}")
        pool = self.pools[lid]
        pool.redeploy(pool.env | env)

    def stats(self) -> dict[str, dict[str, int]]:
        return {lid: pool.counters.public() for lid, pool in self.pools.items()}

    def busy(self) -> int:
        with self._lock:
            pending = self._async_pending
        return pending + sum(pool.busy() for pool in self.pools.values())

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        for pool in self.pools.values():
            pool.stop()
        self._async.shutdown(wait=False, cancel_futures=True)


def function_environment(
    config: FunctionConfig, aws: AwsTarget, extra: Mapping[str, str], credentials: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The process environment Lambda would give this function, pointed at moto. Built from scratch:
    nothing of the caller's environment leaks in except what the interpreter itself may need.
    `credentials`: its execution role's session (else the stack's own keys, which moto does not judge)."""
    log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    defaults = {
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "PYTHONUNBUFFERED": "1",
        "POWERTOOLS_SERVICE_NAME": config.logical_id,
        "POWERTOOLS_METRICS_NAMESPACE": "KlingLocal",
    }
    passthrough = {k: os.environ[k] for k in ("LD_LIBRARY_PATH", "TMPDIR", "SYSTEMROOT") if k in os.environ}
    reserved = {
        **passthrough,
        "PATH": os.environ.get("PATH", os.defpath),
        "AWS_LAMBDA_FUNCTION_NAME": config.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
        "LAMBDA_TASK_ROOT": str(config.code_dir),
        "_HANDLER": config.handler,
        # Tracing needs the X-Ray daemon, which does not exist locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
        **aws.environment(),
        **dict(credentials or {}),
    }
    return {**defaults, **dict(config.environment), **dict(extra), **reserved}
