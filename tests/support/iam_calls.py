"""What each function's code asks of AWS, read from the source, and what its role's policy grants.

Where the local stack's IAM (moto) cannot judge a call, the test suite judges it here, from the code:
every boto3 call in kling_pipeline/adapters/ a function can reach maps to an IAM action, and the
function's Policies in the template must grant it. Reachability is by name: the function's own
modules (app.py and the kling_pipeline modules it imports, adapters aside) call names; an adapter
function or method with one of those names is reached, and what it calls is reached in turn.
"""

from __future__ import annotations

import ast
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = ROOT / "layers" / "common" / "python"
ADAPTERS = "kling_pipeline.adapters"

# boto3 service name -> IAM service prefix, where they differ
IAM_PREFIX = {"stepfunctions": "states"}

# Calls whose IAM action is not the operation's own name (AWS's Service Authorization Reference).
SPECIAL_CALLS: dict[str, tuple[str, ...]] = {
    "head_object": ("s3:GetObject",),
    "upload_fileobj": ("s3:PutObject", "s3:AbortMultipartUpload"),  # multipart parts are PutObject
    "upload_file": ("s3:PutObject", "s3:AbortMultipartUpload"),
    "download_fileobj": ("s3:GetObject",),
    "download_file": ("s3:GetObject",),
    "send_message_batch": ("sqs:SendMessage",),
    "get_secret": ("secretsmanager:GetSecretValue",),  # Powertools parameters.get_secret
    "get_secret_value": ("secretsmanager:GetSecretValue",),
}
# TransactWriteItems is no IAM action: each item needs its own.
TRANSACT_ITEMS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Step Functions integrations whose IAM action is not the integration's name.
TASK_ACTIONS = {"lambda:Invoke": "lambda:InvokeFunction"}
# SAM policy templates used by the template, as the actions they grant.
SAM_POLICY_TEMPLATES = {"LambdaInvokePolicy": ("lambda:InvokeFunction",)}


@cache
def operation_actions(service: str) -> dict[str, str]:
    """boto3 method name -> IAM action, for one boto3 service (`update_item` -> dynamodb:UpdateItem)."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    prefix = IAM_PREFIX.get(service, model.signing_name or service)
    return {xform_name(op): f"{prefix}:{op}" for op in model.operation_names}


@dataclass
class _Def:
    """One function or method of an adapter module: what it asks of AWS, and what it calls."""

    name: str
    actions: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _services(tree: ast.AST) -> set[str]:
    """The boto3 services a module makes clients or resources for (boto3.client("s3"), ...)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in ("client", "resource") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def _transact_actions(tree: ast.AST) -> set[str]:
    actions = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in TRANSACT_ITEMS:
                    actions.add(TRANSACT_ITEMS[key.value])
    return actions


def _call_actions(node: ast.Call, services: Iterable[str]) -> set[str]:
    name = _call_name(node)
    if name is None:
        return set()
    if name in SPECIAL_CALLS:
        return set(SPECIAL_CALLS[name])
    if name == "generate_presigned_url" and node.args and isinstance(node.args[0], ast.Constant):
        method = str(node.args[0].value)
        return {a for s in services if (a := operation_actions(s).get(method))}
    return {a for s in services if (a := operation_actions(s).get(name)) and name != "transact_write_items"}


@cache
def adapter_defs(module_path: Path) -> tuple[list[_Def], set[str]]:
    """The module's functions and methods with their AWS actions, and its transaction items' actions."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    services = _services(tree)
    defs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            item = _Def(node.name)
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call):
                    item.actions |= _call_actions(inner, services)
                    if (called := _call_name(inner)) is not None:
                        item.calls.add(called)
                    if _call_name(inner) == "transact_write_items":
                        item.calls.add("transact_write_items")
            defs.append(item)
    return defs, _transact_actions(tree)


def module_path(module: str) -> Path | None:
    path = PACKAGE_ROOT / Path(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kling_pipeline"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("kling_pipeline")}
    return {m for m in found if module_path(m) is not None}


def imported_modules(app: Path) -> set[str]:
    """Every kling_pipeline module a function's app.py imports, directly or through others."""
    seen: set[str] = set()
    todo = list(_imports(app))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module_path(module)))  # type: ignore[arg-type]
    return seen


def _module_level_calls(path: Path) -> set[str]:
    """Names called by a module's own statements (at import), outside its functions."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Call) and (name := _call_name(child)):
                names.add(name)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def function_actions(code_dir: Path) -> set[str]:
    """The IAM actions a function's code can ask for (see the module docstring): from app.py's calls,
    every function or method of the kling_pipeline modules it imports that has a called name is
    reached, and what that calls is reached in turn."""
    app = code_dir / "app.py"
    paths = [app] + [p for m in sorted(imported_modules(app)) if (p := module_path(m)) is not None]
    called = {name for path in paths for name in _module_level_calls(path)}
    called |= {
        n for node in ast.walk(ast.parse(app.read_text())) if isinstance(node, ast.Call) if (n := _call_name(node))
    }
    adapters = [p for p in paths if f"{ADAPTERS.replace('.', '/')}/" in p.as_posix()]
    actions: set[str] = set()
    reached: set[tuple[Path, str]] = set()
    grew = True
    while grew:
        grew = False
        for path in paths:
            defs, _ = adapter_defs(path)
            for item in defs:
                if item.name in called and (path, item.name) not in reached:
                    reached.add((path, item.name))
                    if path in adapters:
                        actions |= item.actions
                        if "transact_write_items" in item.calls:
                            actions |= _all_transact_actions(adapters)
                    called |= item.calls
                    grew = True
    return actions


def _all_transact_actions(adapters: Iterable[Path | None]) -> set[str]:
    """A transaction's items may come from any adapter the function uses (a job's move plus the ledger's)."""
    return {a for path in adapters if path is not None for a in adapter_defs(path)[1]}


def _branches(value: Any) -> list[Any]:
    """Both branches of an Fn::If (a grant on either side counts), AWS::NoValue dropped."""
    if isinstance(value, dict) and "Fn::If" in value:
        return [b for branch in value["Fn::If"][1:] for b in _branches(branch)]
    if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
        return []
    return [value]


def granted_actions(template: Mapping[str, Any], logical_id: str) -> set[str]:
    """The actions a function's Policies allow (patterns such as s3:Get* kept as patterns)."""
    props = template["Resources"][logical_id].get("Properties", {})
    granted: set[str] = set()
    for policy in [p for raw in props.get("Policies") or [] for p in _branches(raw)]:
        if isinstance(policy, str):
            raise AssertionError(f"{logical_id}: managed policy {policy} is not read by this check")
        for template_name, actions in SAM_POLICY_TEMPLATES.items():
            if template_name in policy:
                granted |= set(actions)
        statements = policy.get("Statement") or []
        for statement in statements if isinstance(statements, list) else [statements]:
            for s in _branches(statement):
                if s.get("Effect") == "Allow":
                    action = s.get("Action") or []
                    granted |= set(action if isinstance(action, list) else [action])
    return granted


def is_granted(action: str, granted: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in granted)


def functions_of(template: Mapping[str, Any]) -> dict[str, Path]:
    """Logical id -> code directory of every function in the template."""
    return {
        lid: ROOT / str(resource["Properties"]["CodeUri"])
        for lid, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def missing_permissions(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """Function logical id -> the actions its code asks for and its Policies do not grant."""
    missing = {}
    for lid, code_dir in functions_of(template).items():
        granted = granted_actions(template, lid)
        lacking = {a for a in function_actions(code_dir) if not is_granted(a, granted)}
        if lacking:
            missing[lid] = lacking
    return missing


# -- the state machine: its role must cover every Task's service integration


def task_actions(definition: Mapping[str, Any]) -> set[str]:
    """IAM actions of each Task's Resource (arn:aws:states:::service:api[.waitForTaskToken|.sync])."""
    actions = set()

    def visit(states: Mapping[str, Any]) -> None:
        for state in states.values():
            if state.get("Type") == "Task":
                resource = str(state["Resource"]).split(":::", 1)[-1]
                parts = resource.split(".")[0].split(":")
                if parts[0] == "aws-sdk":  # aws-sdk:SERVICE:apiAction
                    service, api = parts[1], parts[2]
                else:
                    service, api = parts[0], parts[1]
                prefix = {"sfn": "states"}.get(service, service)
                action = f"{prefix}:{api[:1].upper()}{api[1:]}"
                actions.add(TASK_ACTIONS.get(action, action))
            for branch in state.get("Branches") or []:
                visit(branch["States"])
            if "Iterator" in state:
                visit(state["Iterator"]["States"])
            if "ItemProcessor" in state:
                visit(state["ItemProcessor"]["States"])

    visit(definition["States"])
    return actions


def state_machine_definition() -> dict[str, Any]:
    return dict(json.loads((ROOT / "statemachine" / "download.asl.json").read_text()))
