"""Integration fixtures: moto for AWS (resources from template.yaml), the Kling simulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from kling_local.moto_bridges import apply_all as apply_moto_bridges
from kling_local.sim import KlingSimulator, SimConfig
from kling_pipeline.adapters import reset_container_state as reset_caches
from kling_pipeline.adapters.job_store import JobStore
from kling_pipeline.poll_schedule import PollSchedule
from tests.support.jobs_api import JobsApi
from tests.support.lambda_runtime import load_function_module
from tests.support.scenarios import ACCESS_KEY, DEAD_API, SECRET_KEY, SIGNING_SECRET, Completion, Pipeline
from tests.support.template import TemplateResolver, load_template


@pytest.fixture
def kling_sim() -> Iterator[KlingSimulator]:
    # Tasks take 1-1.5 s: submit-path tests see them live; completion tests make them faster.
    config = SimConfig(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, speed=600.0, generation_min_s=600, generation_max_s=900, seed=11
    )
    with KlingSimulator(config, host="127.0.0.1", port=0, cdn_port=0) as sim:
        yield sim


@pytest.fixture
def pipeline(kling_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "KlingPipelineTests",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    apply_moto_bridges()
    with mock_aws(config={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}):
        resolver = TemplateResolver(
            load_template(),
            parameters={
                "KlingBaseUrl": kling_sim.base_url,
                "PublicApiBaseUrl": DEAD_API,
                "BackpressureBaseDelaySeconds": "1",
                "BackpressureMaxDelaySeconds": "2",
                "ReconcileGraceSeconds": "2",
                # The simulator runs 600 times faster than Kling: the poller's cadence follows.
                "ExpectedStdSeconds": "1",
                "ExpectedProSeconds": "2",
                "PollIntervalSeconds": "1",
                "CallbackWaitSeconds": "2",
                "DownloadCheckSeconds": "2",
                "QueuedReportSeconds": "60",
                # One pass a poller run, as a test drives it (tests/integration/test_poll_batches.py loops).
                "PollerRunSeconds": "0",
                "PipelineMode": "local",
                # Most tests here never let the pipeline see a task end (the callbacks are lost), so a slot
                # taken is held to the test's end: room for every job they send. The slots' own tests
                # (test_kling_slots.py) set KLING_CONCURRENCY.
                "KlingConcurrency": "100",
            },
        )
        sqs = boto3.client("sqs")
        dynamodb = boto3.client("dynamodb")
        secrets = boto3.client("secretsmanager")
        dlq_url = resolver.create_queue(sqs, "JobsDeadLetterQueue", "jobs-dlq")
        queue_url = resolver.create_queue(sqs, "JobsQueue", "jobs")
        table = resolver.create_table(dynamodb, "JobsTable", "jobs")
        resolver.create_table(dynamodb, "StatsTable", "stats")
        resolver.create_secret(
            secrets, "KlingCredentials", "kling", json.dumps({"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
        )
        resolver.create_secret(secrets, "CallbackSigningSecret", "callback-signing", SIGNING_SECRET)
        resolver.create_secret(secrets, "KlingWebhookSecret", "kling-webhook", "none")  # as the stack creates it
        resolver.create_secret(secrets, "FalCredentials", "fal", '{"api_key": ""}')  # fal not enabled, as created
        resolver.create_secret(secrets, "ReplicateCredentials", "replicate", '{"api_token": ""}')
        resolver.create_secret(
            secrets, "ReplicateWebhookSecret", "replicate-webhook", "none"
        )  # as the stack creates it
        resolver.create_secret(secrets, "AceDataCredentials", "acedata", '{"api_token": ""}')
        resolver.refs["CallbackApi"] = "localapi"
        resolver.refs["DownloadStateMachine"] = "arn:aws:states:us-east-1:123456789012:stateMachine:download"
        schedule = PollSchedule.model_validate_json(resolver.function_environment("SubmitFunction")["POLL_SCHEDULE"])
        store = JobStore(table, schedule=schedule)
        yield Pipeline(resolver, sqs, dynamodb, queue_url, dlq_url, table, store, kling_sim, monkeypatch)
        reset_caches()


@pytest.fixture
def completion(pipeline: Pipeline) -> Iterator[Completion]:
    from kling_local.stack.moto_lambda import moto_lambda_runs
    from kling_local.stack.template import placeholder_zip
    from tests.support.lambda_runtime import InProcessFunctions

    sim = pipeline.sim
    sim.configure(video_size_bytes=300_000, generation_min_s=30, generation_max_s=90)
    s3 = boto3.client("s3")
    sfn = boto3.client("stepfunctions")
    iam = boto3.client("iam")
    lam = boto3.client("lambda")
    events = boto3.client("events")
    bucket = "videos-bucket"
    s3.create_bucket(Bucket=bucket)
    pipeline.resolver.refs["VideoBucket"] = bucket
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function_arn = lam.create_function(
        FunctionName="DownloadFunction",
        Runtime="python3.12",
        Role=role,
        Handler="app.lambda_handler",
        Code={"ZipFile": placeholder_zip()},
    )["FunctionArn"]
    pipeline.resolver.arns["DownloadFunction"] = function_arn
    definition = pipeline.resolver.state_machine_definition("DownloadStateMachine")
    state_machine_arn = sfn.create_state_machine(name="download", definition=definition, roleArn=role)[
        "stateMachineArn"
    ]
    pipeline.resolver.refs["DownloadStateMachine"] = state_machine_arn
    events_queue = pipeline.sqs.create_queue(QueueName="video-events")["QueueUrl"]
    events_queue_arn = pipeline.sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(Name="videos", EventPattern=json.dumps({"source": ["kling-pipeline"]}))
    events.put_targets(Rule="videos", Targets=[{"Id": "q", "Arn": events_queue_arn}])

    env = {
        **pipeline.resolver.function_environment("DownloadFunction"),
        **pipeline.resolver.function_environment("CallbackFunction"),
        "ALLOWED_DOWNLOAD_HOSTS": f"*.klingai.com,http://{sim.cdn_base_url.removeprefix('http://')}",
    }
    for key, value in env.items():
        pipeline.monkeypatch.setenv(key, value)
    reset_caches()
    handlers = {
        "CallbackFunction": load_function_module("callback").lambda_handler,
        "DownloadFunction": load_function_module("download").lambda_handler,
    }
    with moto_lambda_runs(InProcessFunctions(handlers)) as functions:
        yield Completion(
            pipeline, s3, sfn, bucket, state_machine_arn, events_queue, functions.calls, handlers=functions.handlers
        )


@pytest.fixture
def jobs_api(pipeline: Pipeline) -> Iterator[JobsApi]:
    """ApiFunction's handler on the pipeline, with the video bucket and the pipeline's events on a queue."""
    s3 = boto3.client("s3")
    bucket = "videos-bucket"
    s3.create_bucket(Bucket=bucket)
    pipeline.resolver.refs["VideoBucket"] = bucket
    events_queue = pipeline.sqs.create_queue(QueueName="api-events")["QueueUrl"]
    events_queue_arn = pipeline.sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events = boto3.client("events")
    events.put_rule(Name="ended", EventPattern=json.dumps({"source": ["kling-pipeline"]}))
    events.put_targets(Rule="ended", Targets=[{"Id": "q", "Arn": events_queue_arn}])
    pipeline.use_function_env("ApiFunction")
    handler = load_function_module("api").lambda_handler
    yield JobsApi(pipeline, handler, s3, bucket, events_queue)
