"""The jobs API's routes: Powertools' REST resolver with data validation, over the api use case (api.py).

Request and response models are validated by Powertools (pydantic), and the OpenAPI document is
generated from the same routes and models (`openapi_document`; served at GET /openapi.json and
checked in as docs/openapi.json). Every answer that is not a success is `{"error": {"code",
"message", "field"}}`, the field named; nothing of a secret or a stack trace is ever in one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Discriminator, Tag

from kling_pipeline.adapters.aws_errors import is_transient
from kling_pipeline.api import (
    DEFAULT_PAGE,
    JobsApiDependencies,
    cancel_job,
    get_job,
    list_jobs,
    listing_since,
    query_jobs,
    submit_jobs,
)
from kling_pipeline.api_models import (
    MAX_BATCH,
    Accepted,
    BatchAccepted,
    ErrorBody,
    ErrorDetail,
    ItemProblem,
    JobBatch,
    JobIds,
    JobList,
    JobView,
    QueryResult,
)
from kling_pipeline.errors import JobsApiError
from kling_pipeline.job_ids import JOB_ID_PATTERN
from kling_pipeline.lifecycle import JobState
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.requests import DEPLOYMENT_DEFAULT_MODEL, JobRequest, error_message

TITLE = "kling-pipeline jobs API"
VERSION = "1.0"
DESCRIPTION = (
    "Submit, read, list and cancel video jobs. Every route is signed with AWS SigV4 (AWS_IAM), or takes "
    "an x-api-key in the optional API-key mode. A job id is the idempotency key."
)


REQUEST_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("/jobs", "post"): {
        "one job": {"job_id": "order-1042", "prompt": "a red fox in fresh snow", "duration": "5"},
        "a batch": {
            "jobs": [{"job_id": "order-1043", "prompt": "a paper boat"}, {"job_id": "order-1044", "prompt": "rain"}]
        },
    },
    ("/jobs/query", "post"): {"two jobs": {"ids": ["order-1042", "order-1043"]}},
}
# A body sent as a form (curl -d without a content-type) would otherwise be read as form fields and
# refused as an unknown field named after the whole JSON text.
SEND_JSON = "send the request body as JSON, with the header content-type: application/json"


def _submission_kind(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "jobs" in value else "job"


# One job (the job message of the README) or {"jobs": [...]}: told apart by the `jobs` key, so that a
# validation error speaks of the one the caller meant.
PostJobsBody = Annotated[
    Annotated[JobRequest, Tag("job")] | Annotated[JobBatch, Tag("batch")], Discriminator(_submission_kind)
]
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job's id (its idempotency key)")]


def _errors(*codes: int) -> dict[int, Any]:
    descriptions = {
        400: "invalid request; `error.field` names what is wrong (`error.details` per job of a batch)",
        415: "the body is not sent as JSON (content-type: application/json)",
        404: "no such job (or route)",
        409: "the job id belongs to a different request, or the job can no longer be cancelled",
        503: "a service the API depends on is unavailable; send the same request again",
    }
    return {
        code: {"description": descriptions[code], "content": {"application/json": {"model": ErrorBody}}}
        for code in codes
    }


def _ok(model: Any, description: str) -> dict[int, Any]:
    return {200: {"description": description, "content": {"application/json": {"model": model}}}}


def build_app(dependencies: Callable[[], JobsApiDependencies]) -> APIGatewayRestResolver:
    """The resolver with every route; `dependencies` is called per request (clients are per container)."""
    app = APIGatewayRestResolver(enable_validation=True)

    def require_json() -> None:
        if not sends_json(app.current_event.headers, app.current_event.body):
            raise JobsApiError(415, "UNSUPPORTED_MEDIA_TYPE", SEND_JSON, "content-type")

    def base_url() -> str:
        event = app.current_event
        proto = (event.headers or {}).get("X-Forwarded-Proto") or (event.headers or {}).get("x-forwarded-proto")
        context = event.request_context
        return f"{proto or 'https'}://{context.domain_name}/{context.stage}"

    @app.post(
        "/jobs",
        summary="Submit one job or a batch (up to 100)",
        description=(
            "202 when a job was queued; 200 when every job was sent before with the same request (nothing is "
            "queued again). One job whose id belongs to a different request is 409; in a batch that is its "
            "item's `outcome: conflict`. A batch with any invalid job is refused whole (400, nothing queued)."
        ),
        responses={
            200: {
                "description": "already submitted (one job: Accepted; a batch: BatchAccepted)",
                "content": {"application/json": {"model": Accepted | BatchAccepted}},
            },
            202: {
                "description": "queued (one job: Accepted; a batch: BatchAccepted)",
                "content": {"application/json": {"model": Accepted | BatchAccepted}},
            },
        }
        | _errors(400, 409, 415, 503),
    )
    def post_jobs(body: Annotated[PostJobsBody, Body()]) -> Response[Accepted | BatchAccepted]:
        require_json()
        answer = submit_jobs(body, base_url(), dependencies())
        headers = {"Location": answer.body.url} if isinstance(answer.body, Accepted) else None
        return Response(answer.status, content_types.APPLICATION_JSON, answer.body, headers=headers)

    @app.get(
        "/jobs/<job_id>",
        summary="A job: state, history, error, units, and its video",
        responses=_ok(JobView, "the job") | _errors(400, 404),
    )
    def get_one(job_id: JobIdPath) -> JobView:
        return get_job(job_id, base_url(), dependencies())

    @app.post(
        "/jobs/query",
        summary=f"Up to {MAX_BATCH} jobs at once; unknown ids are listed",
        responses=_ok(QueryResult, "the jobs found, and the ids of none") | _errors(400, 415),
    )
    def post_query(body: Annotated[JobIds, Body()]) -> QueryResult:
        require_json()
        return query_jobs(body.ids, base_url(), dependencies())

    @app.get(
        "/jobs",
        summary="Jobs in one state, updated since a time, newest first",
        responses=_ok(JobList, "a page of jobs") | _errors(400),
    )
    def get_list(
        state: Annotated[JobState, Query(description="the state to list")],
        since: Annotated[datetime | None, Query(description="ISO 8601; only jobs updated at or after it")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_BATCH, description="jobs per page")] = DEFAULT_PAGE,
        next_token: Annotated[str | None, Query(max_length=1024, description="from the previous page")] = None,
    ) -> JobList:
        return list_jobs(state, listing_since(since), limit, next_token, base_url(), dependencies())

    @app.post(
        "/jobs/<job_id>/cancel",
        summary="Cancel a job not yet sent to Kling",
        description="Kling has no cancel: a job that may have reached Kling is refused (409) with what it will cost.",
        responses=_ok(JobView, "the job, CANCELLED") | _errors(400, 404, 409),
    )
    def post_cancel(job_id: JobIdPath) -> JobView:
        return cancel_job(job_id, base_url(), dependencies())

    @app.get("/openapi.json", summary="This document", include_in_schema=False)
    def get_openapi() -> Response[str]:
        return Response(200, content_types.APPLICATION_JSON, json.dumps(openapi_document(app)))

    # Powertools' exception_handler decorator is untyped; the handlers keep their signatures.
    @app.exception_handler(JobsApiError)  # type: ignore[untyped-decorator]
    def api_error(exc: JobsApiError) -> Response[str]:
        details = [ItemProblem.model_validate(d) for d in exc.details] if exc.details else None
        return error_response(
            exc.status, ErrorDetail(code=exc.code, message=exc.message, field=exc.field, details=details)
        )

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def invalid(exc: RequestValidationError) -> Response[str]:
        if not sends_json(app.current_event.headers, app.current_event.body):
            return error_response(
                415, ErrorDetail(code="UNSUPPORTED_MEDIA_TYPE", message=SEND_JSON, field="content-type")
            )
        return error_response(400, validation_error(exc.errors()))

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
    def not_json(exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(415, ErrorDetail(code="UNSUPPORTED_MEDIA_TYPE", message=SEND_JSON, field="content-type"))

    @app.not_found
    def no_route(exc: Exception) -> Response[str]:
        return error_response(404, ErrorDetail(code="ROUTE_NOT_FOUND", message="no such route; see /openapi.json"))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(exc: Exception) -> Response[str]:
        if is_transient(exc):
            logger.warning("a service the API depends on is unavailable", extra={"error": type(exc).__name__})
            return error_response(
                503, ErrorDetail(code="SERVICE_UNAVAILABLE", message="try again in a moment"), retry_after=2
            )
        logger.exception("the jobs API failed")
        return error_response(500, ErrorDetail(code="INTERNAL", message="the request failed; it has been logged"))

    return app


def sends_json(headers: Mapping[str, str] | None, body: str | None) -> bool:
    """A body is JSON when its content-type says so (or, as Powertools reads it, says nothing)."""
    if not body:
        return True
    content_type = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
    media = content_type.split(";")[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


def error_response(status: int, error: ErrorDetail, *, retry_after: int | None = None) -> Response[str]:
    body = ErrorBody(error=error).model_dump_json(exclude_none=True)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return Response(status, content_types.APPLICATION_JSON, body, headers=headers)


def validation_error(errors: Sequence[Any]) -> ErrorDetail:
    """Powertools' validation errors in the API's words: each problem's field as a path (`jobs[3].duration`)."""
    problems: list[ItemProblem] = []
    for error in errors:
        if error.get("type") == "json_invalid":
            problems.append(ItemProblem(index=0, message="the request body is not valid JSON"))
            continue
        location = [part for part in error.get("loc", ()) if part not in ("job", "batch")]
        where = location[0] if location else "body"
        path = ""
        for part in location[1:]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        field = path or (None if where == "body" else str(where))
        message = error_message(error)
        if error.get("type") == "extra_forbidden":
            message = "unknown field; remove it (see the README for the job fields)"
        elif error.get("type") == "missing":
            message = f"{field or 'the request body'} is required"
        index = location[2] if len(location) > 2 and location[1] == "jobs" and isinstance(location[2], int) else 0
        problems.append(ItemProblem(index=index, field=field, message=f"{field}: {message}" if field else message))
    first = problems[0] if problems else ItemProblem(index=0, message="invalid request")
    return ErrorDetail(
        code="INVALID_REQUEST",
        message="; ".join(p.message for p in problems[:5]) or first.message,
        field=first.field,
        details=problems if len(problems) > 1 else None,
    )


def openapi_document(app: APIGatewayRestResolver | None = None) -> dict[str, Any]:
    """The API's OpenAPI document, generated from the routes and models: validation errors are this
    API's 400 (Powertools documents them as 422), and every route is signed with SigV4."""
    resolver = app or build_app(_no_dependencies)
    document: dict[str, Any] = json.loads(
        resolver.get_openapi_json_schema(title=TITLE, version=VERSION, description=DESCRIPTION)
    )
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) in REQUEST_EXAMPLES:
                media = operation["requestBody"]["content"]["application/json"]
                media["examples"] = {name: {"value": value} for name, value in REQUEST_EXAMPLES[path, method].items()}
            responses = operation.get("responses", {})
            responses.pop("422", None)
            operation["security"] = [{"sigv4": []}, {"api_key": []}]
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = {
        "sigv4": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "AWS Signature Version 4 (service execute-api); the default",
        },
        "api_key": {
            "type": "apiKey",
            "name": "x-api-key",
            "in": "header",
            "description": "only where the stack was deployed with JobsApiKeys=true (the JobsKeyApiUrl output)",
        },
    }
    return document


def _no_dependencies() -> JobsApiDependencies:
    raise RuntimeError("the OpenAPI document is generated without a pipeline")


def handle(
    app: APIGatewayRestResolver, event: dict[str, Any], context: LambdaContext, *, default_model: str
) -> dict[str, Any]:
    """Resolve one API Gateway request, and count it by route and status. A job naming no model is
    checked against the deployment's `default_model`, as the submit path will check it."""
    token = DEPLOYMENT_DEFAULT_MODEL.set(default_model)
    try:
        answer = app.resolve(event, context)
    finally:
        DEPLOYMENT_DEFAULT_MODEL.reset(token)
    record(Metric.API_REQUESTS, route=str(event.get("resource") or "?"), status=str(answer.get("statusCode")))
    return answer


if __name__ == "__main__":  # python -m kling_pipeline.api_routes > docs/openapi.json
    print(json.dumps(openapi_document(), indent=2))
