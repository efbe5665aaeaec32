"""The jobs API's rules without AWS: validation answers that name the field, page tokens, the
webhook URL rules, the webhook backoff and signature, the OpenAPI document, and the template's auth."""

from __future__ import annotations

import base64
import itertools
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from kling_local.stack.sam_translation import localise_uris, sam_transform
from kling_pipeline.adapters.announcements import event_detail
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy, check_webhook_url, webhook_target
from kling_pipeline.api import decode_token, encode_token, record_time
from kling_pipeline.api_routes import build_app, openapi_document
from kling_pipeline.errors import JobsApiError, WebhookRefusedError
from kling_pipeline.lifecycle import ALLOWED_TRANSITIONS, TERMINAL_STATES, Job, JobState
from kling_pipeline.poll_schedule import SHARDS, shard_number
from kling_pipeline.webhook import event_job_id, retry_delay, webhook_body
from tests.support.template import ROOT, load_template

JOBS_ROUTES = {
    ("/jobs", "POST"),
    ("/jobs", "GET"),
    ("/jobs/query", "POST"),
    ("/jobs/{job_id}", "GET"),
    ("/jobs/{job_id}/cancel", "POST"),
    ("/openapi.json", "GET"),
}


def no_pipeline() -> Any:
    raise AssertionError("a request refused by validation must never reach the pipeline")


APP = build_app(no_pipeline)


def request(
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    event = {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "headers": {"Content-Type": content_type},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None,
        "requestContext": {"stage": "v1", "domainName": "api.example.com", "path": f"/v1{path}"},
        "isBase64Encoded": False,
    }
    answer = APP.resolve(event, {})  # type: ignore[arg-type]
    return int(answer["statusCode"]), json.loads(answer["body"])


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "field"),
    [
        ("POST", "/jobs", {"prompt": "a fox", "duration": "7"}, None, "duration"),
        ("POST", "/jobs", {"prompt": "a fox", "colour": "red"}, None, "colour"),
        ("POST", "/jobs", {"prompt": "a fox", "job_id": "has space"}, None, "job_id"),
        ("POST", "/jobs", {"jobs": [{"prompt": "ok"}, {"prompt": "x", "mode": "max"}]}, None, "jobs[1].mode"),
        ("POST", "/jobs", {"jobs": []}, None, "jobs"),
        ("POST", "/jobs", {"jobs": [{"prompt": f"job {i}"} for i in range(101)]}, None, "jobs"),
        ("POST", "/jobs", None, None, None),
        ("POST", "/jobs", "not json", None, None),
        ("POST", "/jobs/query", {"ids": []}, None, "ids"),
        ("POST", "/jobs/query", {"ids": [f"id-{i}" for i in range(101)]}, None, "ids"),
        ("POST", "/jobs/query", {"ids": ["ok", "not/ok"]}, None, "ids[1]"),
        ("GET", "/jobs", None, None, "state"),
        ("GET", "/jobs", None, {"state": "LOST"}, "state"),
        ("GET", "/jobs", None, {"state": "FAILED", "limit": "0"}, "limit"),
        ("GET", "/jobs", None, {"state": "FAILED", "limit": "101"}, "limit"),
        ("GET", "/jobs", None, {"state": "FAILED", "since": "yesterday"}, "since"),
        # Valid ISO 8601 whose UTC form is before year 1: an overflow, not a 500.
        ("GET", "/jobs", None, {"state": "FAILED", "since": "0001-01-01T00:00:00+14:00"}, "since"),
        ("GET", "/jobs", None, {"state": "FAILED", "since": "9999-12-31T23:59:59-14:00"}, "since"),
        ("GET", "/jobs/bad$id", None, None, "job_id"),
        ("POST", "/jobs/bad$id/cancel", None, None, "job_id"),
    ],
)
def test_every_invalid_request_is_a_400_that_names_the_field(
    method: str, path: str, body: Any, query: dict[str, str] | None, field: str | None
) -> None:
    status, answer = request(method, path, body, query)
    assert status == 400, answer
    error = answer["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error.get("field") == field
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"prompt": "a fox", "duration": "banana"}, "duration: 'banana' is not a duration; seconds: 5 or 10; 3 to 15"),
        ({"prompt": "a fox", "job_id": "has space"}, "job_id: 'has space' is not a job id; use 1 to 64 letters"),
    ],
)
def test_a_field_with_a_pattern_is_refused_with_what_is_valid_not_the_pattern(body: Any, says: str) -> None:
    status, answer = request("POST", "/jobs", body)
    assert status == 400
    assert says in answer["error"]["message"] and "^[" not in answer["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"prompt": "a red fox"}', "application/x-www-form-urlencoded"),  # curl -d without -H
        ("prompt=a+red+fox", "application/x-www-form-urlencoded"),  # a form that would read as fields
        ('{"prompt": "a red fox"}', "text/plain"),
    ],
)
def test_a_body_not_sent_as_json_is_told_to_be(body: str, content_type: str) -> None:
    # Given a job body posted as a form (curl -d without a content-type header) or as text
    for path in ("/jobs", "/jobs/query"):
        # When it is sent, Then the answer says how to send it, not that a field is unknown
        status, answer = request("POST", path, body, content_type=content_type)
        assert status == 415, answer
        assert answer["error"] == {
            "code": "UNSUPPORTED_MEDIA_TYPE",
            "message": "send the request body as JSON, with the header content-type: application/json",
            "field": "content-type",
        }


def test_a_batch_with_several_bad_jobs_lists_each_of_them() -> None:
    status, answer = request(
        "POST", "/jobs", {"jobs": [{"prompt": "x", "mode": "max"}, {"prompt": "y", "duration": 3}]}
    )
    assert status == 400
    details = answer["error"]["details"]
    assert [(d["index"], d["field"]) for d in details] == [(0, "jobs[0].mode"), (1, "jobs[1].duration")]


def test_an_unknown_route_is_a_404_in_the_apis_words() -> None:
    status, answer = request("GET", "/nothing")
    assert status == 404
    assert answer["error"]["code"] == "ROUTE_NOT_FOUND"


def forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_page_tokens_round_trip_and_refuse_anything_else() -> None:
    shard = shard_number("a-1")
    positions = {shard: ("2026-01-02T03:04:05.678Z", "a-1"), (shard + 1) % SHARDS: None}
    token = encode_token(JobState.FAILED, positions)
    assert decode_token(token, JobState.FAILED, None) == positions
    assert decode_token(token, JobState.FAILED, "2026-01-01T00:00:00.000Z") == positions
    good = {"v": 2, "state": "FAILED", "s": {str(shard): ["2026-01-02T03:04:05.678Z", "a-1"]}}
    for bad, state, since in [
        (token, JobState.COMPLETED, None),  # another listing's token
        (token, JobState.FAILED, "2027-01-01T00:00:00.000Z"),  # before the window asked for
        ("!!!", JobState.FAILED, None),
        (
            forged({"v": 1, "k": {"job_id": "a-1", "state": "FAILED", "updated_at": "2026-01-02T03:04:05.678Z"}}),
            JobState.FAILED,
            None,
        ),
        (forged(good | {"s": {}}), JobState.FAILED, None),
        (forged(good | {"s": {"16": None}}), JobState.FAILED, None),  # no such shard
        (forged(good | {"s": {str(shard): ["2026-01-02T03:04:05.678Z"]}}), JobState.FAILED, None),
        (forged(good | {"s": {str((shard + 1) % SHARDS): ["2026-01-02T03:04:05.678Z", "a-1"]}}), JobState.FAILED, None),
        # Key values DynamoDB refuses (ValidationException, a 500) or that no record holds.
        (forged(good | {"s": {str(shard): ["2026-01-02T03:04:05.678Z", ""]}}), JobState.FAILED, None),
        (forged(good | {"s": {str(shard): ["2026-01-02T03:04:05.678Z", "not/a job"]}}), JobState.FAILED, None),
        (forged(good | {"s": {str(shard): ["", "a-1"]}}), JobState.FAILED, None),
        (forged(good | {"s": {str(shard): ["yesterday", "a-1"]}}), JobState.FAILED, None),
        (forged(good | {"s": {str(shard): [1, "a-1"]}}), JobState.FAILED, None),
    ]:
        with pytest.raises(JobsApiError) as info:
            decode_token(bad, state, since)
        assert info.value.status == 400 and info.value.field == "next_token"


def test_since_is_compared_in_the_records_own_form() -> None:
    assert record_time(datetime(2026, 5, 1, 12, 0, tzinfo=UTC)) == "2026-05-01T12:00:00.000Z"
    assert record_time(datetime(2026, 5, 1, 12, 0)) == "2026-05-01T12:00:00.000Z"  # no zone: UTC


def test_cancelled_is_terminal_and_reached_only_from_queued_or_a_request_fal_can_still_cancel() -> None:
    assert JobState.CANCELLED in TERMINAL_STATES
    into_cancelled = {source for source, target in ALLOWED_TRANSITIONS if target is JobState.CANCELLED}
    # SUBMITTED/PROCESSING -> CANCELLED only for a fal job fal answered 202 (api.cancel_at_provider)
    assert into_cancelled == {JobState.QUEUED, JobState.SUBMITTED, JobState.PROCESSING}
    assert not any(source is JobState.CANCELLED for source, _ in ALLOWED_TRANSITIONS)


PRODUCTION = WebhookPolicy(allowed_hosts=(), production=True)
LOCAL = WebhookPolicy(allowed_hosts=(), production=False)


@pytest.mark.parametrize(
    ("url", "policy", "why"),
    [
        ("http://hooks.example.com/x", PRODUCTION, "https"),
        ("http://127.0.0.1:8080/x", PRODUCTION, "https"),
        ("https://10.0.0.8/x", PRODUCTION, "IP address"),
        ("https://[::1]/x", PRODUCTION, "IP address"),
        ("https://169.254.169.254/latest", PRODUCTION, "IP address"),
        ("https://hooks.example.com:8443/x", PRODUCTION, "port 443"),
        ("https://evil.example.net/x", WebhookPolicy(("*.example.com",)), "allow-list"),
        ("http://192.168.1.5/x", LOCAL, "https"),  # local mode opens 127.0.0.1 only
        ("http://localhost:9000/x", LOCAL, "https"),
    ],
)
def test_webhook_urls_follow_the_download_rules(url: str, policy: WebhookPolicy, why: str) -> None:
    with pytest.raises(WebhookRefusedError, match=why):
        check_webhook_url(url, policy)


def test_allowed_webhook_urls() -> None:
    assert check_webhook_url("https://hooks.example.com/kling", PRODUCTION) == "hooks.example.com"
    assert check_webhook_url("https://a.example.com/k", WebhookPolicy(("*.example.com",))) == "a.example.com"
    assert check_webhook_url("http://127.0.0.1:8123/hook", LOCAL) == "127.0.0.1"


def test_a_host_that_resolves_to_a_private_address_is_refused_in_production() -> None:
    with pytest.raises(WebhookRefusedError, match="non-public address"):
        webhook_target("https://localhost/hook", PRODUCTION)


def test_the_webhook_backoff_grows_to_hours_and_is_capped() -> None:
    rng = random.Random(4)
    delays = [retry_delay(n, base_s=30, max_s=3600, rng=rng) for n in range(1, 12)]
    assert all(later >= earlier / 2 for earlier, later in itertools.pairwise(delays))
    assert max(delays) <= 3600
    assert sum(delays) > 3 * 3600  # the defaults' twelve attempts keep trying for hours
    assert retry_delay(1, base_s=30, max_s=3600, rng=rng) <= 30


def test_webhooks_are_signed_per_standard_webhooks() -> None:
    # Given an ended job's event, as EventBridge puts it on the webhook queue, and the job's record
    event = {
        "id": "e1",
        "source": "kling-pipeline",
        "detail-type": "Video Failed",
        "time": "2026-01-01T00:00:00Z",
        "detail": {"job_id": "j-1", "state": "CANCELLED", "error_code": "CANCELLED"},
    }
    job = Job.model_validate(
        {
            "job_id": "j-1",
            "state": "CANCELLED",
            "version": 2,
            "kind": "text2video",
            "request": {"prompt": "x"},
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:01.000Z",
            "error_code": "CANCELLED",
            "error_message": "cancelled through the jobs API",
        }
    )
    message = webhook_body(event, job)
    assert message is not None
    message_id, body = message
    # When it is signed
    secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="
    headers = WebhookSender(secret, LOCAL).signed_headers(message_id, body)
    # Then a receiver with the same secret verifies it, and the record's end is in the body
    assert Webhook(secret).verify(body, headers) == {
        "type": "video.failed",
        "timestamp": job.updated_at,
        "data": event_detail(job),
    }
    # And its id is the end's: the same for every announcement of it, another for another end
    assert webhook_body(event | {"id": "e2"}, job) == message
    assert webhook_body(event, job.model_copy(update={"version": 3}))[0] != message_id  # type: ignore[index]
    assert event_job_id(event | {"source": "someone-else"}) is None
    assert webhook_body(event | {"detail-type": "Video Completed"}, job) is None


def test_the_checked_in_openapi_document_is_the_codes() -> None:
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    generated = openapi_document()
    assert checked_in == generated, "regenerate it: python -m kling_pipeline.api_routes > docs/openapi.json"
    documented = {(path, method.upper()) for path, ops in generated["paths"].items() for method in ops}
    assert documented == JOBS_ROUTES - {("/openapi.json", "GET")}
    for ops in generated["paths"].values():
        for operation in ops.values():
            assert "422" not in operation["responses"]  # validation errors are this API's 400
            assert "400" in operation["responses"]


def translated(**parameters: str) -> dict[str, Any]:
    """template.yaml as the SAM transform makes it (code locations as the local stack marks them)."""
    template = load_template()
    localise_uris(template, ROOT)
    return sam_transform(template, parameters, "us-east-1")


def test_every_jobs_route_is_aws_iam_and_the_callback_route_is_not() -> None:
    template = load_template()
    routes = {
        (event["Properties"]["Path"], event["Properties"]["Method"]): event["Properties"]["RestApiId"]["Ref"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "Api"
    }
    assert {route for route, api in routes.items() if api == "JobsApi"} == JOBS_ROUTES
    assert routes[("/callbacks/{job_id}", "POST")] == "CallbackApi"
    bodies = {
        lid: r["Properties"]["Body"]
        for lid, r in translated()["Resources"].items()
        if r["Type"] == "AWS::ApiGateway::RestApi"
    }
    for path, operations in bodies["JobsApi"]["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"AWS_IAM": []}], (path, method)
            assert "credentials" not in operation["x-amazon-apigateway-integration"]  # callers need no Lambda rights
    callback = bodies["CallbackApi"]["paths"]["/callbacks/{job_id}"]["post"]
    assert "security" not in callback  # Kling cannot sign: the URL's token is its auth


def test_api_key_mode_is_an_extra_endpoint_with_a_usage_plan() -> None:
    resources = translated(JobsApiKeys="true")["Resources"]
    conditional = {lid for lid, r in resources.items() if r.get("Condition") == "UseApiKeys"}
    assert {"JobsKeyApi", "JobsKeyApiUsagePlan", "JobsKeyApiApiKey", "JobsKeyApiPermission"} <= conditional
    plan = resources["JobsKeyApiUsagePlan"]["Properties"]
    assert plan["Quota"]["Period"] == "DAY" and "Throttle" in plan
    body = resources["JobsKeyApi"]["Properties"]["Body"]
    assert body["paths"]["/{proxy+}"]["x-amazon-apigateway-any-method"]["security"] == [{"api_key": []}]
