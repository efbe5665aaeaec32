"""moto's IAM, judged as AWS judges (kling_local.moto_bridges): S3's 403 for a missing key to a role
without s3:ListBucket, IAM action names for batch and transaction calls, JSON AccessDeniedException."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

from kling_local.moto_bridges import apply_all as apply_moto_bridges

BUCKET = "videos-bucket"
REGION = "us-east-1"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
GET_VIDEOS = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}/videos/*"}
LIST_VIDEOS = {
    "Effect": "Allow",
    "Action": ["s3:ListBucket"],
    "Resource": f"arn:aws:s3:::{BUCKET}",
    "Condition": {"StringLike": {"s3:prefix": ["videos/*"]}},
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    apply_moto_bridges()
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="videos/there.mp4", Body=b"video")
        yield


def role_client(service: str, *statements: dict[str, Any]) -> Any:
    """A client signed with a session of a new role whose one inline policy holds `statements`."""
    iam = boto3.client("iam", region_name=REGION)
    name = f"role-{len(iam.list_roles()['Roles'])}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    policy = {"Version": "2012-10-17", "Statement": list(statements)}
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    creds = boto3.client("sts", region_name=REGION).assume_role(RoleArn=arn, RoleSessionName="fn")["Credentials"]
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def status_of(call: Any, **kwargs: Any) -> int:
    try:
        return int(call(**kwargs)["ResponseMetadata"]["HTTPStatusCode"])
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def test_a_missing_key_is_403_to_a_role_without_list_bucket(aws: None) -> None:
    # Given a role that may read videos/* but not list the bucket
    s3 = role_client("s3", GET_VIDEOS)
    with enable_iam_authentication():
        # When it asks for a key that is there, and one that is not
        # Then the first is read, the second is refused (403), as S3 does, not 404
        assert status_of(s3.head_object, Bucket=BUCKET, Key="videos/there.mp4") == 200
        assert status_of(s3.head_object, Bucket=BUCKET, Key="videos/missing.mp4") == 403
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=BUCKET, Key="videos/missing.mp4")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_missing_key_is_404_where_a_prefix_scoped_list_bucket_grant_covers_it(aws: None) -> None:
    # Given a role that may also list the bucket under videos/ (an s3:prefix condition)
    s3 = role_client("s3", GET_VIDEOS, {**GET_VIDEOS, "Resource": f"arn:aws:s3:::{BUCKET}/*"}, LIST_VIDEOS)
    with enable_iam_authentication():
        # Then a missing key under the prefix is 404, and one outside it still 403
        assert status_of(s3.head_object, Bucket=BUCKET, Key="videos/missing.mp4") == 404
        assert status_of(s3.head_object, Bucket=BUCKET, Key="other/missing.mp4") == 403
        with pytest.raises(ClientError) as absent:
            s3.get_object(Bucket=BUCKET, Key="videos/missing.mp4")
        assert absent.value.response["Error"]["Code"] == "NoSuchKey"


def test_without_iam_authorization_a_missing_key_stays_404(aws: None) -> None:
    # Given moto's IAM off, When a missing key is asked for, Then moto's 404 is kept
    s3 = role_client("s3", GET_VIDEOS)
    assert status_of(s3.head_object, Bucket=BUCKET, Key="videos/missing.mp4") == 404


def test_a_transaction_needs_each_items_action_on_its_table_and_a_denial_is_json(aws: None) -> None:
    # Given two tables and a role that may UpdateItem on the first only
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for table in ("jobs", "stats"):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    jobs_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/jobs"
    role = role_client("dynamodb", {"Effect": "Allow", "Action": ["dynamodb:UpdateItem"], "Resource": jobs_arn})

    def update(table: str) -> dict[str, Any]:
        return {"Update": {"TableName": table, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :n",
                           "ExpressionAttributeValues": {":n": {"N": "1"}}}}  # fmt: skip

    with enable_iam_authentication():
        # When it writes a transaction on its table, Then it is allowed (no policy names TransactWriteItems)
        role.transact_write_items(TransactItems=[update("jobs")])
        # When the transaction also touches the other table, Then it is refused, in DynamoDB's own form
        with pytest.raises(ClientError) as refused:
            role.transact_write_items(TransactItems=[update("jobs"), update("stats")])
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "dynamodb:UpdateItem" in refused.value.response["Error"]["Message"]


def test_a_message_batch_needs_send_message(aws: None) -> None:
    # Given a role that may SendMessage to a queue
    url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="jobs")["QueueUrl"]
    arn = f"arn:aws:sqs:{REGION}:123456789012:jobs"
    sqs = role_client("sqs", {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": arn})
    with enable_iam_authentication():
        # When it sends a batch, Then that is allowed, as on AWS (there is no sqs:SendMessageBatch action)
        sent = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])
    assert len(sent["Successful"]) == 1


def test_a_multipart_upload_needs_put_object(aws: None) -> None:
    # Given a role that may PutObject under videos/ (as the download function)
    s3 = role_client(
        "s3", {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": f"arn:aws:s3:::{BUCKET}/videos/*"}
    )
    with enable_iam_authentication():
        # When it uploads in parts, Then each step is allowed, as on AWS (all are s3:PutObject)
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key="videos/big.mp4")["UploadId"]
        part = s3.upload_part(Bucket=BUCKET, Key="videos/big.mp4", UploadId=upload, PartNumber=1, Body=b"x" * 1024)
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="videos/big.mp4",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
