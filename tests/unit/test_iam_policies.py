"""Every AWS call a function's code can make is granted by its role's policy in template.yaml.

The local stack enforces IAM through moto, which judges a function's own calls; what moto does not
judge (the state machine's service integrations, resource scoping outside S3/SQS/DynamoDB, policy
conditions) and paths a test run does not take are checked here from the code instead.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kling_pipeline.lifecycle import ALLOWED_TRANSITIONS, JobState
from tests.support.iam_calls import (
    function_actions,
    functions_of,
    granted_actions,
    is_granted,
    missing_permissions,
    state_machine_definition,
    task_actions,
)
from tests.support.template import load_template

# Calls the code can reach by name that a function never makes, each with the reason. Announcer.job_ended
# resumes a waiting caller with SendTaskSuccess only for a COMPLETED job, and a job becomes COMPLETED
# only from DOWNLOADING (the state machine's write, or the poller's repair): submit, callback and the
# jobs API end jobs only as FAILED / CANCELLED, which is SendTaskFailure (granted).
NEVER_ASKED = {
    ("SubmitFunction", "states:SendTaskSuccess"),
    ("CallbackFunction", "states:SendTaskSuccess"),
    ("ApiFunction", "states:SendTaskSuccess"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _without_action(template: dict[str, Any], logical_id: str, action: str) -> dict[str, Any]:
    """A copy of the template whose `logical_id` Policies no longer name `action`."""
    changed = copy.deepcopy(template)
    removed = 0
    for policy in changed["Resources"][logical_id]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement.get("Action")
            if isinstance(actions, list) and action in actions:
                actions.remove(action)
                removed += 1
            elif actions == action:
                statement["Action"] = []
                removed += 1
    assert removed, f"{logical_id} grants no {action} to remove"
    return changed


def test_every_adapter_call_is_granted_by_the_policy_of_each_function_that_makes_it(template: dict[str, Any]) -> None:
    # Given the template and the functions' code
    # When each function's reachable boto3 calls are mapped to IAM actions
    missing = {(lid, action) for lid, actions in missing_permissions(template).items() for action in actions}
    # Then its Policies grant every one (but the declared calls it never makes)
    assert missing - NEVER_ASKED == set()


def test_each_declared_never_asked_call_is_still_reachable_and_completion_comes_only_from_downloading(
    template: dict[str, Any],
) -> None:
    # Given the declared exceptions, When the code is read again
    missing = {(lid, action) for lid, actions in missing_permissions(template).items() for action in actions}
    # Then none is stale, and their premise holds: COMPLETED is entered only from DOWNLOADING
    assert missing >= NEVER_ASKED
    assert {before for before, after in ALLOWED_TRANSITIONS if after is JobState.COMPLETED} == {JobState.DOWNLOADING}


def test_the_checker_reads_each_functions_calls(template: dict[str, Any]) -> None:
    # Given the functions, When their calls are read, Then each one's known calls are found
    actions = {lid: function_actions(code) for lid, code in functions_of(template).items()}
    assert {"s3:PutObject", "dynamodb:GetItem"} <= actions["DownloadFunction"]
    assert "dynamodb:UpdateItem" not in actions["DownloadFunction"]  # the state machine writes its transition
    assert {"states:StartExecution", "dynamodb:Query", "s3:GetObject"} <= actions["PollerFunction"]
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "sqs:SendMessage"} <= actions["SubmitFunction"]
    assert {"dynamodb:BatchGetItem", "s3:GetObject", "sqs:SendMessage"} <= actions["ApiFunction"]
    assert "sqs:ChangeMessageVisibility" in actions["WebhookFunction"]


@pytest.mark.parametrize(
    ("function", "action"),
    [
        ("SubmitFunction", "dynamodb:UpdateItem"),
        ("PollerFunction", "states:StartExecution"),
        ("DownloadFunction", "s3:PutObjectTagging"),
        ("WebhookFunction", "sqs:ChangeMessageVisibility"),
    ],
)
def test_a_permission_removed_from_a_copy_of_the_template_is_reported(
    template: dict[str, Any], function: str, action: str
) -> None:
    # Given a copy of the template without one permission the function's code uses
    changed = _without_action(template, function, action)
    # When the calls are checked against it, Then that function and action are reported
    assert action in missing_permissions(changed).get(function, set())


def test_the_state_machine_role_grants_every_task_integration(template: dict[str, Any]) -> None:
    # Given the definition's Task resources, When mapped to IAM actions
    needed = task_actions(state_machine_definition())
    assert {"lambda:InvokeFunction", "dynamodb:UpdateItem", "events:PutEvents", "sqs:SendMessage"} <= needed
    # Then the state machine's Policies grant each
    granted = granted_actions(template, "DownloadStateMachine")
    assert {a for a in needed if not is_granted(a, granted)} == set()


def test_a_task_integration_removed_from_the_state_machine_role_is_reported(template: dict[str, Any]) -> None:
    # Given a copy of the template whose state machine may no longer write the job
    changed = _without_action(template, "DownloadStateMachine", "dynamodb:UpdateItem")
    # Then its Task's action is not granted
    granted = granted_actions(changed, "DownloadStateMachine")
    assert "dynamodb:UpdateItem" in {a for a in task_actions(state_machine_definition()) if not is_granted(a, granted)}


def _secret_reads(template: dict[str, Any], logical_id: str) -> tuple[set[str], set[str]]:
    """(the secrets a function's environment names, the secrets its policy lets it read), by logical id."""
    resources = template["Resources"]
    secrets = {lid for lid, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    properties = resources[logical_id]["Properties"]
    variables = properties.get("Environment", {}).get("Variables", {})
    named = {v["Ref"] for v in variables.values() if isinstance(v, dict) and v.get("Ref") in secrets}
    readable: set[str] = set()
    for policy in properties.get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement.get("Action")
            if "secretsmanager:GetSecretValue" in (actions if isinstance(actions, list) else [actions]):
                listed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                readable |= {r["Ref"] for r in listed if isinstance(r, dict) and "Ref" in r}
    return named, readable


def test_each_function_reads_exactly_the_secrets_its_environment_names(template: dict[str, Any]) -> None:
    # moto does not judge a secret's ARN against the policy's resources (resource scoping, above): checked here,
    # both ways: a secret a function is told about is readable, and no other secret is.
    for logical_id in functions_of(template):
        named, readable = _secret_reads(template, logical_id)
        assert named == readable, logical_id
    # (the callback function reads Kling's webhook secret: signed callbacks, issue 23)
    assert "KlingWebhookSecret" in _secret_reads(template, "CallbackFunction")[1]


def test_the_callback_reads_replicates_webhook_secret_and_never_its_api_token(template: dict[str, Any]) -> None:
    # Given the template, When the secrets each function may read are listed
    readable = {lid: _secret_reads(template, lid)[1] for lid in functions_of(template)}
    # Then the one function the internet calls verifies Replicate's webhooks with ReplicateWebhookSecret and
    # cannot read ReplicateCredentials (an API token that spends money)
    assert "ReplicateWebhookSecret" in readable["CallbackFunction"]
    assert "ReplicateCredentials" not in readable["CallbackFunction"]
    # and no other function reads the webhook secret; those that call Replicate read the token
    assert {lid for lid, secrets in readable.items() if "ReplicateWebhookSecret" in secrets} == {"CallbackFunction"}
    assert {"SubmitFunction", "PollerFunction", "ApiFunction"} <= {
        lid for lid, secrets in readable.items() if "ReplicateCredentials" in secrets
    }
