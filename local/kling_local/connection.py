"""Where the pipeline is: the local stack (found by its state file), a deployed stack, or given URLs.

Every producer/operator command goes through here, so the same commands work locally and on AWS.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from kling_local.stack.stack import read_state_file
from kling_pipeline.adapters.job_store import JobStore
from kling_pipeline.adapters.ledger import Ledger

LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}  # moto accepts any


class PipelineNotFoundError(RuntimeError):
    """Where the pipeline runs could not be found or read (no local stack, flags missing, the stack not
    readable or not this project's, no credentials): nothing to talk to. The message says what to do."""


@dataclass
class PipelineConnection:
    queue_url: str
    dead_letter_queue_url: str
    table: str
    bucket: str
    region: str
    endpoint_url: str | None = None  # moto's, for the local stack
    where: str = ""
    stats_table: str = ""  # units charged and the daily budget (kling-pipeline cost)
    jobs_api_url: str = ""  # the jobs API (cancel goes through it)
    input_bucket: str = ""  # where s3:// input images come from (submit --image FILE puts them there)

    @classmethod
    def of_local_stack(cls, endpoints: dict[str, Any]) -> PipelineConnection:
        """From the endpoints a running local stack publishes (its state file, or LocalStack.endpoints)."""
        return cls(
            endpoints["jobs_queue_url"],
            endpoints["dead_letter_queue_url"],
            endpoints["jobs_table"],
            endpoints["video_bucket"],
            endpoints.get("region", "us-east-1"),
            endpoint_url=endpoints["moto_endpoint"],
            where="local stack",
            stats_table=endpoints.get("stats_table", ""),
            jobs_api_url=endpoints.get("jobs_api_url", ""),
            input_bucket=endpoints.get("input_bucket", ""),
        )

    def client(self, service: str) -> Any:
        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            kwargs |= {"endpoint_url": self.endpoint_url, **LOCAL_CREDENTIALS}
        return boto3.client(service, **kwargs)  # type: ignore[call-overload]

    def store(self) -> JobStore:
        return JobStore(self.table, dynamodb=self._dynamodb())

    def ledger(self) -> Ledger:
        if not self.stats_table:
            raise PipelineNotFoundError(
                "no StatsTable known for this pipeline: give --stats-table NAME (or --stack-name)"
            )
        return Ledger(self.stats_table, dynamodb=self._dynamodb())

    def _dynamodb(self) -> Any:
        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            kwargs |= {"endpoint_url": self.endpoint_url, **LOCAL_CREDENTIALS}
        return boto3.resource("dynamodb", **kwargs)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the pipeline runs (default: the local stack started from here)")
    group.add_argument("--stack-name", help="a deployed stack: read its outputs from CloudFormation")
    group.add_argument("--region", default=None, help="AWS region of the deployed stack")
    group.add_argument("--queue-url", help="JobsQueue URL (with --table/--bucket instead of --stack-name)")
    group.add_argument("--dlq-url", help="JobsDeadLetterQueue URL")
    group.add_argument("--table", help="JobsTable name")
    group.add_argument("--bucket", help="VideoBucket name")
    group.add_argument("--input-bucket", help="the input bucket (InputBucketName) for submit --image FILE")
    group.add_argument("--stats-table", help="StatsTable name (units charged, the daily budget)")
    group.add_argument("--project-root", type=Path, default=Path(), help="where `local up` was started (.)")


def connect(args: argparse.Namespace) -> PipelineConnection:
    connection = _connect(args)
    if getattr(args, "input_bucket", None):
        connection.input_bucket = args.input_bucket
    return connection


def _connect(args: argparse.Namespace) -> PipelineConnection:
    if args.stack_name:
        return _from_stack(args.stack_name, args.region)
    stats_table = getattr(args, "stats_table", None)
    if args.queue_url or args.table or stats_table:
        missing = [flag for flag, value in (("--queue-url", args.queue_url), ("--table", args.table)) if not value]
        if missing and (args.queue_url or args.table):
            raise PipelineNotFoundError(f"give {' and '.join(missing)} too, or use --stack-name")
        return PipelineConnection(
            args.queue_url or "",
            args.dlq_url or "",
            args.table or "",
            args.bucket or "",
            args.region or boto3.session.Session().region_name or "us-east-1",
            where="given URLs",
            stats_table=getattr(args, "stats_table", None) or "",
        )
    state = read_state_file(args.project_root.resolve())
    if state is None:
        raise PipelineNotFoundError(
            "no pipeline found: start the local one with `kling-pipeline local up` (in another terminal), "
            "or point at a deployed stack with --stack-name NAME"
        )
    return PipelineConnection.of_local_stack(state)


def _from_stack(stack_name: str, region: str | None) -> PipelineConnection:
    try:
        cloudformation = boto3.client("cloudformation", region_name=region)
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except NoCredentialsError as exc:
        raise PipelineNotFoundError(
            "AWS credentials not found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from exc
    except ClientError as exc:
        raise PipelineNotFoundError(f"cannot read stack {stack_name}: {exc.response['Error']['Message']}") from exc
    except NoRegionError as exc:
        raise PipelineNotFoundError(
            f"no AWS region for stack {stack_name}: give --region REGION (or set AWS_REGION, or a region in "
            "your AWS profile)"
        ) from exc
    except BotoCoreError as exc:
        raise PipelineNotFoundError(f"cannot reach CloudFormation: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    needed = ("JobsQueueUrl", "JobsDeadLetterQueueUrl", "JobsTableName", "VideoBucketName")
    missing = [key for key in needed if key not in outputs]
    if missing:
        raise PipelineNotFoundError(f"stack {stack_name} has no outputs {', '.join(missing)}: is it this project's?")
    return PipelineConnection(
        outputs["JobsQueueUrl"],
        outputs["JobsDeadLetterQueueUrl"],
        outputs["JobsTableName"],
        outputs["VideoBucketName"],
        cloudformation.meta.region_name,
        where=f"stack {stack_name}",
        stats_table=outputs.get("StatsTableName", ""),
        jobs_api_url=outputs.get("JobsApiUrl", ""),
        input_bucket=outputs.get("InputBucketName", ""),
    )
