"""Cold start: importing each function's handler in a fresh interpreter, against the floor and a bare `import boto3`.

Measured on the built artifact (.aws-sam/build, from `make build`, run here first when the artifact is
missing or older than its sources), laid out as Lambda lays it out: the function's directory as
/var/task and the layer's python/ as /opt/python, with the bytecode the build compiled for the runtime
(layers/common/Makefile), nothing written beside it (-B: both are read-only on Lambda). The interpreter
is the template's runtime (python3.12) when this machine has it. The layer's native extensions are
built for Lambda's architecture (arm64); on a machine of another one a copy of the layer gets this
machine's builds of the same wheels (same versions) laid over it: the bytecode stays the artifact's.
The function's environment comes from template.yaml (placeholder resource names), with tracing off as
in the local stack; the traced figure is printed beside it.

Import includes validating the settings (each handler does it at cold start); no AWS or Kling call
is made. The figure is the child's CPU time (less sensitive to a busy machine than wall time) from
its start to the end of the import, read inside the child, which then exits without tearing the
interpreter down: Lambda never tears down on a cold start, and finalising every module costs a
handler's import more than boto3's. Figures are medians of several runs, interleaved.

The target is the floor: boto3, Powertools' Logger and Metrics and one pydantic model (pydantic builds
its schema machinery on the first model), the stack every function validates its settings and logs
with, imported with the collector off as the handlers import. A handler passes at most
TARGET_RATIO_TO_FLOOR times it: what it adds is the project's code and the libraries only some
functions use (Powertools' batch and REST resolver, httpx, PyJWT). The ratio to a bare `import boto3`
(the earlier target, TARGET_RATIO) stays beside it for comparison.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
# What `make build` builds from: the artifact is stale when one of these is newer than its template.
BUILD_SOURCES = ("template.yaml", "Makefile", "layers/common", "functions")
CACHE = ROOT / ".kling-pipeline" / "bench"
TARGET_RATIO = 1.5  # x a bare `import boto3`: the earlier target, kept for comparison
TARGET_RATIO_TO_FLOOR = 1.25
# Lambda's architecture names -> the machine names in native extensions' file names and wheels' tags.
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
# What every function imports before any of the project's code: boto3, Powertools' Logger and Metrics,
# and pydantic with one model (its schema machinery loads on the first model, not on `import pydantic`),
# imported as the handlers import, with the garbage collector off (kling_pipeline.cold_start).
FLOOR = (
    "import gc; gc.disable(); import boto3, pydantic; from aws_lambda_powertools import Logger, Metrics; "
    "exec('class Floor(pydantic.BaseModel):\\n    x: int')"
)


def runtime_interpreter(template: dict[str, Any] | None = None) -> str:
    """The template's Lambda runtime (python3.12) if this machine has it (on PATH, or installed with
    pyenv but not selected), else the running interpreter."""
    from kling_local.stack.template_loader import load_template

    runtime = (template or load_template(ROOT / "template.yaml"))["Globals"]["Function"]["Runtime"]
    candidates = [shutil.which(runtime)]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        wanted = runtime.removeprefix("python")
        candidates += sorted(str(p) for p in Path(root).glob(f"versions/{wanted}.*/bin/{runtime}"))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    print(f"{runtime} not found: measuring with {sys.executable} instead", file=sys.stderr)
    return sys.executable


def interpreter_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
    ).stdout.strip()


def built_artifact() -> Path:
    """.aws-sam/build, built with `make build` first when it is missing or older than its sources."""
    built = BUILD / "template.yaml"
    sources = [
        path
        for name in BUILD_SOURCES
        for path in ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    newest = max(path.stat().st_mtime for path in sources)
    if not built.exists() or built.stat().st_mtime < newest:
        why = "missing" if not built.exists() else "older than its sources"
        print(f"the built artifact (.aws-sam/build) is {why}: running make build", file=sys.stderr)
        command = ["make", "build"]
        venv = Path(sys.prefix)
        if venv != ROOT / ".venv":  # a venv elsewhere: use it, never (re)install one
            command += [f"VENV={venv}", "-o", str(venv / ".installed")]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"make build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return BUILD


def layer_for_this_machine(build: Path, lambda_architecture: str, python_version: str) -> Path:
    """The built layer's python/ (Lambda's /opt/python). Its native extensions are built for Lambda's
    architecture; on another machine, a copy whose distributions with native extensions are overlaid
    with this machine's wheels of the same versions (their .py files are the same, so the artifact's
    bytecode stays valid)."""
    layer = build / "CommonLayer" / "python"
    foreign = f"-{MACHINES[lambda_architecture]}-"
    here = platform.machine()
    if MACHINES[lambda_architecture] == here:
        return layer
    native = sorted(
        record.parent.name.removesuffix(".dist-info").replace("-", "==", 1)
        for record in layer.glob("*.dist-info/RECORD")
        if any(foreign in line.split(",")[0] for line in record.read_text(encoding="utf-8").splitlines())
    )
    copy = CACHE / f"layer-{here}"
    print(
        f"the layer's native extensions are for {MACHINES[lambda_architecture]}: measuring a copy with {here} "
        f"builds of {', '.join(native)} ({copy.relative_to(ROOT)})",
        file=sys.stderr,
    )
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(layer, copy)
    wheels = CACHE / f"wheels-{here}"
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
         "--platform", f"manylinux2014_{here}", "--platform", f"manylinux_2_28_{here}",
         "--target", str(wheels), *native],
        check=True,
    )  # fmt: skip
    shutil.copytree(wheels, copy, dirs_exist_ok=True)
    return copy


def functions(template: dict[str, Any] | None = None) -> dict[str, str]:
    """Every function of the template: logical id -> its code directory under functions/."""
    from kling_local.stack.template_loader import load_template

    resources = (template or load_template(ROOT / "template.yaml"))["Resources"]
    return {
        lid: Path(r["Properties"]["CodeUri"]).name
        for lid, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }


def function_environments() -> dict[str, dict[str, str]]:
    """Each function's environment as template.yaml defines it, with placeholder resource names."""
    from kling_local.stack.template_loader import IntrinsicEvaluator, load_template, pseudo_parameters

    template = load_template(ROOT / "template.yaml")
    evaluator = IntrinsicEvaluator(
        template,
        parameters={},
        pseudo=pseudo_parameters("us-east-1", "123456789012"),
        refs={lid: f"bench-{lid}" for lid in template["Resources"]},
        attributes={f"{lid}.Arn": f"arn:aws:bench:us-east-1:123456789012:{lid}" for lid in template["Resources"]},
    )
    environments = {}
    for logical_id in functions(template):
        variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
        variables |= template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        environments[logical_id] = {k: str(evaluator.resolve(v)) for k, v in variables.items()}
    return environments


def cpu_seconds(python: str, code_dir: Path, statement: str, env: dict[str, str], layer: Path) -> float:
    """CPU time (user + sys) of a fresh `python -I -S -B` from its start to the end of `statement`, with
    Lambda's sys.path (/var/task, /opt/python); the child reports it and exits without interpreter teardown."""
    paths = [str(code_dir), str(layer)]
    script = (
        f"import sys; sys.path[:0] = {paths!r}; {statement}\n"
        "import os, time; print(time.process_time(), flush=True); os._exit(0)"
    )
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", script], env=env, cwd=code_dir, check=True, capture_output=True, text=True
    )
    return float(done.stdout.split()[-1])


def median_ratio(over: list[float], under: list[float]) -> float:
    """The median of the runs' ratios: each run's pair was measured back to back."""
    return round(statistics.median(a / b for a, b in zip(over, under, strict=True)), 2)


def bench_cold_start(runs: int = 15) -> list[dict[str, Any]]:
    from kling_local.stack.template_loader import load_template

    build = built_artifact()
    template = load_template(ROOT / "template.yaml")
    runtime = template["Globals"]["Function"]
    python = runtime_interpreter(template)
    version = interpreter_version(python)
    layer = layer_for_this_machine(build, runtime["Architectures"][0], runtime["Runtime"].removeprefix("python"))
    environments = function_environments()
    base_env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": "us-east-1"}
    rows = []
    for logical_id in functions(template):
        code_dir = build / logical_id
        lambda_env = base_env | environments[logical_id] | {"AWS_LAMBDA_FUNCTION_NAME": logical_id}
        untraced = lambda_env | {"POWERTOOLS_TRACE_DISABLED": "true"}
        samples: dict[str, list[float]] = {"boto3": [], "floor": [], "handler": [], "handler_traced": []}
        for _ in range(runs):  # interleaved, so drift in the machine's speed touches all alike
            samples["boto3"].append(cpu_seconds(python, code_dir, "import boto3", untraced, layer))
            samples["floor"].append(cpu_seconds(python, code_dir, FLOOR, untraced, layer))
            samples["handler"].append(cpu_seconds(python, code_dir, "import app", untraced, layer))
            samples["handler_traced"].append(cpu_seconds(python, code_dir, "import app", lambda_env, layer))
        ratio_to_floor = median_ratio(samples["handler"], samples["floor"])
        rows.append(
            {
                "function": logical_id,
                "python": version,
                "measured_on": "built artifact",
                "import_boto3_cpu_s": round(statistics.median(samples["boto3"]), 3),
                "floor_cpu_s": round(statistics.median(samples["floor"]), 3),
                "import_handler_cpu_s": round(statistics.median(samples["handler"]), 3),
                "ratio_to_boto3": median_ratio(samples["handler"], samples["boto3"]),
                "floor_ratio_to_boto3": median_ratio(samples["floor"], samples["boto3"]),
                "ratio_to_floor": ratio_to_floor,
                "target_ratio": TARGET_RATIO,
                "target_ratio_to_floor": TARGET_RATIO_TO_FLOOR,
                "meets_target": ratio_to_floor <= TARGET_RATIO_TO_FLOOR,
                "import_handler_traced_cpu_s": round(statistics.median(samples["handler_traced"]), 3),
                "runs": runs,
            }
        )
    return rows
