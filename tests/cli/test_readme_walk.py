"""Every `kling-pipeline ...` command line of the README's CLI section, run as written against a running
`local up` (with a fast simulator), as a newcomer would after `make demo`: each exits 0 and prints no
traceback. The lines are read from README.md's code blocks, so the walk follows the README as it changes.

What the walk changes, and why (each rule says so where it applies):
- JOB_ID becomes the id the first `submit` printed; "$JOBS_API" the local stack's jobs API URL
  (`jobs_api_url` of its state file, as the README says).
- `local up` lines are not started again: the walk's own `local up` runs from the folder already (a
  second one refuses by design: test_demo_beside_local_up); `--kling-url https://...` needs Kling keys.
- `--stack-name` lines need AWS.
- `demo` lines get `--count 2` (the walk stays under a minute; the full batch is `make demo`'s), and
  run side by side.
- `sim --port 8765` listens on a free port instead (a fixed port may be taken on a shared machine),
  and is stopped with SIGTERM once it says it is ready.
- Optional flags in brackets (`dlq [--redrive] [--include-refused]`) are run without them, then adding
  one more each time.
- Image paths are the repository's (`local/kling_local/data/...`, the demo's sample images): the walk's
  folder links that data folder, as a clone has it.
- `cancel JOB_ID` may be refused with its reason: the job the walk submitted is usually at Kling by then,
  and Kling has no cancel (a refusal that says so is the command working; a traceback still fails).
- `settle JOB_ID --task-id T` is refused with its reason: it is for a KLING_UNSETTLED job, and the walk's
  job is not one.
- `submit --file jobs.jsonl` reads a jobs.jsonl the walk writes (the README's is the reader's own).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli.running import CLI, cli, local_up, project
from tests.support.template import ROOT

PREFIX = ".venv/bin/kling-pipeline "
# Commands that may exit non-zero for a reason another change removes; the walk still requires no traceback.
MAY_FAIL = {
    "cancel ": "the walk's job is usually at Kling already: cancel refuses with the reason, as it should",
    "settle ": "settle is for a KLING_UNSETTLED job, which the walk has none of: it refuses with the reason",
}


def readme_commands(readme: str) -> list[list[str]]:
    """The `kling-pipeline` command lines of the README's CLI section (its bash and text blocks)."""
    section = readme.split("\n## The CLI\n", 1)[1].split("\n## ", 1)[0]
    commands: list[list[str]] = []
    for block in re.findall(r"```(?:bash|text)\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = line.removeprefix("$ ").strip()
            if line.startswith(PREFIX):
                commands.append(shlex.split(line.removeprefix(PREFIX), comments=True))
    return commands


def test_the_readme_section_is_found_and_has_the_commands_a_newcomer_runs() -> None:
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    verbs = {command[0] if command[0] != "local" else "local up" for command in commands}
    assert {"local up", "submit", "status", "list", "watch", "get", "dlq", "cost", "demo", "sim"} <= verbs


def test_every_cli_command_of_the_readme_runs_as_written(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "local" / "kling_local").mkdir(parents=True)
    (root / "local" / "kling_local" / "data").symlink_to(ROOT / "local" / "kling_local" / "data")
    (root / "jobs.jsonl").write_text(
        json.dumps({"prompt": "a red fox in snow"}) + "\n" + json.dumps({"prompt": "a lighthouse at night"}) + "\n"
    )
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    skipped: list[str] = []
    failures: list[str] = []
    env = {**os.environ, "COLUMNS": "160"}
    # The demos start stacks of their own: they run beside the walk, from the same folder, from the start.
    demos = [[*words, "--count", "2"] for words in commands if words[0] == "demo"]
    pool = ThreadPoolExecutor(len(demos) or 1)
    demo_results = [pool.submit(cli, root, *args, timeout=240, env=env) for args in demos]
    with local_up(root, "--sim-speed", "60", "--param", "DailyBudgetUnits=50") as running:
        jobs_api = running.endpoints["jobs_api_url"]
        job_id = ""
        for words in commands:
            args = [jobs_api if word == "$JOBS_API" else word for word in words]
            line = " ".join(words)
            if args[:2] == ["local", "up"]:
                skipped.append(f"{line}: " + ("needs Kling keys" if "--kling-url" in args else "already running"))
                continue
            if "--stack-name" in args:
                skipped.append(f"{line}: needs AWS")
                continue
            if args[0] == "demo":
                continue  # running already (above)
            if args[0] == "sim":
                failures += run_server(root, [*replace(args, "--port", "0")], line)
                continue
            if "JOB_ID" in args:
                assert job_id, f"{line}: no job submitted before it"
                wait_recorded(root, job_id)
                args = [job_id if word == "JOB_ID" else word for word in args]
            for variant in optional_variants(args):
                timeout = 90 if variant[0] == "watch" else 60
                result = cli(root, *variant, timeout=timeout, env=env)
                printed = result.stdout + result.stderr
                may_fail = next((why for pattern, why in MAY_FAIL.items() if pattern in line), None)
                if "Traceback" in printed or (result.returncode != 0 and may_fail is None):
                    failures.append(f"{' '.join(variant)} -> exit {result.returncode}:\n{printed[-1500:]}")
                if variant[0] == "submit" and not job_id and result.returncode == 0:
                    job_id = result.stdout.split()[0]
        for args, future in zip(demos, demo_results, strict=True):
            result = future.result()
            if result.returncode != 0 or "Traceback" in result.stdout + result.stderr:
                failures.append(f"{' '.join(args)} -> exit {result.returncode}:\n{result.stderr[-1500:]}")
        pool.shutdown()
    assert not failures, "\n\n".join(failures)
    assert (root / "video.mp4").stat().st_size > 1000  # `get JOB_ID --out video.mp4`
    assert len(skipped) <= 4, skipped


def optional_variants(args: list[str]) -> list[list[str]]:
    """`dlq [--redrive] [--include-refused]` as `dlq`, `dlq --redrive`, `dlq --redrive --include-refused`."""
    plain = [w for w in args if not (w.startswith("[") and w.endswith("]"))]
    optional = [w[1:-1] for w in args if w.startswith("[") and w.endswith("]")]
    return [plain + optional[:n] for n in range(len(optional) + 1)]


def replace(args: list[str], flag: str, value: str) -> list[str]:
    at = args.index(flag)
    return [*args[: at + 1], value, *args[at + 2 :]]


def wait_recorded(root: Path, job_id: str) -> None:
    """A reader types the next command seconds later; the submit function records the job by then."""
    deadline = time.monotonic() + 30
    while cli(root, "status", job_id, "--json").returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} was never recorded")
        time.sleep(0.5)


def run_server(root: Path, args: list[str], line: str) -> list[str]:
    """A command that serves until Ctrl-C: started, seen ready, stopped with SIGTERM; exit 0, no traceback."""
    process = subprocess.Popen([*CLI, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready = process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    if "ready" not in ready or process.returncode != 0 or "Traceback" in out + err:
        return [f"{line} -> exit {process.returncode}: {ready}{out}{err}"[-1500:]]
    return []
