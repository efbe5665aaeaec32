"""Callback URL tokens: HMAC of the job id, compared in constant time, never logged."""

from kling_pipeline.adapters.callback_tokens import callback_url, job_token, verify_job_token
from kling_pipeline.redaction import redact_url

SECRET = "s" * 64


def test_token_verifies_only_for_its_job_and_secret() -> None:
    token = job_token(SECRET, "job-1")
    assert verify_job_token((SECRET,), "job-1", token)
    assert not verify_job_token((SECRET,), "job-2", token)
    assert not verify_job_token(("t" * 64,), "job-1", token)
    assert not verify_job_token((SECRET,), "job-1", None)
    assert not verify_job_token((SECRET,), "job-1", "")
    assert not verify_job_token((SECRET,), "job-1", token[:-1] + ("0" if token[-1] != "0" else "1"))


def test_a_token_signed_with_the_previous_secret_verifies_while_it_is_offered() -> None:
    # Given a URL signed before the secret was rotated
    old = job_token("o" * 64, "job-1")
    # Then it verifies while the previous secret is offered beside the current one, and not after
    assert verify_job_token((SECRET, "o" * 64), "job-1", old)
    assert not verify_job_token((SECRET,), "job-1", old)


def test_any_text_as_token_or_job_id_is_simply_wrong() -> None:
    # API Gateway decodes %C3%A9 to é; hmac.compare_digest raises on non-ASCII str: compared as bytes.
    for token in ("é", "\ud800", "a" * 10_000, "0" * 64 + "é", "\x00"):
        assert not verify_job_token((SECRET,), "job-1", token)
    assert not verify_job_token((SECRET,), "\ud800é", job_token(SECRET, "job-1"))


def test_callback_url_shape_and_redaction() -> None:
    url = callback_url("https://api.example.com/v1/", "job-1", SECRET)
    assert url == f"https://api.example.com/v1/callbacks/job-1?token={job_token(SECRET, 'job-1')}"
    assert redact_url(url) == "https://api.example.com/v1/callbacks/job-1?token=***"
    assert job_token(SECRET, "job-1") not in redact_url(url)
