"""The layer's bytecode is the Lambda runtime's (layers/common/Makefile): Lambda's interpreter ignores a .pyc
of another Python and cannot write its own under the read-only /opt, so a layer built with the build
machine's Python compiles every module from source at every cold start."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.template import ROOT, placeholder_resolver

LAYER = ROOT / "layers" / "common"


def runtime() -> str:
    """template.yaml's Runtime, e.g. python3.12."""
    value: str = placeholder_resolver().template["Globals"]["Function"]["Runtime"]
    return value


def test_the_layer_is_installed_and_compiled_for_the_templates_runtime() -> None:
    # Given the layer's build recipe and the functions' runtime
    makefile = (LAYER / "Makefile").read_text(encoding="utf-8")
    version = runtime().removeprefix("python")
    # Then the wheels are the runtime's, pip writes no bytecode of its own interpreter, and the bytecode is
    # compiled by the runtime's interpreter, valid without looking at the sources' mtimes
    interpreter = re.search(r"^RUNTIME_PYTHON \?= (\S+)$", makefile, re.M)
    assert interpreter and interpreter[1] == runtime()
    assert f"--python-version {version} " in makefile
    assert "--no-compile" in makefile
    assert "$(RUNTIME_PYTHON) -m compileall -q -j0 --invalidation-mode unchecked-hash" in makefile


def test_the_layer_build_leaves_only_the_runtimes_bytecode_and_the_runtime_uses_it(tmp_path: Path) -> None:
    from bench.cold_start import interpreter_version, runtime_interpreter

    python = runtime_interpreter()
    if not interpreter_version(python).startswith(runtime().removeprefix("python") + "."):
        pytest.skip(f"{runtime()} is not on this machine")
    # Given the layer's sources with bytecode of another Python beside them (a dev tree's __pycache__),
    # and no requirements (the index is not needed to build the domain package alone)
    source = tmp_path / "src"
    shutil.copytree(LAYER / "python" / "kling_pipeline", source / "python" / "kling_pipeline")
    shutil.copy(LAYER / "Makefile", source / "Makefile")
    (source / "requirements.txt").write_text("", encoding="utf-8")
    stale = source / "python" / "kling_pipeline" / "adapters" / "__pycache__" / "secrets.cpython-311.pyc"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"not the runtime's bytecode")
    artifacts = tmp_path / "artifacts"
    # When sam build's makefile method runs the layer's target
    done = subprocess.run(
        ["make", "build-CommonLayer", f"ARTIFACTS_DIR={artifacts}", f"RUNTIME_PYTHON={python}"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # Then every module has the runtime's .pyc and no other bytecode is left
    tag = "cpython-" + runtime().removeprefix("python").replace(".", "")
    modules = sorted(artifacts.rglob("*.py"))
    assert modules
    assert sorted(artifacts.rglob("*.pyc")) == sorted(m.parent / "__pycache__" / f"{m.stem}.{tag}.pyc" for m in modules)
    # And the runtime loads a module from that bytecode without looking at the source: a source changed
    # after the build (its mtime and size no longer match) still imports as built
    errors = artifacts / "python" / "kling_pipeline" / "errors.py"
    errors.write_text(errors.read_text(encoding="utf-8") + "\nraise RuntimeError('compiled from source')\n")
    loaded = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import kling_pipeline.errors",
         str(artifacts / "python")],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
