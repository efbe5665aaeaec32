"""AWS's unkind answers, played by moto: throttling, 5xx, PutEvents' partial failures, transaction conflicts.

moto answers every well-formed request, at once and in order. AWS does not: DynamoDB throttles
(`ThrottlingException`, `ProvisionedThroughputExceededException`) and cancels a transaction that meets
another write to one of its items (`TransactionCanceledException`, reason `TransactionConflict`);
EventBridge answers PutEvents 200 with `FailedEntryCount` > 0 and an `ErrorCode` per failed entry; S3,
SQS, Step Functions and Lambda answer 500/503. This module answers a request so before moto sees it
(a fault never applies the request; except a rule made `applied=True`: moto applies the request and
the answer is lost, replaced by the fault, as when AWS commits a write and its answer never arrives),
from one hook on each of moto's two entry points: its server (the local stack) and its in-process
mock (the integration tests).

Two ways in:
- `AwsFaults` (a rate, a seed, which faults): random faults for requests the pipeline makes (its
  functions, which carry Lambda's `exec-env` in their User-Agent, and its workflow's service
  integrations, made by moto's Step Functions engine), never for the harness watching it (the demo,
  the chaos driver, the tests' own reads). `kling-pipeline demo --aws-faults RATE` and `make chaos`.
  `PUT_EVENTS_FIRST_PER_END` is not random: each end's first PutEvents has every entry failed.
- `AWS_FAULTS.inject(...)`: a deterministic fault for a test (the next N matching requests, whoever
  sends them), optionally running `then` when it fires (another writer moving the job meanwhile).

Transaction conflicts at a rate: DynamoDB cancels a transaction while another holds one of its items.
moto applies one request at a time (moto_bridges.apply_dynamodb_requests_atomic), so nothing is ever
in flight at once; the model here is "a transaction touching an item another transaction wrote within
`conflict_window_s` is cancelled at `rate`": the shared counters (the daily cost aggregate, the budget)
are where that happens, as on AWS.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The faults a plan can turn on, by the service that answers them.
DYNAMODB_THROTTLING = "dynamodb-throttling"
DYNAMODB_CONFLICTS = "dynamodb-conflicts"
PUT_EVENTS_FAILED_ENTRIES = "eventbridge-failed-entries"
S3_5XX = "s3-5xx"
SQS_5XX = "sqs-5xx"
STEP_FUNCTIONS_5XX = "stepfunctions-5xx"
LAMBDA_5XX = "lambda-5xx"
# Not a rate: the first PutEvents of each end (its job id and state) answered with every entry failed.
PUT_EVENTS_FIRST_PER_END = "eventbridge-first-per-end"
ALL_FAULTS = frozenset(
    {
        DYNAMODB_THROTTLING,
        DYNAMODB_CONFLICTS,
        PUT_EVENTS_FAILED_ENTRIES,
        S3_5XX,
        SQS_5XX,
        STEP_FUNCTIONS_5XX,
        LAMBDA_5XX,
    }
)
# ALL_FAULTS are the rate faults (what `--aws-faults RATE` turns on); a plan may also name these.
KNOWN_FAULTS = ALL_FAULTS | {PUT_EVENTS_FIRST_PER_END}
# fault -> (SigV4 service name, the operation it applies to or None for all, the answers it picks from)
_RATE_FAULTS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    DYNAMODB_THROTTLING: ("dynamodb", None, ("ThrottlingException", "ProvisionedThroughputExceededException")),
    PUT_EVENTS_FAILED_ENTRIES: ("events", "PutEvents", ("FailedEntries",)),
    S3_5XX: ("s3", None, ("InternalError", "ServiceUnavailable")),
    SQS_5XX: ("sqs", None, ("InternalError", "ServiceUnavailable")),
    STEP_FUNCTIONS_5XX: ("states", None, ("InternalError", "ServiceUnavailable")),
    LAMBDA_5XX: ("lambda", None, ("InternalError", "ServiceUnavailable")),
}
TRANSACTION_CONFLICT = "TransactionConflict"
ACCESS_DENIED = "AccessDenied"
STEP_FUNCTIONS_ENGINE_KEY = "ak"  # the access key moto's Step Functions engine signs its service calls with
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/[^/]+/([^/]+)/")
_DYNAMODB_WRITES = ("UpdateItem", "DeleteItem", "TransactWriteItems")
Response = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class AwsFaults:
    """Random AWS faults for the local stack: each request the pipeline makes to a faulted service is
    answered with one at `rate` (0.05: one in twenty). `seed` makes the draw repeatable."""

    rate: float = 0.05
    seed: int | None = None
    faults: frozenset[str] = ALL_FAULTS
    conflict_window_s: float = 1.0
    pipeline_only: bool = True  # False: the harness's own requests are faulted too

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"an AWS fault rate is a share of requests, 0 to 1, not {self.rate}")
        unknown = set(self.faults) - KNOWN_FAULTS
        if unknown:
            raise ValueError(
                f"unknown AWS fault(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN_FAULTS))}"
            )


@dataclass
class Rule:
    """A deterministic fault: the next `times` requests that match (None: every one) get `answer`."""

    answer: str  # an error code, FailedEntries or TransactionConflict
    service: str
    operation: str | None = None
    method: str | None = None
    contains: str | None = None  # in the path or, for JSON APIs, the body
    times: int | None = 1
    then: Callable[[], None] | None = None
    applied: bool = False  # moto applies the request, and the fault replaces its answer
    fired: int = 0

    def matches(self, request: _Request) -> bool:
        if self.service != request.service or (self.times is not None and self.fired >= self.times):
            return False
        if self.operation is not None and self.operation != request.operation:
            return False
        if self.method is not None and self.method != request.method:
            return False
        return self.contains is None or self.contains in request.path or self.contains in request.text()


@dataclass
class _Request:
    method: str
    path: str
    headers: Any  # a Mapping of header names, as werkzeug or botocore gives them
    read_body: Callable[[], bytes]
    service: str = ""
    access_key: str = ""
    _body: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        found = _CREDENTIAL.search(self.header("Authorization"))
        if found:
            self.access_key, self.service = found.group(1), found.group(2)

    def header(self, name: str) -> str:
        value: Any = self.headers.get(name) or self.headers.get(name.lower()) or ""
        return value.decode() if isinstance(value, bytes) else str(value)

    @property
    def operation(self) -> str:
        target = self.header("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1]
        if self.service == "lambda" and self.path.endswith("/invocations"):
            return "Invoke"
        return f"{self.method} {self.path}"

    @property
    def from_pipeline(self) -> bool:
        return "exec-env/AWS_Lambda" in self.header("User-Agent") or self.access_key == STEP_FUNCTIONS_ENGINE_KEY

    def body(self) -> bytes:
        if self._body is None:
            self._body = self.read_body() if self.header("X-Amz-Target") else b""
        return self._body

    def text(self) -> str:
        return self.body().decode("utf-8", "replace")

    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.body() or b"{}")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


class FaultInjector:
    """The process's AWS faults (moto's state is process-wide, so is this)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan: AwsFaults | None = None
        self._random = random.Random()
        self._rules: list[Rule] = []
        self._written: dict[str, tuple[float, int]] = {}  # item -> (when, which transaction) wrote it
        self._transactions = 0
        self._ends_failed: set[str] = set()  # the ends whose first PutEvents was failed (PUT_EVENTS_FIRST_PER_END)
        self.injected: Counter[str] = Counter()

    def configure(self, plan: AwsFaults | None) -> None:
        """Turn the random faults on (or off with None); counts start again."""
        with self._lock:
            self.plan = plan
            self._random = random.Random(plan.seed if plan else None)
            self._written.clear()
            self._ends_failed.clear()
            self.injected = Counter()

    def inject(
        self,
        answer: str,
        service: str,
        *,
        operation: str | None = None,
        method: str | None = None,
        contains: str | None = None,
        times: int | None = 1,
        then: Callable[[], None] | None = None,
        applied: bool = False,
    ) -> Rule:
        """Answer the next `times` matching requests with `answer` (see `Rule`), whoever sends them;
        with `applied`, after moto has applied the request (a write made, its answer lost)."""
        rule = Rule(answer, service, operation, method, contains, times, then, applied)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Forget one rule (a fault that lasts until the harness says, `times=None`); the rest stay."""
        with self._lock:
            self._rules = [kept for kept in self._rules if kept is not rule]

    def clear(self) -> None:
        """Forget every rule and turn the random faults off."""
        with self._lock:
            self._rules.clear()
        self.configure(None)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.injected)

    # -- deciding ----------------------------------------------------------------------------------

    def answer(self, request: _Request) -> Response | None:
        """The fault to answer `request` with, or None to let moto answer it."""
        response, _ = self.fault(request)
        return response

    def fault(self, request: _Request) -> tuple[Response | None, bool]:
        """The fault to answer `request` with (None: moto answers it), and whether moto is to apply the
        request first (the fault then replaces its answer)."""
        if not request.service or (self.plan is None and not self._rules):
            return None, False
        then: Callable[[], None] | None = None
        with self._lock:
            response, then, applied = self._decide(request)
        if then is not None:
            then()
        return response, applied

    def _decide(self, request: _Request) -> tuple[Response | None, Callable[[], None] | None, bool]:
        for rule in self._rules:
            if rule.matches(request):
                rule.fired += 1
                self.injected[rule.answer] += 1
                return self._build(request, rule.answer, contains=rule.contains), rule.then, rule.applied
        response = self._planned(request)
        return response, None, False

    def _first_put_of_an_end(self, request: _Request) -> bool:
        """A PutEvents carrying an end not failed before (PUT_EVENTS_FIRST_PER_END); marks it failed."""
        ends = set()
        for entry in request.json().get("Entries") or []:
            try:
                detail = json.loads(entry.get("Detail") or "{}")
            except (ValueError, AttributeError):
                continue
            if isinstance(detail, dict) and detail.get("job_id"):
                ends.add(f"{detail.get('job_id')}|{detail.get('state')}")
        new = ends - self._ends_failed
        self._ends_failed |= new
        return bool(new)

    def _planned(self, request: _Request) -> Response | None:
        plan = self.plan
        transaction = request.service == "dynamodb" and request.operation == "TransactWriteItems"
        if plan is not None and (request.from_pipeline or not plan.pipeline_only):
            for name, (service, operation, answers) in _RATE_FAULTS.items():
                if name not in plan.faults or service != request.service:
                    continue
                if operation is not None and operation != request.operation:
                    continue
                if self._random.random() < plan.rate:
                    self.injected[name] += 1
                    return self._build(request, self._random.choice(answers))
            if (
                PUT_EVENTS_FIRST_PER_END in plan.faults
                and request.service == "events"
                and request.operation == "PutEvents"
                and self._first_put_of_an_end(request)
            ):
                self.injected[PUT_EVENTS_FIRST_PER_END] += 1
                return self._build(request, "FailedEntries")
            if transaction and DYNAMODB_CONFLICTS in plan.faults:
                conflict = self._conflicting_item(request, plan)
                if conflict is not None:
                    self.injected[DYNAMODB_CONFLICTS] += 1
                    return self._conflict(request, conflict)
        if request.service == "dynamodb" and request.operation in _DYNAMODB_WRITES:
            self._remember_writes(request)
        return None

    def _items(self, request: _Request) -> list[str]:
        """The items a DynamoDB write touches, as `table|key` (Puts of whole items are not tracked)."""
        body = request.json()
        if request.operation != "TransactWriteItems":
            return [f"{body.get('TableName')}|{json.dumps(body.get('Key'), sort_keys=True)}"]
        items = []
        for entry in body.get("TransactItems") or []:
            action: dict[str, Any] = next(iter(entry.values()), {}) if isinstance(entry, dict) else {}
            items.append(f"{action.get('TableName')}|{json.dumps(action.get('Key'), sort_keys=True)}")
        return items

    def _remember_writes(self, request: _Request) -> None:
        if request.operation != "TransactWriteItems":
            return
        self._transactions += 1
        now = time.monotonic()
        for item in self._items(request):
            self._written[item] = (now, self._transactions)

    def _conflicting_item(self, request: _Request, plan: AwsFaults) -> int | None:
        now = time.monotonic()
        for index, item in enumerate(self._items(request)):
            written = self._written.get(item)
            recent = written is not None and now - written[0] < plan.conflict_window_s
            if recent and self._random.random() < plan.rate:
                return index
        return None

    # -- answering --------------------------------------------------------------------------------

    def _build(self, request: _Request, answer: str, *, contains: str | None = None) -> Response:
        if answer == TRANSACTION_CONFLICT:
            items = [json.dumps(i) for i in (request.json().get("TransactItems") or [])]
            index = next((i for i, text in enumerate(items) if contains and contains in text), 0)
            return self._conflict(request, index)
        if answer == "FailedEntries":
            entries = request.json().get("Entries") or [{}]
            codes = [self._random.choice(("InternalFailure", "ThrottlingException")) for _ in entries]
            body = {
                "FailedEntryCount": len(entries),
                "Entries": [{"ErrorCode": code, "ErrorMessage": f"{code} (injected)"} for code in codes],
            }
            return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(body).encode()
        status = {"ServiceUnavailable": 503, ACCESS_DENIED: 403}.get(answer, 500)
        if request.service == "dynamodb":
            status = 500 if answer in ("InternalError", "InternalServerError") else 400
        return _error(request, status, answer, f"{answer} (injected by kling_local.aws_faults)")

    def _conflict(self, request: _Request, index: int) -> Response:
        count = len(request.json().get("TransactItems") or []) or 1
        reasons = [
            {"Code": TRANSACTION_CONFLICT, "Message": "Transaction is ongoing for the item"}
            if i == index
            else {"Code": "None"}
            for i in range(count)
        ]
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
            f"[{', '.join(r['Code'] for r in reasons)}]",
            "CancellationReasons": reasons,
        }
        return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body).encode()


def _error(request: _Request, status: int, code: str, message: str) -> Response:
    """An error in the service's own protocol, as botocore parses it."""
    if request.service == "dynamodb":
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
        # With a request id, as every AWS answer has (moto's Step Functions engine reads it).
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": uuid.uuid4().hex}
        return status, headers, json.dumps(body).encode()
    if request.service == "lambda":
        lambda_code = {"InternalError": "ServiceException", ACCESS_DENIED: "AccessDeniedException"}.get(code, code)
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": lambda_code}
        return status, headers, json.dumps({"Type": "Service", "Message": message}).encode()
    if request.header("X-Amz-Target"):
        json_code = code + "Exception" if code == ACCESS_DENIED else code
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{json_code};Receiver"}
        return status, headers, json.dumps({"__type": json_code, "message": message}).encode()
    if request.method == "HEAD":
        return status, {}, b""  # S3 answers HEAD with the status alone
    if request.service == "s3":
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    else:
        error = f"<Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        xml = f"<ErrorResponse>{error}</ErrorResponse>"
    return status, {"Content-Type": "application/xml"}, ('<?xml version="1.0" encoding="UTF-8"?>' + xml).encode()


AWS_FAULTS = FaultInjector()


def _prepared_body(request: Any) -> Callable[[], bytes]:
    def read() -> bytes:
        body = request.body
        if body is None:
            return b""
        if isinstance(body, str):
            return body.encode()
        if isinstance(body, bytes | bytearray):
            return bytes(body)
        return b""  # a stream (an upload): never needed to decide a fault

    return read


def install(injector: FaultInjector = AWS_FAULTS) -> None:
    """Hook `injector` into moto's server (werkzeug) and its in-process mock (botocore's stubber)."""
    from urllib.parse import urlsplit

    from moto.core.botocore_stubber import BotocoreStubber
    from moto.core.utils import convert_to_flask_response

    original_process = BotocoreStubber.process_request
    original_call = convert_to_flask_response.__call__

    def process_request(self: Any, request: Any) -> Any:
        view = _Request(request.method, urlsplit(request.url).path, request.headers, _prepared_body(request))
        fault, applied = injector.fault(view)
        if fault is None or applied:
            answered = original_process(self, request)
            if fault is None:
                return answered
        return fault

    def call(self: Any, args: Any = None, **kwargs: Any) -> Any:
        from flask import Response
        from flask import request as flask_request

        view = _Request(flask_request.method, flask_request.path, flask_request.headers, flask_request.get_data)
        fault, applied = injector.fault(view)
        if fault is None or applied:
            answered = original_call(self, args, **kwargs)
            if fault is None:
                return answered
        status, headers, body = fault
        return Response(response=body, status=status, headers=headers)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    convert_to_flask_response.__call__ = call  # type: ignore[method-assign]
