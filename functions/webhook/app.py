"""WebhookFunction: ended jobs' events from WebhookQueue, POSTed signed to their webhooks
(kling_pipeline.webhook). A failed delivery is reported as a batch item failure after its backoff
is set, so only that event comes back."""

from __future__ import annotations

import gc

gc.disable()  # until init_done(), this module's last line (kling_pipeline.cold_start)

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kling_pipeline.adapters.deadlines import for_invocation
from kling_pipeline.cold_start import init_done
from kling_pipeline.observability import logger, metrics, tracer
from kling_pipeline.settings import WebhookSettings
from kling_pipeline.webhook import Outcome, deliver, webhook_dependencies

settings = WebhookSettings.from_environment()
processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def deliver_record(record: SQSRecord) -> Outcome:
    return deliver(
        record.body,
        receipt_handle=record.receipt_handle,
        attempt=int(record.attributes.approximate_receive_count or 1),
        deps=webhook_dependencies(settings),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # Every delivery ends before the invocation does: a receiver that drips is a failed delivery, not a timeout.
    with for_invocation(context.get_remaining_time_in_millis()):
        return process_partial_response(
            event=event, record_handler=deliver_record, processor=processor, context=context
        )


init_done()
