"""ApiFunction: the jobs API (kling_pipeline.api_routes over kling_pipeline.api).

Several routes, so Powertools' REST resolver (with data validation, which also gives the OpenAPI
document) routes the proxy event; the logic is the use case's.
"""

from __future__ import annotations

import gc

gc.disable()  # until init_done(), this module's last line (kling_pipeline.cold_start)

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.api import jobs_api_dependencies
from kling_pipeline.api_routes import build_app, handle
from kling_pipeline.cold_start import init_done
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.settings import ApiSettings

settings = ApiSettings.from_environment()
app = build_app(lambda: jobs_api_dependencies(settings))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(app, event, context, default_model=settings.default_model)


init_done()
