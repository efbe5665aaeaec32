"""template.yaml -> a CloudFormation template moto can deploy, plus what the local stack must emulate.

The SAM template stays the single source of truth: it is translated offline with samtranslator
(as `sam deploy` would, minus the S3 upload; see sam_translation.py), then bridged over moto's
known gaps, one pass each in `prepare()`:

- API Gateway resources are dropped (moto's CloudFormation fails on them); `api.py` serves the
  routes, and references to the API's execute-api URL are rewritten to the local server.
- SQS event source mappings are dropped (moto invokes one record at a time inside SendMessage and
  ignores batchItemFailures); `sqs_source.py` polls instead.
- EventBridge Scheduler schedules are dropped (moto has no CloudFormation model); schedule rules
  are kept but never fire in moto, so `clock.py` fires both.
- Secrets Manager secrets and S3 bucket policies have no moto CloudFormation model: secrets are
  created through the API before the stack (and references replaced by their ARNs), policies
  applied through the API after it.
- `DefinitionSubstitutions` are turned into `Fn::Sub` (moto ignores them).
- Lambda code and layer content become tiny placeholders: the local runtime runs the real code.

Properties of emulated resources are resolved by moto's own intrinsic engine: each is added as a
hidden stack output (`Fn::ToJsonString`) and read back after the deploy, so Ref/GetAtt/If/Sub mean
exactly what they mean for every other resource of the stack. The few values needed before moto
exists (secret names, stage names) are evaluated by the shared `template_loader`.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kling_local.stack.sam_translation import (
    ApiRoute,
    LocalCode,
    api_routes,
    code_token,
    localise_uris,
    sam_transform,
)
from kling_local.stack.template_loader import (
    PSEUDO_PARAMETERS,
    IntrinsicEvaluator,
    TemplateError,
    load_template,
    pseudo_parameters,
)

log = logging.getLogger(__name__)

HIDDEN_OUTPUT_PREFIX = "KlingLocal"

# Types the local stack emulates itself; their properties come back through hidden outputs.
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
EVENTS_RULE = "AWS::Events::Rule"
SCHEDULER_SCHEDULE = "AWS::Scheduler::Schedule"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type
STATE_MACHINE = "AWS::StepFunctions::StateMachine"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
LAYER_VERSION = "AWS::Lambda::LayerVersion"

__all__ = [
    "ApiRoute",
    "FunctionSource",
    "HiddenOutput",
    "LocalTemplate",
    "SecretSource",
    "TemplateError",
    "prepare",
    "secret_references_to_arns",
]


# ------------------------------------------------------------------------------ what the stack emulates


@dataclass(frozen=True)
class FunctionSource:
    """Where a function's code lives on this machine (the rest is read back from moto's Lambda)."""

    logical_id: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    runtime: str


@dataclass(frozen=True)
class SecretSource:
    """An AWS::SecretsManager::Secret of the template, created through the API before the stack."""

    logical_id: str
    name: str | None
    description: str
    secret_string: str | None
    generate: Mapping[str, Any] | None


@dataclass(frozen=True)
class HiddenOutput:
    """A stack output the local stack adds to read back an emulated resource's resolved properties."""

    key: str
    kind: str  # resource type
    logical_id: str


@dataclass
class LocalTemplate:
    """Everything `deploy.py` needs: the CloudFormation template for moto and the emulated parts."""

    cfn: dict[str, Any]
    parameters: dict[str, Any]
    functions: dict[str, FunctionSource]
    routes: list[ApiRoute]
    secrets: list[SecretSource]
    hidden_outputs: list[HiddenOutput]
    state_machines: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # logical id -> why


# ------------------------------------------------------------------------------ fragments


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(value: Any) -> set[str]:
    """Logical ids a JSON fragment refers to (Ref, GetAtt, ${X} and ${X.Attr} in Fn::Sub)."""
    found: set[str] = set()
    for node in _walk(value):
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((key, arg),) = node.items()
        if key == "Ref" and isinstance(arg, str):
            found.add(arg)
        elif key == "Fn::GetAtt":
            target = arg[0] if isinstance(arg, list) and arg else str(arg).split(".", 1)[0]
            found.add(str(target))
        elif key == "Fn::Sub":
            text, mapping = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
            if isinstance(text, str):
                for var in _SUB_VAR.findall(text):
                    name = var.split(".", 1)[0]
                    if var not in mapping and name not in mapping:
                        found.add(name)
    return found - PSEUDO_PARAMETERS


def _replace(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Rebuild a JSON fragment bottom-up, letting `fn(node)` replace any node (returns node to keep)."""
    if isinstance(value, dict):
        value = {k: _replace(v, fn) for k, v in value.items()}
    elif isinstance(value, list):
        value = [_replace(v, fn) for v in value]
    return fn(value)


def _rewrite_sub_text(node: Any, rewrite: Callable[[str], str]) -> Any:
    """An Fn::Sub node with `rewrite` applied to its text (other nodes unchanged)."""
    if not isinstance(node, dict) or len(node) != 1 or "Fn::Sub" not in node:
        return node
    arg = node["Fn::Sub"]
    text, mapping = (arg[0], arg[1]) if isinstance(arg, list) else (arg, None)
    if not isinstance(text, str):
        return node
    return {"Fn::Sub": [rewrite(text), mapping] if mapping is not None else rewrite(text)}


def placeholder_zip() -> bytes:
    """A valid, tiny deployment package: moto stores it, the local runtime never runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the local stack runs the real code from the project\n")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ the bridge


def prepare(
    template_path: Path,
    parameters: Mapping[str, Any],
    *,
    api_origin: str,
    stack_name: str,
    region: str,
    account: str,
) -> LocalTemplate:
    """Translate the SAM template and bridge it over moto's gaps (see the module docstring).

    `parameters` are the final template parameter values; `api_origin` (http://127.0.0.1:PORT) is
    where the local API server listens, so the API's execute-api URL can be rewritten to it.
    """
    sam = load_template(template_path)
    if "AWS::Serverless-2016-10-31" not in json.dumps(sam.get("Transform", "")):
        raise TemplateError(f"{template_path} has no 'Transform: AWS::Serverless-2016-10-31'")
    code = localise_uris(sam, template_path.parent)
    events_source = copy.deepcopy(sam)  # the transform rewrites `sam`; routes are read from the events
    cfn = sam_transform(sam, parameters, region)
    values = IntrinsicEvaluator(
        cfn,
        parameters=parameters,
        pseudo=pseudo_parameters(region, account, stack_name),
        hint="before the stack exists; use a literal",
    )
    dropped: dict[str, str] = {}

    routes = api_routes(events_source, _api_stages(cfn, values))
    rest_apis = _drop_api_gateway(cfn, dropped)
    secrets = _take_out_secrets(cfn, values, dropped)
    _drop_types_moto_cannot_create(cfn, dropped)
    hidden = _HiddenOutputs(cfn)
    _hide_emulated_resources(cfn, hidden, dropped)
    _point_api_references_at_local_server(cfn, rest_apis, api_origin)
    _drop_dependents_of_emulated(cfn, dropped, keep={s.logical_id for s in secrets})
    functions = _code_placeholders(cfn, code)
    state_machines = _inline_state_machines(cfn, hidden)

    if not cfn.get("Outputs"):
        cfn.pop("Outputs", None)
    cfn.pop("Transform", None)
    return LocalTemplate(
        cfn=cfn,
        parameters=dict(parameters),
        functions=functions,
        routes=routes,
        secrets=secrets,
        hidden_outputs=hidden.outputs,
        state_machines=state_machines,
        dropped=dropped,
    )


def _api_stages(cfn: dict[str, Any], values: IntrinsicEvaluator) -> dict[str, str]:
    """REST API logical id -> its stage name (the first path segment the local API server serves)."""
    stages: dict[str, str] = {}
    for logical_id, resource in cfn["Resources"].items():
        if resource.get("Type") != "AWS::ApiGateway::Stage":
            continue
        props = resource.get("Properties", {})
        api_ref = props.get("RestApiId", {})
        api = api_ref.get("Ref") if isinstance(api_ref, dict) else None
        if api:
            stages[str(api)] = str(values.resolve(props.get("StageName", "Prod"), f"{logical_id}.StageName"))
    return stages


def _drop_api_gateway(cfn: dict[str, Any], dropped: dict[str, str]) -> set[str]:
    """Gap: moto's CloudFormation fails on API Gateway. Drop it all; returns the REST APIs' ids."""
    resources: dict[str, Any] = cfn["Resources"]
    apis = [lid for lid, r in resources.items() if str(r.get("Type", "")).startswith("AWS::ApiGateway")]
    rest_apis = {lid for lid in apis if resources[lid].get("Type") == "AWS::ApiGateway::RestApi"}
    for lid in apis:
        dropped[lid] = "API Gateway is served by the local API server"
        del resources[lid]
    return rest_apis


def _take_out_secrets(cfn: dict[str, Any], values: IntrinsicEvaluator, dropped: dict[str, str]) -> list[SecretSource]:
    """Gap: moto has no CloudFormation model for secrets. They are created through the API before the
    stack; every reference becomes the ARN then (`secret_references_to_arns`)."""
    resources: dict[str, Any] = cfn["Resources"]
    secrets: list[SecretSource] = []
    for lid in [lid for lid, r in resources.items() if r.get("Type") == SECRET]:
        resource = resources.pop(lid)
        props = resource.get("Properties", {})
        if "Condition" in resource:
            log.warning("%s: the secret's Condition is ignored locally; it is always created", lid)
        name = props.get("Name")
        secrets.append(
            SecretSource(
                logical_id=lid,
                name=str(values.resolve(name, f"{lid}.Name")) if name is not None else None,
                description=str(values.resolve(props.get("Description", ""), f"{lid}.Description")),
                secret_string=(
                    str(values.resolve(props["SecretString"], f"{lid}.SecretString"))
                    if "SecretString" in props
                    else None
                ),
                generate=props.get("GenerateSecretString"),
            )
        )
        dropped[lid] = "created through the Secrets Manager API (moto has no CloudFormation model for it)"
    return secrets


def _drop_types_moto_cannot_create(cfn: dict[str, Any], dropped: dict[str, str]) -> None:
    """Gap: resource types moto cannot create and the stack does not emulate. Dropped, loudly."""
    from moto.cloudformation.parsing import get_model_map

    resources: dict[str, Any] = cfn["Resources"]
    known = set(get_model_map()) | {BUCKET_POLICY, SCHEDULER_SCHEDULE}
    left_out: Counter[str] = Counter()
    for lid in list(resources):
        rtype = str(resources[lid].get("Type"))
        if rtype not in known and not rtype.startswith("AWS::CloudFormation::"):
            log.info("%s (%s): moto cannot create this resource type; it is left out locally", lid, rtype)
            dropped[lid] = f"{rtype} is not supported by moto"
            left_out[rtype] += 1
            del resources[lid]
    if left_out:
        # A note, not a warning: nothing is wrong, and a newcomer's first screen should not say otherwise.
        print(f"note: {left_out_notice(left_out)}", file=sys.stderr)


# What each type moto cannot create does on AWS: why leaving it out changes nothing a job does locally.
_LEFT_OUT_ROLES = {
    "AWS::CloudWatch::Alarm": "alarms watch a deployed stack's metrics",
    "AWS::SQS::QueuePolicy": "queue policies say who may send on AWS",
    "AWS::Lambda::EventInvokeConfig": "async-invoke settings tune AWS's retries",
}


def left_out_notice(left_out: Counter[str]) -> str:
    """One line for every resource type the local stack leaves out, counted, and why it does not matter here."""
    parts = ", ".join(f"{n} {rtype.removeprefix('AWS::')}" for rtype, n in sorted(left_out.items()))
    roles = [_LEFT_OUT_ROLES[rtype] for rtype in sorted(left_out) if rtype in _LEFT_OUT_ROLES]
    unknown = [rtype for rtype in sorted(left_out) if rtype not in _LEFT_OUT_ROLES]
    why = "; ".join(roles) + ("; no job's path goes through them" if not unknown else "")
    return f"the local stack leaves out what moto cannot create: {parts}" + (f" ({why})" if why else "")


class _HiddenOutputs:
    """Stack outputs added to read back an emulated resource's properties, as moto resolved them."""

    def __init__(self, cfn: dict[str, Any]) -> None:
        self.cfn = cfn
        self.outputs: list[HiddenOutput] = []
        cfn["Outputs"] = cfn.get("Outputs") or {}

    def add(self, lid: str, kind: str, value: Any) -> None:
        key = f"{HIDDEN_OUTPUT_PREFIX}{len(self.outputs)}{re.sub(r'[^A-Za-z0-9]', '', lid)}"
        output: dict[str, Any] = {"Value": {"Fn::ToJsonString": value}}
        resource = self.cfn["Resources"][lid]
        if "Condition" in resource:  # no output (and so no emulation) when the resource does not exist
            output["Condition"] = resource["Condition"]
        self.cfn["Outputs"][key] = output
        self.outputs.append(HiddenOutput(key=key, kind=kind, logical_id=lid))


_EMULATED = {
    EVENT_SOURCE_MAPPING: "event source mappings are polled by the local stack",
    SCHEDULER_SCHEDULE: "EventBridge Scheduler schedules are fired by the local clock",
    BUCKET_POLICY: "bucket policies are applied through the S3 API",
}


def _hide_emulated_resources(cfn: dict[str, Any], hidden: _HiddenOutputs, dropped: dict[str, str]) -> None:
    """Gaps: moto's event source mappings do not batch, it has no Scheduler model, its bucket policies
    ignore conditions, its schedule rules never fire. Keep their resolved properties as hidden outputs
    and drop them from moto (schedule rules stay: list-rules shows them, the clock fires them)."""
    resources: dict[str, Any] = cfn["Resources"]
    for lid in list(resources):
        rtype = resources[lid].get("Type")
        props = resources[lid].get("Properties", {})
        if rtype in _EMULATED:
            hidden.add(lid, rtype, props)
            dropped[lid] = _EMULATED[rtype]
            del resources[lid]
        elif rtype == EVENTS_RULE and props.get("ScheduleExpression"):
            hidden.add(lid, rtype, {**props, "Arn": {"Fn::GetAtt": [lid, "Arn"]}})


def _point_api_references_at_local_server(cfn: dict[str, Any], rest_apis: set[str], api_origin: str) -> None:
    """References to a dropped REST API: its id becomes `local-<id>` and its execute-api URL the local
    server's origin."""
    origin_host = re.sub(r"^https?://", "", api_origin)

    def local_urls(text: str) -> str:
        for api in rest_apis:
            host = r"\$\{" + api + r"\}\.execute-api\.\$\{AWS::Region\}\.\$\{AWS::URLSuffix\}"
            text = re.sub(r"https://" + host, api_origin, text)
            text = re.sub(host, origin_host, text)
            text = text.replace("${" + api + "}", f"local-{api}")
        return text

    def rewrite(node: Any) -> Any:
        ref = node.get("Ref") if isinstance(node, dict) and len(node) == 1 else None
        if isinstance(ref, str) and ref in rest_apis:
            return f"local-{ref}"
        return _rewrite_sub_text(node, local_urls)

    for section in ("Resources", "Outputs"):
        cfn[section] = _replace(cfn.get(section, {}), rewrite)


def _drop_dependents_of_emulated(cfn: dict[str, Any], dropped: dict[str, str], *, keep: set[str]) -> None:
    """Anything still pointing at a dropped resource (other than `keep`, the secrets whose references
    become ARNs) cannot exist locally: drop it, and outputs that refer to it."""
    resources: dict[str, Any] = cfn["Resources"]
    outputs: dict[str, Any] = cfn["Outputs"]
    gone = set(dropped) - keep
    changed = True
    while changed:
        changed = False
        for lid in list(resources):
            missing = references(resources[lid]) & gone
            if missing:
                dropped[lid] = f"refers to {', '.join(sorted(missing))}, which is emulated"
                gone.add(lid)
                del resources[lid]
                changed = True
    for key in list(outputs):
        missing = references(outputs[key]) & gone
        if missing:
            log.info("output %s refers to %s, which the local stack emulates; left out", key, ", ".join(missing))
            del outputs[key]


def _code_placeholders(cfn: dict[str, Any], code: LocalCode) -> dict[str, FunctionSource]:
    """Gap: moto would store (and could only run in Docker) the code. It gets placeholders; the real
    directories are remembered for the local runtime."""
    resources: dict[str, Any] = cfn["Resources"]
    layer_by_lid: dict[str, Path] = {}
    zipped = base64.b64encode(placeholder_zip()).decode("ascii")
    for lid, resource in resources.items():
        if resource.get("Type") == LAYER_VERSION:
            token = code_token(resource["Properties"].get("Content", {}))
            if token in code.layers:
                layer_by_lid[lid] = code.layers[token]
            resource["Properties"]["Content"] = {"ZipFile": zipped}

    functions: dict[str, FunctionSource] = {}
    for lid, resource in resources.items():
        if resource.get("Type") != LAMBDA_FUNCTION:
            continue
        props = resource["Properties"]
        token = code_token(props.get("Code", {}))
        runtime = str(props.get("Runtime", ""))
        props["Code"] = {"ZipFile": "def lambda_handler(event, context):\n    return None\n"}
        if token not in code.functions:
            log.warning("%s: not a SAM function with local code; it cannot be invoked locally", lid)
            continue
        if not runtime.startswith("python"):
            log.warning("%s: runtime %s cannot run locally (python only); it will not be invoked", lid, runtime)
            continue
        layers: list[Path] = []
        for layer in props.get("Layers", []) or []:
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            if ref in layer_by_lid:
                layers.append(layer_by_lid[ref])
            else:
                log.warning("%s: layer %r is not a local layer of this template; not on the local path", lid, layer)
        functions[lid] = FunctionSource(
            logical_id=lid, code_dir=code.functions[token], layer_dirs=tuple(layers), runtime=runtime
        )
    return functions


def _inline_state_machines(cfn: dict[str, Any], hidden: _HiddenOutputs) -> list[str]:
    """Gap: moto ignores DefinitionSubstitutions, and its executing engine does not see state machines
    its CloudFormation created. Substitutions become Fn::Sub; the resolved definition comes back as a
    hidden output so deploy.py can re-create each machine where the engine looks."""
    state_machines: list[str] = []
    for lid, resource in cfn["Resources"].items():
        if resource.get("Type") != STATE_MACHINE:
            continue
        props = resource["Properties"]
        if "DefinitionS3Location" in props:
            raise TemplateError(f"{lid}: DefinitionS3Location cannot be deployed locally; use DefinitionUri")
        substitutions = props.pop("DefinitionSubstitutions", None)
        if substitutions:
            props["DefinitionString"] = _substitute(props.get("DefinitionString"), substitutions, lid)
        if "Definition" in props and "DefinitionString" not in props:
            props["DefinitionString"] = json.dumps(props.pop("Definition"))
        state_machines.append(lid)
        hidden.add(
            lid,
            STATE_MACHINE,
            {
                "Arn": {"Ref": lid},
                "Name": {"Fn::GetAtt": [lid, "Name"]},
                "Definition": {"Fn::GetAtt": [lid, "DefinitionString"]},
                "RoleArn": props.get("RoleArn", ""),
                "Type": props.get("StateMachineType", "STANDARD"),
            },
        )
    return state_machines


def _substitute(definition: Any, substitutions: Mapping[str, Any], where: str) -> Any:
    """DefinitionString with DefinitionSubstitutions applied by Fn::Sub on each literal piece."""

    def sub(text: str) -> Any:
        return {"Fn::Sub": [text, dict(substitutions)]} if "${" in text else text

    if isinstance(definition, str):
        return sub(definition)
    if isinstance(definition, dict) and "Fn::Join" in definition:
        sep, parts = definition["Fn::Join"]
        return {"Fn::Join": [sep, [sub(p) if isinstance(p, str) else p for p in parts]]}
    raise TemplateError(f"{where}: cannot apply DefinitionSubstitutions to this DefinitionString form")


def secret_references_to_arns(cfn: dict[str, Any], arns: Mapping[str, str]) -> dict[str, Any]:
    """Every Ref / GetAtt Id / ${X} of a pre-created secret replaced by its ARN (what Ref returns on AWS)."""

    def arns_in_text(text: str) -> str:
        for lid, arn in arns.items():
            text = text.replace("${" + lid + "}", arn).replace("${" + lid + ".Id}", arn)
        return text

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref" and arg in arns:
                return arns[arg]
            if key == "Fn::GetAtt" and isinstance(arg, list) and arg and arg[0] in arns:
                return arns[arg[0]]
        return _rewrite_sub_text(node, arns_in_text)

    result: dict[str, Any] = _replace(cfn, rewrite)
    return result
