"""docs/architecture.md and the README describe the code as it is."""

from __future__ import annotations

import json
import re
from typing import Any

from kling_pipeline.lifecycle import ALLOWED_TRANSITIONS, JobState
from tests.support.template import ROOT

ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONTRACT = (ROOT / "docs" / "kling-contract.md").read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_transition_table_is_the_lifecycles() -> None:
    rows = re.findall(r"^\| (\(none\)|[A-Z_]+) \| ([A-Z_]+) \|", section(ARCHITECTURE, "A job's life"), re.MULTILINE)
    documented = {(None if src == "(none)" else JobState(src), JobState(dst)) for src, dst in rows}
    assert documented == set(ALLOWED_TRANSITIONS)


def test_every_path_the_docs_name_exists() -> None:
    for text in (ARCHITECTURE, README, CONTRACT):
        for path in set(re.findall(r"`((?:[\w.-]+/)+[\w.{},-]*)`", text)):
            if path.startswith((".kling-pipeline/", ".venv/")):  # made by `make` and a running stack, not committed
                continue
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


def asl_names() -> set[str]:
    """The download workflow's state names (branches included) and the errors its Fail states end with."""
    names: set[str] = set()

    def walk(machine: dict[str, Any]) -> None:
        for name, state in machine["States"].items():
            names.add(name)
            if state["Type"] == "Fail" and "Error" in state:
                names.add(state["Error"])
            for branch in state.get("Branches", []):
                walk(branch)
            for key in ("Iterator", "ItemProcessor"):
                if key in state:
                    walk(state[key])

    walk(json.loads((ROOT / "statemachine" / "download.asl.json").read_text(encoding="utf-8")))
    return names


# Words the workflow's parts of the docs name that are not states: the machine, the function and the
# bucket it uses, Step Functions' own API calls and services.
NOT_STATES = {
    "DownloadStateMachine",
    "DownloadFunction",
    "VideoBucket",
    "SendTaskSuccess",
    "SendTaskFailure",
    "CloudWatch",
    "EventBusName",
    "JobsQueue",
    "TransientDownloadError",
    "DynamoDB",
    "SlowDown",
}
CAMEL = r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+"


def workflow_diagram(text: str) -> str:
    """The lines of a flow diagram from DownloadStateMachine to the end of its paragraph or block."""
    start = text.index("DownloadStateMachine")
    end = min(i for i in (text.find("\n\n", start), text.index("```", start)) if i != -1)
    return text[text.rindex("\n", 0, start) : end]


def named_states(text: str) -> set[str]:
    """What looks like a state name: a CamelCase word, or any capitalised word after an arrow or at a
    diagram line's start; in prose, a bold word and "the workflow's X"."""
    words = set(re.findall(rf"\b{CAMEL}\b", text))
    words |= set(re.findall(r"(?:─►|→|^)\s*([A-Z][A-Za-z]+)\b", text, re.MULTILINE))
    return words


def test_the_workflow_states_the_docs_name_are_the_state_machines() -> None:
    # The flow diagrams, the download workflow's section (its bold names) and every "the workflow's X"
    named = named_states(workflow_diagram(ARCHITECTURE)) | named_states(workflow_diagram(README))
    workflow_section = section(ARCHITECTURE, "The download workflow")
    named |= set(re.findall(rf"\*\*({CAMEL}|[A-Z][a-z]+)\*\*", workflow_section))
    for text in (ARCHITECTURE, README):
        named |= set(re.findall(r"workflow's ([A-Z][A-Za-z]+)", text))
    assert {"RecordOutcome", "ClearAnnouncement", "DownloadNotFinished", "Download"} <= named  # the check sees them
    assert named - NOT_STATES - asl_names() == set()


def test_what_the_code_cites_as_a_source_is_in_the_repository() -> None:
    # Kling's contract is docs/kling-contract.md: no citation points outside the repository
    cited: set[str] = set()
    for path in [*ROOT.glob("layers/**/*.py"), *ROOT.glob("local/**/*.py"), *ROOT.glob("bench/*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "kling-api.md" not in text and "../shared" not in text, path
        cited |= set(re.findall(r"docs/[\w-]+\.md", text))
    assert "docs/kling-contract.md" in cited
    assert all((ROOT / doc).exists() for doc in cited), cited
