"""IAM enforced on the local stack: a permission missing from the template is refused, as on AWS.

The stack deploys a copy of template.yaml from which the submit function's dynamodb:UpdateItem is
removed. Its claim of a queued job (QUEUED -> SUBMITTING, an UpdateItem) is then AccessDenied: the job
never reaches Kling and stays QUEUED, and the function's log names the action and its role.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_local.demo import connection_of
from kling_local.jobs_files import send_jobs
from kling_local.sim import SimConfig
from kling_local.stack import LocalStack, StackOptions
from kling_pipeline.lifecycle import JobState
from tests.support.template import ROOT

GRANT = "Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem]"
DENIED = "not authorized to perform: dynamodb:UpdateItem"


def _template_without_submit_update_item(project: Path) -> Path:
    """template.yaml with the submit function's first grant minus dynamodb:UpdateItem, beside links to
    the code it deploys (URIs are relative to the template)."""
    text = (ROOT / "template.yaml").read_text()
    submit = text.index("  SubmitFunction:\n")
    grant = text.index(GRANT, submit)
    assert grant < text.index("  PollerFunction:\n"), "the submit function's grant moved: update this test"
    changed = text[:grant] + "Action: [dynamodb:GetItem, dynamodb:PutItem]" + text[grant + len(GRANT) :]
    for name in ("functions", "layers", "statemachine"):
        (project / name).symlink_to(ROOT / name, target_is_directory=True)
    path = project / "template.yaml"
    path.write_text(changed)
    return path


@pytest.fixture(scope="module")
def denied_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    project = tmp_path_factory.mktemp("iam-denied")
    config = SimConfig(
        access_key=f"iam-{secrets.token_hex(4)}", secret_key=secrets.token_urlsafe(32), speed=120.0, seed=3
    )
    options = StackOptions(
        template_path=_template_without_submit_update_item(project), project_root=project, sim_config=config
    )
    with LocalStack(options) as running:
        yield running


def test_a_permission_removed_from_the_template_is_refused_and_the_job_goes_no_further(
    denied_stack: LocalStack,
) -> None:
    # Given the stack deployed from a template whose submit function may not UpdateItem
    connection = connection_of(denied_stack)
    log = Path(denied_stack.endpoints["log_dir"]) / "SubmitFunction.log"
    # When a job is sent
    [job_id] = send_jobs(connection, [{"job_id": "iam-denied-1", "prompt": "a lighthouse at dusk"}])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and DENIED not in (log.read_text() if log.exists() else ""):
        time.sleep(0.5)
    # Then the claim is refused with AccessDeniedException naming the action and the function's role
    text = log.read_text()
    assert "AccessDeniedException" in text
    assert DENIED in text
    assert ":assumed-role/kling-pipeline-SubmitFunctionRole-" in text
    # and the job goes no further: recorded, still QUEUED, never created at Kling
    job = connection.store().get(job_id)
    assert job.state is JobState.QUEUED
    assert denied_stack.simulator is not None
    assert job_id not in denied_stack.simulator.stats()["tasks_by_external_task_id"]
