"""A small SAM template and throwaway handlers (stdlib only) for testing the stack machinery itself.

Every handler appends what it received to RECORD_DIR (a template parameter, so it reaches the
functions through the template like any other setting), and tests read those records back.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  RecordDir:
    Type: String
  WorkBatchSize:
    Type: Number
    Default: 3
Globals:
  Function:
    Runtime: python3.12
    Handler: app.lambda_handler
    Timeout: 20
    MemorySize: 128
    Environment:
      Variables:
        RECORD_DIR: !Ref RecordDir
Resources:
  DeadLetters:
    Type: AWS::SQS::Queue
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 2
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetters.Arn
        maxReceiveCount: 2
  Records:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Artifacts:
    Type: AWS::S3::Bucket
  Token:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString:
        SecretStringTemplate: '{"user": "local"}'
        GenerateStringKey: password
        PasswordLength: 24
        ExcludePunctuation: true
  TestApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
  BatchFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/batch/
      Environment:
        Variables:
          TOKEN_SECRET: !Ref Token
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: !Ref WorkBatchSize
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig:
              MaximumConcurrency: 2
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/echo/
      Events:
        PostItem:
          Type: Api
          Properties:
            RestApiId: !Ref TestApi
            Path: /items/{item_id}
            Method: POST
        ListItems:
          Type: Api
          Properties:
            RestApiId: !Ref TestApi
            Path: /items
            Method: GET
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/slow/
      Timeout: 3
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/broken/
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/tick/
      Events:
        EveryMinute:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
        EveryMinuteV2:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
            Input: '{"from": "scheduler"}'
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Type: STANDARD
      Definition:
        StartAt: ViaIntegration
        States:
          ViaIntegration:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: ${SlowArn}
              Payload.$: $
            ResultSelector:
              integration.$: $.Payload
            ResultPath: $.first
            Next: ViaArn
          ViaArn:
            Type: Task
            Resource: ${SlowArn}
            ResultPath: $.second
            End: true
      DefinitionSubstitutions:
        SlowArn: !GetAtt SlowFunction.Arn
      Policies:
        - LambdaInvokePolicy:
            FunctionName: !Ref SlowFunction
Outputs:
  WorkQueueUrl:
    Value: !Ref WorkQueue
  DeadLettersUrl:
    Value: !Ref DeadLetters
  MachineArn:
    Value: !Ref Machine
"""

_RECORD = """
import json, os, uuid

def record(kind, data):
    path = os.path.join(os.environ["RECORD_DIR"], f"{kind}-{uuid.uuid4().hex}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)
"""

HANDLERS = {
    "batch": _RECORD
    + """
def lambda_handler(event, context):
    bodies = [r["body"] for r in event["Records"]]
    record("batch", {"records": event["Records"], "token_secret": os.environ.get("TOKEN_SECRET")})
    if any("crash" in b for b in bodies):
        raise RuntimeError("asked to crash")
    return {"batchItemFailures": [
        {"itemIdentifier": r["messageId"]} for r in event["Records"] if "fail" in r["body"]
    ]}
""",
    "echo": """
import json, os

def lambda_handler(event, context):
    if (event.get("pathParameters") or {}).get("item_id") == "boom":
        raise ValueError("boom")
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(event),
        "isBase64Encoded": False,
    }
""",
    "slow": """
import os, time

COUNT = 0  # module state: survives between invocations of one execution environment

def lambda_handler(event, context):
    global COUNT
    COUNT += 1
    if event.get("raise"):
        raise ValueError("asked to fail")
    if event.get("exit"):
        raise SystemExit(3)
    time.sleep(float(event.get("sleep", 0)))
    return {
        "count": COUNT,
        "pid": os.getpid(),
        "value": event.get("value"),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in event.get("env", [])},
    }
""",
    "broken": """
import a_module_that_does_not_exist  # noqa: F401

def lambda_handler(event, context):
    return "unreachable"
""",
    "tick": _RECORD
    + """
def lambda_handler(event, context):
    record("tick", event)
""",
}


def write_project(root: Path) -> Path:
    """Write the template and handler directories under `root`; returns the template path."""
    for name, code in HANDLERS.items():
        directory = root / "fns" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "app.py").write_text(textwrap.dedent(code).lstrip(), encoding="utf-8")
    (root / "records").mkdir(exist_ok=True)
    template = root / "template.yaml"
    template.write_text(TEMPLATE, encoding="utf-8")
    return template


def read_records(root: Path, kind: str) -> list[Any]:
    return [json.loads(p.read_text()) for p in sorted((root / "records").glob(f"{kind}-*.json"))]
