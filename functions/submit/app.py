"""SubmitFunction: SQS batch in, at most one Kling task per job out (see kling_pipeline.submission)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.dependencies import submit_dependencies
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.submission import SubmitResult, handle_job_message

processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def submit_record(record: SQSRecord, lambda_context: LambdaContext) -> SubmitResult:
    result = handle_job_message(
        record.body,
        record.message_id,
        submit_dependencies(),
        owner=lambda_context.aws_request_id,
        time_left_ms=lambda_context.get_remaining_time_in_millis(),
    )
    logger.info(
        "job message handled", extra={"job_id": result.job_id, "outcome": result.outcome, "detail": result.detail}
    )
    return result


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=submit_record, processor=processor, context=context)
