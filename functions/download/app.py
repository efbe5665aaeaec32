"""DownloadFunction: the state machine's Download task (see kling_pipeline.delivery)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.delivery import download_job
from kling_pipeline.dependencies import download_dependencies
from kling_pipeline.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return download_job(str(event["job_id"]), download_dependencies())
