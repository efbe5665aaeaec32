"""CallbackFunction: POST /callbacks/{job_id}?token=... from Kling (kling_pipeline.callback), and
POST /callbacks/{job_id}/{fal,replicate,acedata}?token=... from another provider's door (kling_pipeline.door_callback).

One route, which API Gateway alone routes here, so the proxy event is read with Powertools' event
data class rather than its REST resolver (whose package imports every resolver at cold start).
"""

from __future__ import annotations

import gc

gc.disable()  # until init_done(), this module's last line (kling_pipeline.cold_start)

import json
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.callback import callback_dependencies, handle_callback
from kling_pipeline.cold_start import init_done
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.settings import CallbackSettings

settings = CallbackSettings.from_environment()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayProxyEvent)
def lambda_handler(event: APIGatewayProxyEvent, context: LambdaContext) -> dict[str, Any]:
    job_id = (event.path_parameters or {}).get("job_id", "")
    body = event.decoded_body if event.is_base64_encoded else event.body
    token = event.get_query_string_value("token")
    door = event.resource.rsplit("/", 1)[-1]
    if door in ("fal", "replicate", "acedata"):  # POST /callbacks/{job_id}/<provider> (kling_pipeline.door_callback)
        from kling_pipeline.door_callback import handle_door_callback

        deps = callback_dependencies(settings)
        answer = handle_door_callback(door, job_id, token, body, deps, dict(event.headers or {}))
    else:
        answer = handle_callback(job_id, token, body, callback_dependencies(settings), dict(event.headers or {}))
    headers = {"Content-Type": "application/json"}
    return {"statusCode": answer.status, "headers": headers, "body": json.dumps(answer.body)}


init_done()
