"""Bad input never becomes an error deeper down: every message is submitted, refused with a reason
that names the field (on its first failure, into the DLQ), or sent back for later; every callback is
answered below 500. Property tests over what producers and the internet can send."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipeline.adapters.callback_tokens import job_token
from kling_pipeline.claims import Outcome
from kling_pipeline.lifecycle import JobState
from kling_pipeline.settings import SubmitSettings
from kling_pipeline.submit import handle_job_message, submit_dependencies
from tests.support.scenarios import SIGNING_SECRET, Completion, Pipeline, as_callback_body, kling_task, submitted

ANY_TEXT = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=300)
PROPERTY = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# -- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"job_id": "big-float", "prompt": "x", "metadata": {"price": 1e200}}', "metadata.price"),
        ('{"job_id": "long-int", "prompt": "x", "metadata": {"n": ' + "7" * 40 + "}}", "metadata.n"),
        ('{"job_id": "nan", "prompt": "x", "metadata": {"n": NaN}}', "NaN"),
        ('{"job_id": "inf", "prompt": "x", "metadata": {"n": -Infinity}}', "Infinity"),
        ('{"job_id": "deep", "prompt": "x", "metadata": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "nests deeper"),
        ('{"job_id": "surrogate", "prompt": "\\ud800 a lone half"}', "prompt"),
        ('{"job_id": "huge", "prompt": "x", "metadata": {"blob": "' + "a" * 300_000 + '"}}', "bytes"),
    ],
)
def test_a_message_dynamodb_cannot_hold_is_dead_lettered_at_once_with_the_field(
    pipeline: Pipeline, body: str, named: str
) -> None:
    # Given a message whose values DynamoDB cannot store
    handler = pipeline.submit_handler()
    # When it is delivered once
    pipeline.send(body)
    pipeline.drain(handler, lambda: len(pipeline.dead_letters()) == 1)
    # Then it is in the DLQ with a reason that names the field, and nothing reached Kling
    (dead,) = pipeline.dead_letters()
    assert named in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert pipeline.sim.stats()["creates"]["accepted"] == 0


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["job_id", "prompt", "kind", "duration", "mode", "metadata", "model", "image", "task_token", "x"]
)
MESSAGES = (
    ANY_TEXT
    | st.dictionaries(FIELDS, JSON_VALUES, max_size=6).map(lambda d: json.dumps(d, allow_nan=True))
    | st.builds(lambda d, n: json.dumps(d)[:n], st.dictionaries(FIELDS, JSON_VALUES, max_size=4), st.integers(0, 60))
)


@PROPERTY
@given(body=MESSAGES)
def test_any_message_is_submitted_refused_or_sent_back_never_an_error(pipeline: Pipeline, body: str) -> None:
    # Given any body at all
    pipeline.use_function_env("SubmitFunction")
    deps = submit_dependencies(SubmitSettings.from_environment())
    # When the submit path handles it
    result = handle_job_message(body, "m-0123456789abcdef", deps, owner="property", time_left_ms=30_000)
    # Then it is one of the outcomes the pipeline knows, with a reason when refused
    assert result.outcome in set(Outcome)
    if result.outcome is Outcome.REJECTED:
        assert result.detail


def test_a_body_that_is_not_json_nor_valid_unicode_is_refused_and_kept_escaped(pipeline: Pipeline) -> None:
    # Given a body that is not JSON and holds a lone surrogate (DynamoDB and SQS take only valid UTF-8)
    pipeline.use_function_env("SubmitFunction")
    deps = submit_dependencies(SubmitSettings.from_environment())
    # When the submit path handles it
    result = handle_job_message("\ud800 half a character", "m-surrogate", deps, owner="test", time_left_ms=30_000)
    # Then it is refused with the reason, recorded FAILED under its message id, its body kept escaped
    assert result.outcome is Outcome.REJECTED and "not JSON" in result.detail
    job = pipeline.store.get("m-surrogate")
    assert job.state is JobState.FAILED and job.error_code == "INVALID_REQUEST"
    assert (job.model_extra or {})["raw_message"] == "\\ud800 half a character"
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == "\\ud800 half a character"


# -- callbacks -----------------------------------------------------------------------------------


@pytest.fixture
def known_job(completion: Completion) -> str:
    job = submitted(completion, "cb-target")
    assert job.task_id is not None
    return job.job_id


@PROPERTY
@given(
    job_id=ANY_TEXT,
    token=st.none() | ANY_TEXT,
    body=ANY_TEXT | st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)
def test_no_callback_from_anyone_gets_a_5xx(
    completion: Completion, known_job: str, job_id: str, token: str | None, body: str
) -> None:
    # Given any path, token and body (a forger's, a scanner's, a broken proxy's)
    before = completion.pipeline.store.get(known_job)
    # When they are POSTed to the callback route
    status = completion.callback(job_id, body, token=token)["statusCode"]
    # Then the answer is below 500 and the job has not moved
    assert status < 500
    assert completion.pipeline.store.get(known_job).version == before.version


@PROPERTY
@given(body=ANY_TEXT | JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)))
def test_a_callback_with_a_good_token_and_a_bad_body_is_refused_below_500(
    completion: Completion, known_job: str, body: str
) -> None:
    status = completion.callback(known_job, body)["statusCode"]
    assert status < 500


def test_a_non_ascii_token_is_401(completion: Completion, known_job: str) -> None:
    # API Gateway decodes %C3%A9 to é; hmac.compare_digest raises on such a str
    assert completion.callback(known_job, "{}", token="é" * 64)["statusCode"] == 401


# -- rotating the callback signing secret --------------------------------------------------------


def test_callback_urls_signed_before_a_rotation_work_for_the_grace_window(completion: Completion) -> None:
    import boto3

    from kling_pipeline.adapters import reset_container_state

    # Given a job whose callback URL was signed with the secret of the day
    job = submitted(completion, "rotated")
    # (its end, not "processing": a task here is in processing for a tenth of a second, too brief to wait for)
    done = kling_task(completion, job.kind, job.task_id, "succeed")
    old_token = job_token(SIGNING_SECRET, "rotated")
    # When the secret is rotated (the old one becomes AWSPREVIOUS)
    secret_arn = completion.pipeline.resolver.refs["CallbackSigningSecret"]
    boto3.client("secretsmanager").put_secret_value(SecretId=secret_arn, SecretString="n" * 64)
    reset_container_state()
    # Then Kling's callbacks with the old URL are still accepted within the grace window ...
    assert completion.callback("rotated", as_callback_body(done), token=old_token)["statusCode"] == 200
    # ... and refused once there is none
    completion.reconfigure("CallbackFunction", CALLBACK_SECRET_GRACE_S="0")
    assert completion.callback("rotated", as_callback_body(done), token=old_token)["statusCode"] == 401
    assert (
        completion.callback("rotated", as_callback_body(done), token=job_token("n" * 64, "rotated"))["statusCode"]
        == 200
    )
