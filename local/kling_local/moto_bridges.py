"""Small corrections to moto where it differs from AWS in ways this pipeline depends on.

Applied by the local stack and by the integration tests, so both run the same engine. Each bridge
names the AWS behaviour it restores; remove one when moto does it itself.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _input_members(service_name: str, api_action: str) -> dict[str, str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service_name)
    operation = model.operation_model(api_action[:1].upper() + api_action[1:])
    shape = operation.input_shape
    return {name.lower(): name for name in (shape.members if shape is not None else {})}


@cache
def apply_aws_sdk_parameter_case() -> None:
    """AWS SDK integrations take PascalCase parameters even where the API is camelCase
    (`aws-sdk:sfn:sendTaskSuccess` with `TaskToken`); moto hands them to botocore as written, which
    rejects them. Map each top-level key to the API's own member name, as Step Functions does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._eval_service_task

    def _eval_service_task(self: Any, *args: Any, **kwargs: Any) -> Any:
        members = _input_members(self._get_boto_service_name(), self.resource.api_action)
        parameters = kwargs.get("normalised_parameters", args[2] if len(args) > 2 else {})
        fixed = {members.get(key.lower(), key): value for key, value in parameters.items()}
        if "normalised_parameters" in kwargs:
            kwargs["normalised_parameters"] = fixed
        else:
            args = (*args[:2], fixed, *args[3:])
        return original(self, *args, **kwargs)

    StateTaskServiceAwsSdk._eval_service_task = _eval_service_task  # type: ignore[method-assign]


@cache
def apply_schedule_rules_match_no_events() -> None:
    """A rule with a schedule and no event pattern fires on its schedule only; AWS never matches events
    against it. moto treats its empty pattern as "match everything" and then fails every PutEvents on
    the bus with NotImplementedError for the rule's Lambda target (the poller's schedule)."""
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send_to_targets(self: Any, *args: Any, **kwargs: Any) -> None:
        pattern = getattr(self, "event_pattern", None)
        if getattr(self, "scheduled_expression", None) and (pattern is None or not pattern.dump()):
            return
        original(self, *args, **kwargs)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


@cache
def apply_dynamodb_requests_atomic() -> None:
    """DynamoDB applies each request as one step: a conditional write's check and write, a
    transaction's items all or none, an ADD's read and sum. moto's handlers are plain Python, and
    threads (the local stack's concurrent functions, a test's concurrent submitters) interleave
    inside them: two conditional claims of one item could both pass. One request at a time restores
    the guarantee the exactly-once claims and the daily budget rely on."""
    import threading

    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    lock = threading.RLock()

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


@cache
def apply_aws_unkind_answers() -> None:
    """AWS throttles, fails, half-fails and conflicts; moto never does. Hooks kling_local.aws_faults into
    moto's two entry points: DynamoDB's TransactionConflict, its throttling, PutEvents' failed entries and
    5xx from S3, SQS, Step Functions and Lambda, at a rate (`AwsFaults`, the local stack's `aws_faults`)
    or on a test's demand (`AWS_FAULTS.inject`). With neither, every request goes to moto untouched."""
    from kling_local.aws_faults import install

    install()


def apply_all() -> None:
    apply_aws_sdk_parameter_case()
    apply_schedule_rules_match_no_events()
    apply_dynamodb_requests_atomic()
    apply_aws_unkind_answers()
    apply_iam_bridges()


# -- IAM as AWS judges it (issue 20). These change nothing until moto's IAM authorization is on
# (`settings.INITIAL_NO_AUTH_ACTION_COUNT` reached), which the local stack turns on for its functions.

# API calls that IAM authorizes under another action's name (AWS's Service Authorization Reference).
_IAM_ACTION_NAMES = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:HeadObject": "s3:GetObject",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:ListParts": "s3:ListMultipartUploadParts",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket",
}
_TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def iam_enforced() -> bool:
    """moto's IAM authorization is on (its own switch, `INITIAL_NO_AUTH_ACTION_COUNT`)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _dynamodb_checks(action: str, body: Any, region: str, account: str) -> list[tuple[str, str]]:
    """(action, resource) pairs IAM checks for one DynamoDB request: the table or index it names,
    each item's own action for a transaction (TransactWriteItems is not an IAM action)."""
    import json

    def table(name: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    try:
        request: dict[str, Any] = json.loads(body or b"{}")
    except ValueError:
        return [(action, "*")]
    if action in ("dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"):
        checks = []
        for item in request.get("TransactItems") or []:
            for kind, spec in item.items():
                checks.append((_TRANSACT_ITEM_ACTIONS.get(kind, action), table(str(spec.get("TableName")))))
        return checks or [(action, "*")]
    if "RequestItems" in request:  # BatchGetItem, BatchWriteItem: one check per table
        return [(action, table(name)) for name in request["RequestItems"]]
    if "TableName" in request:
        return [(action, table(str(request["TableName"]), request.get("IndexName")))]
    return [(action, "*")]


@cache
def apply_iam_actions_as_aws_names() -> None:
    """IAM authorizes some calls under other actions and on the resource the request names:
    SendMessageBatch needs sqs:SendMessage, HeadObject s3:GetObject, a multipart upload's parts
    s3:PutObject, a DynamoDB transaction needs each item's PutItem /
    UpdateItem / DeleteItem / ConditionCheckItem / GetItem on that item's table, and a DynamoDB call
    is judged against its table's (or index's) ARN. moto asks for the API's own name
    (dynamodb:TransactWriteItems, s3:HeadObject: actions no policy grants) against resource "*" for
    DynamoDB."""
    from moto.iam.access_control import IAMRequestBase

    original = IAMRequestBase.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        asked = self._action
        if asked.startswith("dynamodb:"):
            checks = _dynamodb_checks(asked, self._body, self._region, self.account_id)
        else:
            checks = [(_IAM_ACTION_NAMES.get(asked, asked), resource)]
        try:
            for action, arn in checks:
                self._action = action
                original(self, arn)
        finally:
            self._action = asked

    IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]


@cache
def apply_iam_resource_unknown_judges_action() -> None:
    """AWS judges a statement's Resource against the resource the request acts on. moto knows it for
    S3, SQS, IAM and STS (DynamoDB: the bridge above) and judges every other request against "*",
    which no scoped Resource matches: an Allow of states:StartExecution on the one state machine
    would refuse StartExecution on it. Where moto does not know the resource, judge the action alone
    (the resource scoping of those statements is then not checked locally)."""
    from moto.iam.access_control import IAMPolicyStatement

    original = IAMPolicyStatement._check_element_matches

    def _check_element_matches(self: Any, statement_element: Any, value: str) -> bool:
        if statement_element == "Resource" and value == "*":
            return True
        return bool(original(self, statement_element, value))

    IAMPolicyStatement._check_element_matches = _check_element_matches  # type: ignore[method-assign]


@cache
def apply_iam_template_role_policies_count() -> None:
    """A role's inline policies count for its sessions, however the role was created. moto's
    CloudFormation keeps a role's `Policies` as parsed documents where its IAM API keeps JSON text,
    and its authorization then fails on them (KeyError, a 500): read either form."""
    import json

    from moto.iam.access_control import IAMPolicy

    original = IAMPolicy.__init__

    def __init__(self: Any, policy: Any) -> None:
        if isinstance(policy, dict) and "Statement" in policy:
            policy = json.dumps(policy)
        original(self, policy)

    IAMPolicy.__init__ = __init__  # type: ignore[method-assign]


# Services whose API speaks JSON: AWS refuses with {"__type": "AccessDeniedException"} and HTTP 400.
_JSON_DENIAL_SERVICES = frozenset({"dynamodb", "states", "events", "secretsmanager", "logs", "scheduler"})


@cache
def apply_iam_denials_in_service_protocol() -> None:
    """AWS refuses a JSON-protocol call (DynamoDB, Step Functions, EventBridge, Secrets Manager) with
    AccessDeniedException in that service's JSON form, which an SDK reads as the error code. moto
    answers every service with IAM's XML, which botocore cannot parse there: the code becomes "403"."""
    from moto.core.exceptions import JsonRESTError
    from moto.iam.access_control import IAMRequest

    original = IAMRequest._raise_access_denied

    def _raise_access_denied(self: Any) -> None:
        if self._service in _JSON_DENIAL_SERVICES:
            raise JsonRESTError(
                "AccessDeniedException",
                f"User: {self._access_key.arn} is not authorized to perform: {self._action} "
                "because no identity-based policy allows the action",
            )
        original(self)

    IAMRequest._raise_access_denied = _raise_access_denied  # type: ignore[method-assign]


def _signed_principal(response: Any) -> Any | None:
    """The role session or IAM user that signed this request (moto's own lookup), None for a key
    moto does not know or an unsigned / presigned request."""
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.utilities.utils import get_partition

    authorization = str(response.headers.get("Authorization") or "")
    if "Credential=" not in authorization:
        return None
    key_id = authorization.partition("Credential=")[2].split("/", 1)[0]
    try:
        return create_access_key(
            account_id=response.current_account,
            partition=get_partition(response.region),
            access_key_id=key_id,
            headers=response.headers,
        )
    except CreateAccessKeyFailure:
        return None


def _prefix_condition_holds(condition: Any, key: str) -> bool:
    """A ListBucket statement's Condition for a request that reads `key`: s3:prefix (StringLike,
    StringEquals) is compared with the key; any other condition is taken as not met."""
    import fnmatch

    if not condition:
        return True
    for operator, entries in condition.items():
        for context_key, expected in entries.items():
            if context_key.lower() != "s3:prefix" or operator not in ("StringLike", "StringEquals"):
                return False
            values = expected if isinstance(expected, list) else [expected]
            if operator == "StringLike":
                held = any(fnmatch.fnmatchcase(key, str(v).replace("[", "[[]")) for v in values)
            else:
                held = key in [str(v) for v in values]
            if not held:
                return False
    return True


def may_list_bucket(principal: Any, bucket: str, key: str) -> bool:
    """Whether `principal`'s policies allow s3:ListBucket on `bucket` for a request that reads `key`
    (an explicit Deny wins; a grant conditioned on s3:prefix counts when the key matches it)."""
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement

    resource = f"arn:aws:s3:::{bucket}"
    allowed = False
    for policy in principal.collect_policies():
        statements = IAMPolicy(policy)._policy_json.get("Statement") or []
        for statement in statements if isinstance(statements, list) else [statements]:
            if "Action" not in statement or "Resource" not in statement:
                continue
            judged = IAMPolicyStatement(statement)
            if not judged._check_element_matches("Action", "s3:ListBucket"):
                continue
            if not judged._check_element_matches("Resource", resource):
                continue
            if not _prefix_condition_holds(statement.get("Condition"), key):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


@cache
def apply_s3_missing_key_forbidden_without_list() -> None:
    """S3 answers GetObject / HeadObject on a missing key with 403 AccessDenied, not 404 NoSuchKey,
    to a principal without s3:ListBucket on the bucket: not being allowed to list means not being
    allowed to learn that a key does not exist. A ListBucket grant conditioned on s3:prefix counts
    when the key matches the prefix (as reported for S3, kopia/kopia#3072). moto always says 404.
    Judged only for a caller moto's IAM authorization judges (a role session or an IAM user)."""
    from moto.s3.exceptions import MissingKey, S3AccessDeniedError
    from moto.s3.responses import S3Response

    def forbidden(response: Any, bucket: str, key: str) -> bool:
        if not iam_enforced():
            return False
        principal = _signed_principal(response)
        return principal is not None and not may_list_bucket(principal, bucket, key)

    original_head = S3Response.head_object

    def head_object(self: Any, bucket_name: str, query: Any, key_name: str, headers: Any) -> Any:
        status, response_headers, body = original_head(self, bucket_name, query, key_name, headers)
        if status == 404 and "x-amz-delete-marker" not in response_headers and forbidden(self, bucket_name, key_name):
            return 403, {}, ""
        return status, response_headers, body

    original_get = S3Response._key_response_get

    def _key_response_get(self: Any, query: Any, key_name: str) -> Any:
        try:
            return original_get(self, query, key_name)
        except MissingKey:
            if forbidden(self, self.bucket_name, key_name):
                raise S3AccessDeniedError() from None
            raise

    S3Response.head_object = head_object  # type: ignore[method-assign]
    S3Response._key_response_get = _key_response_get  # type: ignore[method-assign]


def apply_iam_bridges() -> None:
    apply_iam_template_role_policies_count()
    apply_iam_actions_as_aws_names()
    apply_iam_denials_in_service_protocol()
    apply_iam_resource_unknown_judges_action()
    apply_s3_missing_key_forbidden_without_list()


@cache
def install_unknown_callers_are_the_account() -> None:
    """A request signed with a key moto does not know (the stack itself, moto's own engine) is the
    account's, not judged; a role session or an IAM user is judged by moto's IAM authorization."""
    from moto.core.authorization import ActionAuthenticatorMixin

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def _authenticate_and_authorize_action(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if iam_enforced() and _signed_principal(self) is None:
            return
        original(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action  # type: ignore[method-assign]
