"""The real template.yaml in the local stack: every resource it defines exists in moto, and a job
message on the real JobsQueue reaches the real SubmitFunction, which creates one Kling task at the
simulator and moves the job to SUBMITTED."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_local.sim import SimConfig, make_token
from kling_local.stack import DeployError, LocalStack, StackOptions, read_state_file
from kling_local.stack.deploy import Deployment
from kling_local.stack.template_loader import IntrinsicEvaluator, load_template, pseudo_parameters
from tests.support.template import ROOT
from tests.support.waiting import wait_for

TEMPLATE = ROOT / "template.yaml"
ACCESS_KEY = "stack-test-ak"
SECRET_KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-stack")


@pytest.fixture(scope="module")
def stack(project_root: Path) -> Iterator[LocalStack]:
    # Generation takes 10+ simulated minutes at speed 1, so a submitted job stays SUBMITTED.
    sim = SimConfig(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, speed=1.0, generation_min_s=600, generation_max_s=900, seed=3
    )
    options = StackOptions(template_path=TEMPLATE, project_root=project_root, sim_config=sim)
    with LocalStack(options) as running:
        yield running


def _physical(deployment: Deployment, logical_id: str) -> str:
    physical = deployment.physical_id(logical_id)
    assert physical, f"{logical_id} was not deployed"
    return physical


def _template_resources() -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = load_template(TEMPLATE)["Resources"]
    return resources


def _of_type(kind: str) -> list[str]:
    return sorted(lid for lid, r in _template_resources().items() if r["Type"] == kind)


def test_every_queue_table_bucket_secret_and_state_machine_exists(stack: LocalStack) -> None:
    # Given the stack deployed from the real template.yaml
    deployment = stack.deployment
    assert deployment is not None
    sqs, ddb, s3 = stack.client("sqs"), stack.client("dynamodb"), stack.client("s3")
    sm, sfn, lam = stack.client("secretsmanager"), stack.client("stepfunctions"), stack.client("lambda")
    params = load_template(TEMPLATE)["Parameters"]

    # Then every queue, table, bucket, secret, state machine and function is as the template says
    queues = _of_type("AWS::SQS::Queue")
    assert queues, "the template defines queues"
    assert len(sqs.list_queues().get("QueueUrls", [])) == len(queues)
    for lid in queues:
        url = _physical(deployment, lid)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        props = _template_resources()[lid].get("Properties", {})
        if "VisibilityTimeout" in props:
            assert int(attributes["VisibilityTimeout"]) == int(props["VisibilityTimeout"])
        if "RedrivePolicy" in props:
            redrive = json.loads(attributes["RedrivePolicy"])
            count_parameter = props["RedrivePolicy"]["maxReceiveCount"]["Ref"]  # MaxReceiveCount, WebhookMaxAttempts
            assert int(redrive["maxReceiveCount"]) == int(params[count_parameter]["Default"])
            dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=_physical(deployment, dlq), AttributeNames=["QueueArn"])
            assert redrive["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]

    tables = _of_type("AWS::DynamoDB::Table")
    assert sorted(ddb.list_tables()["TableNames"]) == sorted(_physical(deployment, t) for t in tables)
    for lid in tables:
        described = ddb.describe_table(TableName=_physical(deployment, lid))["Table"]
        props = _template_resources()[lid]["Properties"]
        assert described["KeySchema"] == props["KeySchema"]
        expected_indexes = {i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])}
        assert {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])} == expected_indexes

    buckets = _of_type("AWS::S3::Bucket")
    # ... and the input bucket, which on AWS is the user's own and here the stack makes.
    expected_buckets = [_physical(deployment, b) for b in buckets] + [stack.endpoints["input_bucket"]]
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == sorted(expected_buckets)

    template_secrets = _of_type("AWS::SecretsManager::Secret")
    assert sorted(s["ARN"] for s in sm.list_secrets()["SecretList"]) == sorted(
        deployment.secrets[s] for s in template_secrets
    )

    machines = _of_type("AWS::Serverless::StateMachine") + _of_type("AWS::StepFunctions::StateMachine")
    listed = {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    assert listed == {deployment.state_machines[m] for m in machines}  # visible to the executing engine
    for arn in listed:
        definition = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
        assert "${" not in definition  # DefinitionSubstitutions were applied
        assert deployment.functions["DownloadFunction"].arn in definition

    template = load_template(TEMPLATE)
    global_env = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for lid in _of_type("AWS::Serverless::Function"):
        own = set(_template_resources()[lid]["Properties"].get("Environment", {}).get("Variables", {}))
        configured = lam.get_function_configuration(FunctionName=deployment.functions[lid].name)
        assert set(configured["Environment"]["Variables"]) == global_env | own

    # Nothing in the template is silently lost: each resource is deployed or knowingly emulated.
    conditions = IntrinsicEvaluator(template, parameters={}, pseudo=pseudo_parameters("us-east-1", "123456789012"))
    for lid, resource in _template_resources().items():
        if resource["Type"].startswith("AWS::Serverless::"):
            continue  # translated into other resources (checked above by kind)
        if "Condition" in resource and not conditions.condition(resource["Condition"]):
            continue  # not in this stack (e.g. JobsKeyApiPermission without JobsApiKeys=true)
        assert lid in deployment.resources or lid in deployment.dropped, lid


def test_kling_keys_are_in_the_credentials_secret(stack: LocalStack) -> None:
    arn = stack.outputs["KlingCredentialsSecretArn"]
    stored = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
    # Given the simulator's API key (it serves both designs) and the access/secret key pair (legacy)
    assert stack.simulator is not None and stack.simulator.config.api_key
    # Then both kinds of credentials are stored, as the README's deploy step stores them
    assert stored == {"api_key": stack.simulator.config.api_key, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY}


def test_the_fal_simulator_runs_beside_klings_with_its_key_stored_and_the_functions_pointed_at_it(
    stack: LocalStack,
) -> None:
    # Given the stack started with no fal URL: the fal simulator runs beside Kling's
    fal = stack.fal_simulator
    assert fal is not None
    assert stack.deployment is not None
    # Then its key is in FalCredentials (what enables the fal door)
    arn = stack.deployment.secrets["FalCredentials"]
    stored = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
    assert stored == {"api_key": fal.config.api_key}
    # and the functions reach its queue and JWKS, and may download from its media host
    functions = stack.deployment.functions
    submit = functions["SubmitFunction"].environment
    assert (submit["FAL_QUEUE_BASE_URL"], submit["FAL_JWKS_URL"]) == (fal.base_url, fal.jwks_url)
    assert fal.media_base_url in functions["DownloadFunction"].environment["ALLOWED_DOWNLOAD_HOSTS"].split(",")
    assert stack.endpoints["fal_base_url"] == fal.base_url


def test_submit_message_creates_a_kling_task_and_the_job_is_submitted(stack: LocalStack) -> None:
    # Given the real stack with the Kling simulator
    assert stack.simulator is not None
    # When a job message is sent to the real JobsQueue and the job becomes SUBMITTED
    stack.client("sqs").send_message(
        QueueUrl=stack.endpoints["jobs_queue_url"], MessageBody=json.dumps({"job_id": "t1", "prompt": "a cat"})
    )
    table = stack.endpoints["jobs_table"]
    ddb = stack.client("dynamodb")

    def submitted() -> dict[str, Any] | None:
        item: dict[str, Any] | None = ddb.get_item(TableName=table, Key={"job_id": {"S": "t1"}}).get("Item")
        return item if item and item["state"]["S"] == "SUBMITTED" else None

    item = wait_for(submitted, 90, interval_s=0.5, what="job t1 to be SUBMITTED")
    # Then exactly one Kling task was created, it is the job's, and the message was deleted
    stats = stack.simulator.stats()
    assert stats["creates"]["accepted"] == 1
    assert stats["create_attempts_by_external_task_id"] == {"t1": 1}
    assert stats["tasks_by_external_task_id"] == {"t1": 1}
    token = make_token(ACCESS_KEY, SECRET_KEY)
    found = httpx.get(
        f"{stack.endpoints['kling_base_url']}/v1/videos/text2video",
        params={"external_task_id": "t1"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    assert found["data"]["task_id"] == item["task_id"]["S"]  # the task the job records is t1's at Kling
    assert stack.wait_idle(60)  # the message was deleted: nothing left in flight
    counters = stack.function_stats()["SubmitFunction"]
    assert counters["invocations"] == 1 and counters["errors"] == 0 and counters["cold_starts"] == 1


def test_callback_route_reaches_the_callback_function(stack: LocalStack) -> None:
    before = stack.function_stats()["CallbackFunction"]["invocations"]
    # When a callback with a wrong token is posted to the API
    response = httpx.post(
        f"{stack.endpoints['api_base_url']}/callbacks/t1", params={"token": "not-the-token"}, json={}, timeout=60
    )
    # Then the real callback function refused it
    assert response.status_code == 401  # a bad token is refused by the real function
    assert stack.function_stats()["CallbackFunction"]["invocations"] == before + 1


def test_a_signed_callback_is_verified_by_the_callback_function_under_its_own_role(stack: LocalStack) -> None:
    # Given job t1 SUBMITTED (above), and Kling's webhook secret stored in the stack's KlingWebhookSecret
    from standardwebhooks import Webhook

    from kling_local.stack.stack import generate_kling_webhook_secret
    from kling_pipeline.adapters.callback_tokens import job_token

    assert stack.deployment is not None
    secretsmanager = stack.client("secretsmanager")
    ours = secretsmanager.get_secret_value(SecretId=stack.deployment.secrets["CallbackSigningSecret"])["SecretString"]
    kling_secret = generate_kling_webhook_secret()
    stack.put_kling_webhook_secret(kling_secret)
    table, ddb = stack.endpoints["jobs_table"], stack.client("dynamodb")
    task_id = ddb.get_item(TableName=table, Key={"job_id": {"S": "t1"}})["Item"]["task_id"]["S"]
    body = json.dumps({"task_id": task_id, "task_status": "processing"})
    url, params = f"{stack.endpoints['api_base_url']}/callbacks/t1", {"token": job_token(ours, "t1")}

    def post(secret: str, webhook_id: str) -> httpx.Response:
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, now, body),
        }
        return httpx.post(url, params=params, content=body, headers=headers, timeout=60)

    # When a callback signed with another secret, then one signed with Kling's, reach the API
    forged, genuine = post(generate_kling_webhook_secret(), "m-1"), post(kling_secret, "m-2")
    # Then the real function, reading the secret with its own role (IAM enforced), refused the first and
    # acted on the second
    assert forged.status_code == 401, forged.text
    assert genuine.status_code == 200, genuine.text
    assert genuine.json()["action"] == "SUBMITTED -> PROCESSING"


def test_state_file_lists_the_endpoints(stack: LocalStack, project_root: Path) -> None:
    state = read_state_file(project_root)
    assert state is not None
    assert state["jobs_queue_url"] == stack.endpoints["jobs_queue_url"]
    assert state["api_base_url"] == stack.endpoints["api_base_url"]
    assert SECRET_KEY not in json.dumps(state)


def test_a_second_stack_in_the_same_process_is_refused(stack: LocalStack, tmp_path: Path) -> None:
    # Given a second stack for another project, while the first is running
    other = LocalStack(
        StackOptions(
            template_path=TEMPLATE,
            project_root=tmp_path,
            kling_url="http://127.0.0.1:9",
            kling_access_key="unused",
            kling_secret_key="unused",
        )
    )
    # When it is started
    with pytest.raises(DeployError, match="already running"):
        other.start()
    other.stop()
    # Then it was refused and stopped, and the first stack still runs
    # The running stack is untouched: its moto port, its resources, its state file.
    assert os.environ["MOTO_PORT"] == stack.endpoints["moto_endpoint"].rsplit(":", 1)[1]
    assert stack.client("sqs").get_queue_url(QueueName=stack.endpoints["jobs_queue_url"].rsplit("/", 1)[1])
    assert read_state_file(stack.project_root) is not None


def test_the_jobs_api_shows_a_waiting_jobs_place_in_line_under_its_own_role(stack: LocalStack) -> None:
    # Given more jobs than the account's slots (KlingConcurrency 5; generations of 10+ minutes)
    ids = [f"line-{n}" for n in range(6)]
    sqs = stack.client("sqs")
    for job_id in ids:
        sqs.send_message(
            QueueUrl=stack.endpoints["jobs_queue_url"], MessageBody=json.dumps({"job_id": job_id, "prompt": "a heron"})
        )
    table, ddb = stack.endpoints["jobs_table"], stack.client("dynamodb")

    def waiting() -> list[str]:
        items = [ddb.get_item(TableName=table, Key={"job_id": {"S": j}}).get("Item") or {} for j in ids]
        settled = [i for i in items if i.get("state", {}).get("S") == "SUBMITTED" or "waiting_pool" in i]
        return [i["job_id"]["S"] for i in items if "waiting_pool" in i] if len(settled) == len(ids) else []

    line = wait_for(waiting, 90, interval_s=0.5, what="the jobs past the account's slots to wait")
    # When GET /jobs/{job_id} asks about one of them (ApiFunction counts the line in SlotQueues, as its role)
    answer = httpx.get(f"{stack.endpoints['jobs_api_url']}/jobs/{line[0]}", timeout=60)
    # Then it says which pool it waits for and its place
    assert answer.status_code == 200, answer.text
    assert answer.json()["waiting_pool"] == "kling-2.6"
    assert 1 <= answer.json()["place_in_line"] <= len(line)
