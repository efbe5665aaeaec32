"""Jobs files for `kling-pipeline submit --file`: JSONL and CSV, every bad job named before anything is sent."""

from pathlib import Path

import pytest

from kling_local.jobs_files import read_jobs_file, validate_jobs
from kling_local.terminal import UsageError


def test_jsonl_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('# product clips\n{"prompt": "a mug", "duration": 10}\n\n{"prompt": "a shoe", "job_id": "s-1"}\n')
    jobs = validate_jobs(read_jobs_file(path), str(path))
    assert [j["prompt"] for j in jobs] == ["a mug", "a shoe"]


def test_csv_columns_are_fields_and_metadata_is_json(tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text('prompt,mode,metadata\na mug,pro,"{""sku"": ""M1""}"\na shoe,,\n')
    jobs = validate_jobs(read_jobs_file(path), str(path))
    assert jobs == [{"prompt": "a mug", "mode": "pro", "metadata": {"sku": "M1"}}, {"prompt": "a shoe"}]


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    with pytest.raises(UsageError, match=r"jobs.jsonl:2: not JSON"):
        read_jobs_file(path)


def test_every_invalid_job_is_named_and_nothing_is_sent(tmp_path: Path) -> None:
    jobs = [{"prompt": "ok"}, {"prompt": "x", "duration": "7"}, {"prompt": "y", "mode": "turbo"}]
    with pytest.raises(UsageError) as info:
        validate_jobs(jobs, "batch.jsonl")
    message = str(info.value)
    assert "nothing sent" in message
    assert "job 2" in message and "duration" in message
    assert "job 3" in message and "mode" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_jobs_file(tmp_path / "absent.jsonl")
