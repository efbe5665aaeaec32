"""Cold start: importing each function's handler in a fresh interpreter, against a bare `import boto3`.

The interpreter sees what Lambda's would: the standard library, the function's code directory, the
layer's package, and the layer's requirements (layers/common/requirements.txt) installed on their
own with pip --target for this machine, nothing else. The project's dev environment would distort
the figure: with rich and click installed httpx also imports its command-line module, with awscrt
installed boto3 imports it. The function's environment comes from template.yaml (placeholder
resource names), with tracing off as in the local stack; the traced figure is printed beside it.

Import includes validating the settings (each handler does it at cold start); no AWS or Kling call
is made. Figures are medians of several runs, CPU seconds of the child process (less sensitive to
a busy machine than wall time), and the ratio to `import boto3` measured in the same way.
"""

from __future__ import annotations

import hashlib
import os
import resource
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


def layer_dependencies() -> Path:
    """The layer's requirements installed apart, once per version of requirements.txt."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    target = CACHE / f"layer-deps-{digest}"
    if not (target / ".complete").exists():
        print(f"installing the layer's requirements into {target.relative_to(ROOT)} (once)", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
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


def cpu_seconds(code_dir: Path, statement: str, env: dict[str, str], deps: Path) -> float:
    """CPU time (user + sys) of a fresh `python -I -S` that runs `statement` with Lambda's sys.path."""
    paths = [str(code_dir), str(LAYER_PYTHON), str(deps)]
    script = f"import sys; sys.path[:0] = {paths!r}; {statement}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-I", "-S", "-c", script], env=env, cwd=code_dir, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_cold_start(runs: int = 9) -> list[dict[str, Any]]:
    deps = layer_dependencies()
    environments = function_environments()
    base_env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": "us-east-1"}
    rows = []
    for logical_id, directory in functions().items():
        code_dir = ROOT / "functions" / directory
        lambda_env = base_env | environments[logical_id] | {"AWS_LAMBDA_FUNCTION_NAME": logical_id}
        untraced = lambda_env | {"POWERTOOLS_TRACE_DISABLED": "true"}
        samples: dict[str, list[float]] = {"boto3": [], "handler": [], "handler_traced": []}
        for _ in range(runs):  # interleaved, so drift in the machine's speed touches all three alike
            samples["boto3"].append(cpu_seconds(code_dir, "import boto3", untraced, deps))
            samples["handler"].append(cpu_seconds(code_dir, "import app", untraced, deps))
            samples["handler_traced"].append(cpu_seconds(code_dir, "import app", lambda_env, deps))
        ratios = [h / b for h, b in zip(samples["handler"], samples["boto3"], strict=True)]
        rows.append(
            {
                "function": logical_id,
                "import_boto3_cpu_s": round(statistics.median(samples["boto3"]), 3),
                "import_handler_cpu_s": round(statistics.median(samples["handler"]), 3),
                "ratio_to_boto3": round(statistics.median(ratios), 2),
                "target_ratio": TARGET_RATIO,
                "import_handler_traced_cpu_s": round(statistics.median(samples["handler_traced"]), 3),
                "runs": runs,
            }
        )
    return rows
