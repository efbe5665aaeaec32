"""The embedded local stack: template.yaml deployed into moto in-process, with a function runtime,
SQS pollers, an API Gateway look-alike, a schedule clock and the Kling simulator.

    from kling_local.stack import LocalStack, StackOptions
    with LocalStack(StackOptions(template_path=Path("template.yaml"))) as stack:
        stack.client("sqs").send_message(QueueUrl=stack.endpoints["jobs_queue_url"], MessageBody=...)
"""

from kling_local.stack.moto_server import DeployError
from kling_local.stack.runtime import Invocation
from kling_local.stack.serve import run_forever
from kling_local.stack.stack import LocalStack, StackError, StackOptions, read_state_file
from kling_local.stack.template_loader import TemplateError

__all__ = [
    "DeployError",
    "Invocation",
    "LocalStack",
    "StackError",
    "StackOptions",
    "TemplateError",
    "read_state_file",
    "run_forever",
]
