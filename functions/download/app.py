"""DownloadFunction: the state machine's Download task (kling_pipeline.download)."""

from __future__ import annotations

import gc

gc.disable()  # until init_done(), this module's last line (kling_pipeline.cold_start)

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.adapters.deadlines import for_invocation
from kling_pipeline.cold_start import init_done
from kling_pipeline.download import download_dependencies, download_job
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.settings import DownloadSettings

settings = DownloadSettings.from_environment()
DOWNLOAD_MARGIN_S = 10.0  # of the invocation's remaining time, kept to abort the upload and record the attempt


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The transfer ends before the invocation does, with time left to record a failed attempt.
    with for_invocation(context.get_remaining_time_in_millis(), margin_s=DOWNLOAD_MARGIN_S):
        return download_job(str(event["job_id"]), int(event["version"]), download_dependencies(settings))


init_done()
