"""docs/architecture.md and the README describe the code as it is."""

from __future__ import annotations

import re

from kling_pipeline.lifecycle import ALLOWED_TRANSITIONS, JobState
from tests.support.template import ROOT

ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_transition_table_is_the_lifecycles() -> None:
    rows = re.findall(r"^\| (\(none\)|[A-Z_]+) \| ([A-Z_]+) \|", section(ARCHITECTURE, "A job's life"), re.MULTILINE)
    documented = {(None if src == "(none)" else JobState(src), JobState(dst)) for src, dst in rows}
    assert documented == set(ALLOWED_TRANSITIONS)


def test_every_path_the_docs_name_exists() -> None:
    for text in (ARCHITECTURE, README):
        for path in set(re.findall(r"`((?:[\w.-]+/)+[\w.{},-]*)`", text)):
            if "{" in path:  # functions/{submit,callback,download}/app.py
                head, names, tail = re.match(r"(.*)\{(.*)\}(.*)", path).groups()  # type: ignore[union-attr]
                candidates = [f"{head}{name}{tail}" for name in names.split(",")]
            else:
                candidates = [path]
            for candidate in candidates:
                # From the repository root, or (as `adapters/job_store.py`, `sim/`) from a package.
                roots = (
                    ROOT,
                    ROOT / "layers/common/python",
                    ROOT / "layers/common/python/kling_pipeline",
                    ROOT / "local/kling_local",
                )
                assert any((root / candidate).exists() for root in roots), f"{candidate} (in the docs) does not exist"
