"""The whole pipeline on the local stack: messages in over SQS, videos out in S3, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_local.demo import connection_of
from kling_local.jobs_files import send_jobs
from kling_local.stack import LocalStack
from kling_pipeline.lifecycle import JobState
from tests.support.template import ROOT

CLI = [sys.executable, "-m", "kling_local.cli"]


def wait_terminal(stack: LocalStack, job_ids: list[str], timeout_s: float = 180.0) -> dict[str, Any]:
    store = connection_of(stack).store()
    deadline = time.monotonic() + timeout_s
    jobs: dict[str, Any] = {}
    while time.monotonic() < deadline:
        jobs = {j: found.get(j) for found in [store.get_many(job_ids)] for j in job_ids}
        if all(job is not None and job.is_terminal for job in jobs.values()):
            return jobs
        time.sleep(0.3)
    states = {j: (job.state.value if job else None) for j, job in jobs.items()}
    raise TimeoutError(f"not all jobs finished within {timeout_s}s: {states}")


def test_a_batch_completes_with_videos_in_s3(stack: LocalStack) -> None:
    # Given a batch of eight job requests
    connection = connection_of(stack)
    jobs = [{"job_id": f"e2e-batch-{i}", "prompt": f"product shot number {i}", "metadata": {"n": i}} for i in range(8)]
    # When they are sent to the jobs queue and run to the end
    job_ids = send_jobs(connection, jobs)
    finished = wait_terminal(stack, job_ids)
    # Then every job completes with its video in S3 and exactly one Kling task
    assert {job.state for job in finished.values()} == {JobState.COMPLETED}
    s3 = connection.client("s3")
    for job_id in job_ids:
        head = s3.head_object(Bucket=connection.bucket, Key=f"videos/{job_id}.mp4")
        assert head["ContentLength"] == 200_000
    assert stack.simulator is not None
    per_external_id = stack.simulator.stats()["tasks_by_external_task_id"]
    assert all(per_external_id[j] == 1 for j in job_ids)
    stats = stack.function_stats()
    assert stats["SubmitFunction"]["invocations"] >= 1
    assert stats["DownloadFunction"]["invocations"] >= len(job_ids)


def test_a_poison_message_lands_in_the_dlq_with_its_reason(stack: LocalStack) -> None:
    # When a message with an invalid duration is sent and the DLQ is polled for it
    connection = connection_of(stack)
    sqs = connection.client("sqs")
    sqs.send_message(QueueUrl=connection.queue_url, MessageBody=json.dumps({"job_id": "e2e-poison", "duration": "7"}))
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        found = [
            m
            for m in sqs.receive_message(
                QueueUrl=connection.dead_letter_queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=1,
            ).get("Messages", [])
            if m["MessageAttributes"].get("job_id", {}).get("StringValue") == "e2e-poison"
        ]
        time.sleep(0.3)
    # Then it is dead-lettered with its reason and the job has FAILED
    assert found, "the poison message never reached the DLQ"
    reason = found[0]["MessageAttributes"]["failure_reason"]["StringValue"]
    assert "duration" in reason and "5" in reason
    job = connection.store().get("e2e-poison")
    assert job.state is JobState.FAILED and job.error_code == "INVALID_REQUEST"


def test_a_forged_callback_over_http_is_refused(stack: LocalStack, sim_defaults: None) -> None:
    # Given a job whose Kling task has been created, and runs for 20 s (no real callback can settle it
    # while the forgeries arrive; it ends before the tests that wait for every job to end)
    assert stack.simulator is not None
    stack.simulator.configure(generation_min_s=20 * 120, generation_max_s=20 * 120)
    connection = connection_of(stack)
    send_jobs(connection, [{"job_id": "e2e-forged", "prompt": "a quiet harbour"}])
    store = connection.store()
    deadline = time.monotonic() + 60
    while (job := store.find("e2e-forged")) is None or job.task_id is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    before = store.get("e2e-forged")
    # When callbacks claiming success come with a forged or missing token, they are refused
    url = f"{stack.endpoints['api_base_url']}/callbacks/e2e-forged"
    lie = {
        "task_id": before.task_id,
        "task_status": "succeed",
        "task_result": {"videos": [{"id": "x", "url": "https://evil.example.com/v.mp4"}]},
    }
    for params in ({"token": "f" * 64}, {}):
        response = httpx.post(url, params=params, json=lie, timeout=30)
        assert response.status_code == 401
    # Then the job took nothing from them
    after = store.get("e2e-forged")
    assert after.video_url != "https://evil.example.com/v.mp4"
    assert all(
        h.by != "callback" or h.state is not JobState.DOWNLOADING for h in after.history if h.at > before.updated_at
    )
    # When a callback names an unknown job
    unknown = httpx.post(f"{stack.endpoints['api_base_url']}/callbacks/nobody", params={"token": "0"}, json=lie)
    # Then it is refused the same way
    assert unknown.status_code == 401


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it, in a wide terminal so tables are not truncated."""
    return subprocess.run(
        [*CLI, *args],
        cwd=ROOT,
        env={**(env or os.environ), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, "--project-root", str(stack.project_root))


def test_cli_submit_status_get_round_trip(stack: LocalStack, tmp_path: Path) -> None:
    # When a job is submitted with the CLI
    submitted = run_cli(stack, "submit", "--prompt", "a kite over green hills", "--job-id", "e2e-cli", "--mode", "pro")
    # Then the CLI prints its job id
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() == "e2e-cli"
    # When the job has finished and its status is asked for
    wait_terminal(stack, ["e2e-cli"])
    status = run_cli(stack, "status", "e2e-cli", "--json")
    # Then it is COMPLETED with the video's S3 URI
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["state"] == "COMPLETED"
    assert body["s3_uri"].endswith("/videos/e2e-cli.mp4")
    # When the video is fetched with get
    out = tmp_path / "kite.mp4"
    got = run_cli(stack, "get", "e2e-cli", "--out", str(out))
    # Then the MP4 is written where asked
    assert got.returncode == 0, got.stderr
    assert out.stat().st_size == 200_000
    assert out.read_bytes()[4:8] == b"ftyp"
    # Then bad metadata and an unknown job are refused with exit code 2 and a reason
    bad = run_cli(stack, "submit", "--prompt", "x", "--duration", "5", "--metadata", "{not json")
    assert bad.returncode == 2 and "metadata" in bad.stderr
    missing = run_cli(stack, "status", "no-such-job")
    assert missing.returncode == 2 and "no job no-such-job" in missing.stderr


def test_cli_without_a_running_stack_says_what_to_do(tmp_path: Path) -> None:
    result = cli("status", "x", "--project-root", str(tmp_path))
    assert result.returncode == 2
    assert "kling-pipeline local up" in result.stderr


@pytest.mark.usefixtures("sim_defaults")
def test_throttling_with_a_small_account_limit_still_completes_the_batch(stack: LocalStack) -> None:
    # Given an account limit of 2 concurrent tasks and slow generation
    assert stack.simulator is not None
    stack.simulator.configure(concurrency_limit=2, generation_min_s=120.0, generation_max_s=180.0)
    refused_before = stack.simulator.stats()["creates"]["refused_by_code"].get("1303", 0)
    # When eight jobs are sent and run to the end
    job_ids = send_jobs(connection_of(stack), [{"job_id": f"e2e-busy-{i}", "prompt": f"scene {i}"} for i in range(8)])
    finished = wait_terminal(stack, job_ids, timeout_s=240)
    # Then all complete, past 1303 refusals, with exactly one Kling task each
    assert {job.state for job in finished.values()} == {JobState.COMPLETED}
    stats = stack.simulator.stats()
    assert stats["creates"]["refused_by_code"].get("1303", 0) > refused_before
    assert all(stats["tasks_by_external_task_id"][j] == 1 for j in job_ids)


def test_cli_dlq_shows_reasons_and_keeps_what_cannot_be_redriven(stack: LocalStack) -> None:
    # When a message with a broken JSON body is sent and the dlq command is polled until it shows it
    connection = connection_of(stack)
    connection.client("sqs").send_message(QueueUrl=connection.queue_url, MessageBody="{broken json")
    deadline = time.monotonic() + 60
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        shown = run_cli(stack, "dlq", "--json")
        assert shown.returncode == 0, shown.stderr
        rows = [r for r in json.loads(shown.stdout)["messages"] if r["body"] == "{broken json"]
        if rows:
            break
        time.sleep(0.5)
    # Then dlq shows its reason, and list shows its job as FAILED
    assert rows and "not JSON" in rows[0]["reason"]
    listed = run_cli(stack, "list", "--state", "FAILED", "--json")
    assert any(item["job_id"] == rows[0]["job_id"] for item in json.loads(listed.stdout))
    # When it is redriven by its message id
    redriven = run_cli(stack, "dlq", "--redrive", "--message-id", rows[0]["message_id"], "--json")
    # Then it is left where it is, saying why: its job was refused for good (FAILED), so sent again it
    # would only be dropped as a duplicate
    answer = json.loads(redriven.stdout)
    assert answer["redriven"] == 0
    (row,) = [r for r in answer["messages"] if r["message_id"] == rows[0]["message_id"]]
    assert row["outcome"] == "left" and "FAILED" in row["note"]
    again = json.loads(run_cli(stack, "dlq", "--json").stdout)["messages"]
    assert any(r["message_id"] == rows[0]["message_id"] and r["body"] == "{broken json" for r in again)
    # When it is redriven anyway (--include-refused)
    forced = json.loads(
        run_cli(stack, "dlq", "--redrive", "--include-refused", "--message-id", rows[0]["message_id"], "--json").stdout
    )
    # Then it goes back as a reference to its job, never as the broken body: no second job is made of it
    assert forced["redriven"] == 1
    failed_before = {item["job_id"] for item in json.loads(listed.stdout)}
    time.sleep(2)
    failed_after = {item["job_id"] for item in json.loads(run_cli(stack, "list", "--state", "FAILED", "--json").stdout)}
    assert failed_after == failed_before


def test_cli_watch_until_done_shows_counts_by_state(stack: LocalStack) -> None:
    # Given a job just sent
    send_jobs(connection_of(stack), [{"job_id": "e2e-watched", "prompt": "a slow sunrise"}])
    # When watch runs until every job is done
    watched = run_cli(stack, "watch", "--until-done", "--interval", "0.2")
    # Then it shows counts by state and returns only once the job has completed
    assert watched.returncode == 0, watched.stderr
    assert "jobs by state" in watched.stdout and "COMPLETED" in watched.stdout
    assert connection_of(stack).store().get("e2e-watched").state is JobState.COMPLETED  # it waited for the job


def test_cli_against_aws_without_credentials_says_how_to_fix_it(tmp_path: Path) -> None:
    # Given an environment with no AWS credentials at all
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # When the CLI is pointed at a stack on AWS
    result = cli("list", "--stack-name", "kling-pipeline-dev", env=env)
    # Then it exits with 2 and says how to fix it
    assert result.returncode == 2
    assert "AWS credentials not found" in result.stderr
