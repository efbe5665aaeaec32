"""Before the Kling keys are stored (the secret still holds what the stack created it with), the poller
says so once a run and counts it for the KlingKeysMissing alarm, and ends normally: no error for
Lambda or EventBridge to retry every minute. The submit path parks each message with the fix."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3

from kling_pipeline.lifecycle import JobState
from tests.support.scenarios import ACCESS_KEY, SECRET_KEY, Completion, Pipeline, job_in
from tests.support.sqs_driver import drive_queue, queue_messages

# What template.yaml's KlingCredentials holds after the first deploy: an empty access key and a
# generated secret key (GenerateSecretString).
AS_CREATED = json.dumps({"access_key": "", "secret_key": "Gk2v7QpX0aLw9nT4rBc8yZs1dEf6hJm3"})


def keys_not_stored(pipeline: Pipeline) -> str:
    secret = pipeline.resolver.refs["KlingCredentials"]
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=AS_CREATED)
    return secret


def emitted(out: str, metric: str) -> list[Any]:
    return [
        record[metric]
        for line in out.splitlines()
        if line.startswith("{") and metric in (record := json.loads(line)) and "_aws" in record
    ]


def test_the_poller_without_kling_keys_logs_one_line_counts_it_and_ends_normally(
    completion: Completion, capsys: Any, caplog: Any
) -> None:
    # Given the Kling credentials secret as the stack created it
    secret = keys_not_stored(completion.pipeline)
    poller = completion.poller()
    capsys.readouterr()
    caplog.clear()
    # When a scheduled run starts
    report = completion.poll(poller)
    # Then it ends normally (nothing for Lambda or EventBridge to retry), saying the keys are missing
    assert report == {"kling_keys_missing": True}
    out = capsys.readouterr().out
    # And it logged one line naming the secret and the command that stores the keys
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, errors
    assert secret in errors[0] and "aws secretsmanager put-secret-value" in errors[0]
    # And counted it once for the KlingKeysMissing alarm
    assert emitted(out, "KlingKeysMissing") == [[1.0]]


def test_a_message_that_meets_no_kling_keys_is_parked_with_the_fix_and_completes_once_redriven(
    pipeline: Pipeline, capsys: Any
) -> None:
    # Given the Kling credentials secret as the stack created it, and a job request in the queue
    secret = keys_not_stored(pipeline)
    handler = pipeline.submit_handler()
    pipeline.send({"job_id": "early", "prompt": "a cat on a mat"})
    # When the submit function receives it
    drive_queue(
        handler,
        pipeline.sqs,
        pipeline.queue_url,
        until=lambda: len(queue_messages(pipeline.sqs, pipeline.dlq_url)) == 1,
    )
    # Then it is in the DLQ at once with the fix as its reason, not failed until its receives run out
    dead = queue_messages(pipeline.sqs, pipeline.dlq_url)[0]
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert secret in reason and "put-secret-value" in reason
    assert emitted(capsys.readouterr().out, "KlingKeysMissing")
    # When the keys are stored and the message redriven
    stored = json.dumps({"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=stored)
    handler = pipeline.submit_handler()
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=dead["Body"])
    pipeline.drain(handler, lambda: job_in(pipeline, "early", JobState.SUBMITTED, JobState.PROCESSING))
    # Then the job is submitted with a single Kling task
    assert pipeline.tasks_for("early") == 1
