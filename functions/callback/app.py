"""CallbackFunction: POST /callbacks/{job_id}?token=... from Kling (see kling_pipeline.callbacks)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.callbacks import handle_callback
from kling_pipeline.dependencies import callback_dependencies
from kling_pipeline.observability import logger, metrics, tracer

app = APIGatewayRestResolver()


@app.post("/callbacks/<job_id>")
@tracer.capture_method
def kling_callback(job_id: str) -> Response[dict[str, Any]]:
    answer = handle_callback(
        job_id, app.current_event.get_query_string_value("token"), app.current_event.body, callback_dependencies()
    )
    metrics.add_metric(name=f"Callbacks{answer.status}", unit="Count", value=1)
    return Response(status_code=answer.status, content_type=content_types.APPLICATION_JSON, body=answer.body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
