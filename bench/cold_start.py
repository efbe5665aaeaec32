"""Cold start: importing each function's handler in a fresh interpreter, against a bare `import boto3`.

The interpreter is the template's runtime (python3.12) when this machine has it, and it sees what
Lambda's would: the standard library, the function's code directory, the layer's package, and the
layer's requirements (layers/common/requirements.txt) installed on their own with pip --target for
that interpreter, nothing else. The project's dev environment would distort the figure: with rich
and click installed httpx also imports its command-line module, with awscrt installed boto3 imports
it. The function's environment comes from template.yaml (placeholder resource names), with tracing
off as in the local stack; the traced figure is printed beside it.

Import includes validating the settings (each handler does it at cold start); no AWS or Kling call
is made. The figure is the child's CPU time (less sensitive to a busy machine than wall time) from
its start to the end of the import, read inside the child, which then exits without tearing the
interpreter down: Lambda never tears down on a cold start, and finalising every module costs a
handler's import more than boto3's. Figures are medians of several runs, interleaved, and each is
compared with `import boto3` measured in the same way.

Beside each handler stands the floor: boto3, Powertools' Logger and Metrics and one pydantic model
(pydantic builds its schema machinery on the first model), the stack every function validates its
settings and logs with, imported with the collector off as the handlers import. The handler's ratio
to the floor is what the rest costs: the project's code, and the libraries only some functions use
(Powertools' batch and REST resolver, httpx, PyJWT).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"
LAYER_PYTHON = ROOT / "layers" / "common" / "python"
CACHE = ROOT / ".kling-pipeline" / "bench"
TARGET_RATIO = 1.5
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


def layer_dependencies(python: str = sys.executable) -> Path:
    """The layer's requirements installed apart for `python`, once per version of requirements.txt."""
    version = interpreter_version(python)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + version.encode()).hexdigest()[:12]
    target = CACHE / f"layer-deps-{digest}"
    if not (target / ".complete").exists():
        print(
            f"installing the layer's requirements for Python {version} into {target.relative_to(ROOT)} (once)",
            file=sys.stderr,
        )
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
             str(target), "--requirement", str(REQUIREMENTS)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (target / ".complete").touch()
    return target


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


def cpu_seconds(python: str, code_dir: Path, statement: str, env: dict[str, str], deps: Path) -> float:
    """CPU time (user + sys) of a fresh `python -I -S` from its start to the end of `statement`, with
    Lambda's sys.path; the child reports it and exits without interpreter teardown."""
    paths = [str(code_dir), str(LAYER_PYTHON), str(deps)]
    script = (
        f"import sys; sys.path[:0] = {paths!r}; {statement}\n"
        "import os, time; print(time.process_time(), flush=True); os._exit(0)"
    )
    done = subprocess.run(
        [python, "-I", "-S", "-c", script], env=env, cwd=code_dir, check=True, capture_output=True, text=True
    )
    return float(done.stdout.split()[-1])


def median_ratio(over: list[float], under: list[float]) -> float:
    """The median of the runs' ratios: each run's pair was measured back to back."""
    return round(statistics.median(a / b for a, b in zip(over, under, strict=True)), 2)


def bench_cold_start(runs: int = 15) -> list[dict[str, Any]]:
    python = runtime_interpreter()
    version = interpreter_version(python)
    deps = layer_dependencies(python)
    environments = function_environments()
    base_env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": "us-east-1"}
    rows = []
    for logical_id, directory in functions().items():
        code_dir = ROOT / "functions" / directory
        lambda_env = base_env | environments[logical_id] | {"AWS_LAMBDA_FUNCTION_NAME": logical_id}
        untraced = lambda_env | {"POWERTOOLS_TRACE_DISABLED": "true"}
        samples: dict[str, list[float]] = {"boto3": [], "floor": [], "handler": [], "handler_traced": []}
        for _ in range(runs):  # interleaved, so drift in the machine's speed touches all alike
            samples["boto3"].append(cpu_seconds(python, code_dir, "import boto3", untraced, deps))
            samples["floor"].append(cpu_seconds(python, code_dir, FLOOR, untraced, deps))
            samples["handler"].append(cpu_seconds(python, code_dir, "import app", untraced, deps))
            samples["handler_traced"].append(cpu_seconds(python, code_dir, "import app", lambda_env, deps))

        rows.append(
            {
                "function": logical_id,
                "python": version,
                "import_boto3_cpu_s": round(statistics.median(samples["boto3"]), 3),
                "floor_cpu_s": round(statistics.median(samples["floor"]), 3),
                "import_handler_cpu_s": round(statistics.median(samples["handler"]), 3),
                "ratio_to_boto3": median_ratio(samples["handler"], samples["boto3"]),
                "floor_ratio_to_boto3": median_ratio(samples["floor"], samples["boto3"]),
                "ratio_to_floor": median_ratio(samples["handler"], samples["floor"]),
                "target_ratio": TARGET_RATIO,
                "import_handler_traced_cpu_s": round(statistics.median(samples["handler_traced"]), 3),
                "runs": runs,
            }
        )
    return rows
