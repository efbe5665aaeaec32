"""PollerFunction: on its schedule, settles every job that has gone quiet (kling_pipeline.poller)."""

from __future__ import annotations

import gc

gc.disable()  # until init_done(), this module's last line (kling_pipeline.cold_start)

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.cold_start import init_done
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.poller import scheduled_run
from kling_pipeline.settings import PollerSettings

settings = PollerSettings.from_environment()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return scheduled_run(settings, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)


init_done()
