"""SubmitFunction: SQS batch in, at most one Kling task per job out (kling_pipeline.submit)."""

from __future__ import annotations

import gc

gc.disable()  # until init_done(), this module's last line (kling_pipeline.cold_start)

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.adapters.deadlines import for_invocation
from kling_pipeline.claims import ClaimResult
from kling_pipeline.cold_start import init_done
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.settings import SubmitSettings
from kling_pipeline.submit import handle_record

settings = SubmitSettings.from_environment()
processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def submit_record(record: SQSRecord, lambda_context: LambdaContext) -> ClaimResult:
    return handle_record(
        record.body,
        record.message_id,
        settings,
        owner=lambda_context.aws_request_id,
        time_left_ms=lambda_context.get_remaining_time_in_millis(),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # Every outbound exchange ends before the invocation does: a dripping server fails its own job only.
    with for_invocation(context.get_remaining_time_in_millis()):
        return process_partial_response(event=event, record_handler=submit_record, processor=processor, context=context)


init_done()
