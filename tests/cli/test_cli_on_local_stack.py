"""The CLI as a user runs it (kling_local.cli:main), against one local stack: images from files and
checked before sending, one output per command whichever path it takes (queue or jobs API), tables
that never cut an id, and a DLQ redrive that says what became of each message."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kling_local import terminal
from kling_local.cli import main
from kling_local.connection import PipelineConnection
from kling_local.sim import SimConfig
from kling_local.sim.media import sample_image
from kling_local.stack import LocalStack, StackOptions
from kling_pipeline.lifecycle import JobState
from kling_pipeline.poll_schedule import PollSchedule
from kling_pipeline.requests import JobRequest
from tests.support.template import ROOT
from tests.support.waiting import wait_for

SAMPLES = ROOT / "local" / "kling_local" / "data"
LONG_ID = "order-" + "7" * 58  # 64 characters, the longest job id there is


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = SimConfig(
        access_key=f"cli-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        speed=200.0,
        video_size_bytes=50_000,
        concurrency_limit=20,
        seed=27,
    )
    root = tmp_path_factory.mktemp("cli")
    options = StackOptions(template_path=ROOT / "template.yaml", project_root=root, sim_config=config)
    with LocalStack(options) as running:
        yield running


@pytest.fixture
def run(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> Any:
    """`kling-pipeline ARGS --project-root ROOT` as a user types it: (exit code, stdout, stderr)."""

    def run_cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--project-root", str(stack.options.project_root)])
        out, err = capsys.readouterr()
        return code, out, " ".join(err.split())  # rich wraps stderr at 80 columns

    return run_cli


def connection(stack: LocalStack) -> PipelineConnection:
    return PipelineConnection.of_local_stack(stack.endpoints)


def state_of(stack: LocalStack, job_id: str) -> JobState | None:
    job = connection(stack).store().find(job_id)
    return job.state if job else None


def ended(stack: LocalStack, job_id: str) -> bool:
    state = state_of(stack, job_id)
    return state is not None and state.is_terminal


def narrow(monkeypatch: pytest.MonkeyPatch, width: int) -> io.StringIO:
    """The CLI's console as a terminal of `width` columns; what it printed."""
    screen = io.StringIO()
    monkeypatch.setattr(terminal, "console", Console(width=width, file=screen, color_system=None))
    return screen


# ---------------------------------------------------------------------------------------------- 2: images


def test_an_image_file_is_uploaded_to_the_input_bucket_and_made_a_video(stack: LocalStack, run: Any) -> None:
    # When a job is submitted with the demo's sample image, a file on this machine
    code, out, err = run("submit", "--image", str(SAMPLES / "fox.png"), "--prompt", "it wakes up")
    # Then it is sent, the file is in the input bucket, and the job refers to it there
    assert code == 0, err
    job_id = out.strip()
    job = wait_for(lambda: connection(stack).store().find(job_id), 30, what="the job's record")
    bucket, _, key = job.request["image"].removeprefix("s3://").partition("/")
    assert bucket == stack.endpoints["input_bucket"] == "kling-pipeline-inputs"
    stored = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == (SAMPLES / "fox.png").read_bytes()
    # And the pipeline makes its video (the image passed the submit function's own checks)
    wait_for(lambda: ended(stack, job_id), 60, what="the job's end")
    assert state_of(stack, job_id) is JobState.COMPLETED


def test_an_image_already_in_the_input_bucket_is_taken(stack: LocalStack, run: Any) -> None:
    stack.client("s3").put_object(
        Bucket="kling-pipeline-inputs", Key="mine/meadow.jpg", Body=sample_image(480, 480, "jpg")
    )
    code, out, err = run("submit", "--image", "s3://kling-pipeline-inputs/mine/meadow.jpg", "--prompt", "wind")
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize(
    ("image", "says"),
    [
        (
            "s3://my-inputs/fox.png",
            "--image s3://my-inputs/fox.png: s3:// images come from the input bucket, kling-pipeline-inputs",
        ),
        ("s3://kling-pipeline-inputs/none.png", "no such object in kling-pipeline-inputs"),
        ("http://example.com/fox.png", "an image URL must be https://"),
        ("./no-such-fox.png", "--image ./no-such-fox.png: no such file"),
        ("SMALL", "is 200x200 px; Kling needs 300 px or more on the short side (rule image-min-side)"),
        ("GIF", "is not a JPEG or PNG image (by its content) (rule image-type)"),
        ("S3-SMALL", "is 320x200 px"),
    ],
)
def test_an_image_the_pipeline_would_refuse_is_refused_before_anything_is_sent(
    stack: LocalStack, run: Any, tmp_path: Path, image: str, says: str
) -> None:
    # Given an image the job would fail on a moment later (in the DLQ)
    if image == "SMALL":
        image = str(tmp_path / "small.png")
        Path(image).write_bytes(sample_image(200, 200, "png"))
    elif image == "GIF":
        image = str(tmp_path / "fox.png")  # named .png, but a GIF inside
        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (400, 400)).save(out, format="GIF")
        Path(image).write_bytes(out.getvalue())
    elif image == "S3-SMALL":
        stack.client("s3").put_object(Bucket="kling-pipeline-inputs", Key="small.png", Body=sample_image(320, 200))
        image = "s3://kling-pipeline-inputs/small.png"
    uploads = stack.client("s3").list_objects_v2(Bucket="kling-pipeline-inputs", Prefix="uploads/").get("KeyCount")
    # When it is submitted, Then the CLI says what is wrong, and sends and uploads nothing
    code, out, err = run("submit", "--image", image, "--prompt", "p", "--job-id", "never-sent")
    assert code == 2 and out == ""
    assert says in err
    assert state_of(stack, "never-sent") is None
    assert (
        stack.client("s3").list_objects_v2(Bucket="kling-pipeline-inputs", Prefix="uploads/").get("KeyCount") == uploads
    )


# ---------------------------------------------------------------------------------------------- 8: one dialect


def test_the_jobs_api_path_prints_what_the_queue_path_prints(stack: LocalStack, run: Any) -> None:
    api = stack.endpoints["jobs_api_url"]
    # When one job is submitted through the queue and one through the jobs API
    code_q, out_q, _ = run("submit", "--prompt", "a fox", "--job-id", "dialect-queue")
    code_a, out_a, err_a = run("submit", "--api-url", api, "--prompt", "a fox", "--job-id", "dialect-api")
    # Then each prints its job id alone
    assert (code_q, out_q) == (0, "dialect-queue\n")
    assert (code_a, out_a) == (0, "dialect-api\n"), err_a
    # When the job is read both ways, once it ended
    wait_for(lambda: ended(stack, "dialect-api"), 60, what="the job's end")
    _, by_table, _ = run("status", "dialect-api")
    code, by_api, err = run("status", "dialect-api", "--api-url", api)
    # Then the answer is the same text (the table, not the API's raw JSON), and the same JSON with --json
    assert code == 0, err
    assert by_api == by_table
    assert by_api.startswith("dialect-api  COMPLETED  (text2video)\n")
    _, json_table, _ = run("status", "dialect-api", "--json")
    _, json_api, _ = run("status", "dialect-api", "--json", "--api-url", api)
    assert json.loads(json_api) == json.loads(json_table) | {"reserved_day": None, "next_poll_at": None, "polls": None}


def test_an_unknown_job_is_said_alike_both_ways(stack: LocalStack, run: Any) -> None:
    api = stack.endpoints["jobs_api_url"]
    _, _, by_table = run("status", "no-such-job")
    code, _, by_api = run("status", "no-such-job", "--api-url", api)
    assert code == 2
    assert by_table.startswith("error: no job no-such-job in ") and by_api.startswith("error: no job no-such-job (")


def test_cancel_finds_the_local_jobs_api_without_api_url(stack: LocalStack, run: Any) -> None:
    # Given a job that ended
    run("submit", "--prompt", "a fox", "--job-id", "cancel-late")
    wait_for(lambda: ended(stack, "cancel-late"), 60, what="the job's end")
    # When it is cancelled without --api-url, Then the local stack's jobs API answers (it cannot be cancelled)
    code, out, err = run("cancel", "cancel-late")
    assert code == 2 and out == ""
    assert err.startswith("error: the jobs API said 409: ") and "already ended" in err


def test_cancel_a_fal_job_in_fals_queue_and_one_fal_is_running(stack: LocalStack, run: Any, tmp_path: Path) -> None:
    # Given fal runs one request at a time, for long: a first fal job runs, a second waits in fal's queue
    fal = stack.fal_simulator
    assert fal is not None
    before = fal.config
    fal.configure(concurrency_limit=1, generation_min_s=100_000.0, generation_max_s=100_000.0)
    try:
        for job_id in ("fal-cli-running", "fal-cli-queued"):
            jobs = tmp_path / f"{job_id}.jsonl"
            jobs.write_text(json.dumps({"job_id": job_id, "prompt": "a fox", "provider": "fal", "mode": "pro"}))
            assert run("submit", "--file", str(jobs))[0] == 0
            wait_for(lambda j=job_id: state_of(stack, j) is JobState.SUBMITTED, 60, what=f"{job_id} at fal")
        # When the queued one is cancelled, Then fal is asked (PUT cancel_url) and the answer says what fal bills
        code, out, err = run("cancel", "fal-cli-queued")
        assert code == 0, err
        assert out.startswith("fal-cli-queued CANCELLED: cancelled at fal") and "bills nothing" in out
        assert fal.stats()["cancels_accepted"] == 1
        # When the running one is cancelled, Then it is refused: it runs to its end and is billed, saying how much
        code, out, err = run("cancel", "fal-cli-running")
        assert code == 2 and "fal is running request" in err and "billed ($" in err
        assert state_of(stack, "fal-cli-running") is JobState.SUBMITTED
    finally:
        fal.configure(
            concurrency_limit=before.concurrency_limit,
            generation_min_s=before.generation_min_s,
            generation_max_s=before.generation_max_s,
        )
        fal.finish_running()  # the running one ends and is collected: later tests watch every job to its end
    wait_for(lambda: ended(stack, "fal-cli-running"), 60, what="the running fal job's end")


def test_an_unreachable_jobs_api_is_said_so_once(run: Any) -> None:
    code, _, err = run("status", "some-job", "--api-url", "http://127.0.0.1:9/v1")
    assert code == 2
    assert err.startswith("error: cannot reach the jobs API at http://127.0.0.1:9/v1")
    assert "said" not in err


# ---------------------------------------------------------------------------------------------- 6: tables


@pytest.mark.parametrize("width", [80, 60])
def test_list_and_watch_show_whole_ids_and_headers_on_a_narrow_terminal(
    stack: LocalStack, run: Any, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    # Given jobs with ids of 64 characters, one done
    run("submit", "--prompt", "a long id", "--job-id", LONG_ID)
    run("submit", "--prompt", "a long id too", "--job-id", LONG_ID[:-1] + "8")
    wait_for(lambda: ended(stack, LONG_ID) and ended(stack, LONG_ID[:-1] + "8"), 60, what="the jobs' end")
    # When they are listed on a terminal of `width` columns
    screen = narrow(monkeypatch, width)
    code, _, err = run("list", "--limit", "500")
    # Then every id is there whole (a person copies it into `status`)
    assert code == 0, err
    listed = screen.getvalue()
    assert LONG_ID in listed and LONG_ID[:-1] + "8" in listed
    assert "…" not in listed
    # And `watch` shows every state's name whole
    screen = narrow(monkeypatch, width)
    code, _, err = run("watch", "--until-done", "--interval", "0.1")
    assert code == 0, err
    assert all(state.value in screen.getvalue() for state in JobState)
    assert "…" not in screen.getvalue()


def test_a_wide_terminal_gets_a_table(stack: LocalStack, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a job recorded (the submit function takes it from the queue a moment after `submit`)
    run("submit", "--prompt", "short", "--job-id", "wide-1")
    wait_for(lambda: state_of(stack, "wide-1") is not None, 60, what="the job's record")
    # When the jobs are listed on a terminal of 250 columns, then they are a table
    screen = narrow(monkeypatch, 250)
    run("list", "--limit", "500")
    assert "┃ job_id" in screen.getvalue() and "wide-1" in screen.getvalue()


# ---------------------------------------------------------------------------------------------- 7: dlq --redrive


def dead_letter(stack: LocalStack, body: dict[str, Any], job_id: str, reason: str) -> None:
    stack.client("sqs").send_message(
        QueueUrl=stack.endpoints["dead_letter_queue_url"],
        MessageBody=json.dumps(body),
        MessageAttributes={
            "job_id": {"DataType": "String", "StringValue": job_id},
            "failure_reason": {"DataType": "String", "StringValue": reason},
        },
    )


def dead_letters(stack: LocalStack) -> dict[str, str]:
    """message id -> job id of what waits in the DLQ (left there)."""
    sqs = stack.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=stack.endpoints["dead_letter_queue_url"],
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {m["MessageId"]: m["MessageAttributes"]["job_id"]["StringValue"] for m in messages}


def dead_letter_ids(stack: LocalStack) -> list[str]:
    return sorted(dead_letters(stack).values())


@pytest.mark.parametrize("width", [60])
def test_redrive_sends_back_what_can_run_and_says_what_became_of_each(
    stack: LocalStack, run: Any, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    # Given a request the pipeline refused (its job FAILED, its message in the DLQ with the reason)
    sqs = stack.client("sqs")
    sqs.send_message(
        QueueUrl=stack.endpoints["jobs_queue_url"],
        MessageBody=json.dumps({"job_id": "refused-" + "9" * 56, "prompt": "x", "duration": "7"}),
    )
    wait_for(lambda: "refused-" + "9" * 56 in dead_letter_ids(stack), 60, what="the refusal in the DLQ")
    assert state_of(stack, "refused-" + "9" * 56) is JobState.FAILED
    # And a parked job: recorded QUEUED, its message dead-lettered until the cause is fixed
    request = JobRequest.model_validate({"job_id": "parked-1", "prompt": "a parked fox"})
    store = connection(stack).store()
    store.schedule = PollSchedule(
        expected_std_s=60,
        expected_pro_s=60,
        poll_interval_s=60,
        callback_wait_s=60,
        download_check_s=60,
        queued_report_s=3600,
    )
    store.create("parked-1", request, by="test")
    dead_letter(stack, request.as_message(), "parked-1", "the Kling account has no units: top it up, then redrive")
    # When the DLQ is redriven, on a narrow terminal
    screen = narrow(monkeypatch, width)
    code, _, err = run("dlq", "--redrive")
    assert code == 0, err
    said = screen.getvalue()
    # Then the parked job is sent back and resumes, and the refusal stays where it is, each said
    assert "refused-" + "9" * 56 in said and "parked-1" in said  # whole ids, even at 60 columns
    assert "redriven" in said and "sent back to the jobs queue: job parked-1 is QUEUED and resumes" in said
    assert "left" in said and f"job {'refused-' + '9' * 56} is FAILED (INVALID_REQUEST: " in said
    assert "redriven 1 message(s) to the jobs queue; 1 left in the dead-letter queue" in " ".join(said.split())
    assert dead_letter_ids(stack) == ["refused-" + "9" * 56]
    wait_for(lambda: ended(stack, "parked-1"), 60, what="the parked job's end")
    assert state_of(stack, "parked-1") is JobState.COMPLETED
    # When it is asked to send the refused ones too, Then it does, and says so
    screen = narrow(monkeypatch, width)
    (refused_message,) = dead_letters(stack)
    code, _, err = run("dlq", "--redrive", "--include-refused")
    assert code == 0, err
    assert "(--include-refused)" in screen.getvalue()
    assert refused_message not in dead_letters(stack)  # sent (and, still invalid, refused again)
