"""Callback URL tokens: HMAC of the job id, compared in constant time, never logged."""

from kling_pipeline.adapters.callback_tokens import callback_url, job_token, redact_token, verify_job_token

SECRET = "s" * 64


def test_token_verifies_only_for_its_job_and_secret() -> None:
    token = job_token(SECRET, "job-1")
    assert verify_job_token(SECRET, "job-1", token)
    assert not verify_job_token(SECRET, "job-2", token)
    assert not verify_job_token("t" * 64, "job-1", token)
    assert not verify_job_token(SECRET, "job-1", None)
    assert not verify_job_token(SECRET, "job-1", "")
    assert not verify_job_token(SECRET, "job-1", token[:-1] + ("0" if token[-1] != "0" else "1"))


def test_callback_url_shape_and_redaction() -> None:
    url = callback_url("https://api.example.com/v1/", "job-1", SECRET)
    assert url == f"https://api.example.com/v1/callbacks/job-1?token={job_token(SECRET, 'job-1')}"
    assert redact_token(url) == "https://api.example.com/v1/callbacks/job-1?token=***"
    assert job_token(SECRET, "job-1") not in redact_token(url)
