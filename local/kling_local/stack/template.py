"""template.yaml -> a CloudFormation template moto can deploy, plus what the local stack must emulate.

The SAM template stays the single source of truth: it is translated offline with samtranslator
(as `sam deploy` would, minus the S3 upload), then bridged over moto's known gaps:

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
exactly what they mean for every other resource of the stack.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

CODE_BUCKET = "kling-local-code"  # never created: marks code locations through the SAM transform
HIDDEN_OUTPUT_PREFIX = "KlingLocal"
IMPLICIT_REST_API = "ServerlessRestApi"
IMPLICIT_REST_API_STAGE = "Prod"

# Types the local stack emulates itself; their properties come back through hidden outputs.
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
EVENTS_RULE = "AWS::Events::Rule"
SCHEDULER_SCHEDULE = "AWS::Scheduler::Schedule"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type
STATE_MACHINE = "AWS::StepFunctions::StateMachine"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
LAYER_VERSION = "AWS::Lambda::LayerVersion"

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}


class TemplateError(ValueError):
    """The template cannot be run locally; the message says which resource and why."""


# ------------------------------------------------------------------------------ YAML with !Tags


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short forms (!Ref, !GetAtt a.b, !Sub ...) into JSON form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template (YAML or JSON) into its JSON form."""
    text = path.read_text(encoding="utf-8")
    data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources section)")
    return data


# ------------------------------------------------------------------------------ what the stack emulates


@dataclass(frozen=True)
class FunctionSource:
    """Where a function's code lives on this machine (the rest is read back from moto's Lambda)."""

    logical_id: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    runtime: str


@dataclass(frozen=True)
class ApiRoute:
    """One `Api` event of a function: METHOD stage/path -> function (REST proxy integration)."""

    function: str
    api: str
    stage: str
    path: str
    method: str  # upper case, or ANY
    binary_media_types: tuple[str, ...] = ()


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


# ------------------------------------------------------------------------------ helpers


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


def _replace(value: Any, fn: Any) -> Any:
    """Rebuild a JSON fragment bottom-up, letting `fn(node)` replace any node (returns node to keep)."""
    if isinstance(value, dict):
        value = {k: _replace(v, fn) for k, v in value.items()}
    elif isinstance(value, list):
        value = [_replace(v, fn) for v in value]
    return fn(value)


def placeholder_zip() -> bytes:
    """A valid, tiny deployment package: moto stores it, the local runtime never runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the local stack runs the real code from the project\n")
    return buffer.getvalue()


def _code_token(kind: str, index: int) -> str:
    return f"s3://{CODE_BUCKET}/{kind}-{index}"


class _MinimalResolver:
    """Resolves Ref to parameters/pseudo parameters and Fn::Sub for the few values needed before moto
    exists (secret names, stage names); anything else is refused with a clear error."""

    def __init__(self, parameters: Mapping[str, Any], stack_name: str, region: str, account: str) -> None:
        self.values: dict[str, Any] = {
            **parameters,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
        }

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and arg in self.values:
                return self.values[arg]
            if key == "Fn::Sub":
                text, mapping = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
                local = {k: self.resolve(v, where) for k, v in mapping.items()}

                def sub(match: re.Match[str]) -> str:
                    name = match.group(1)
                    if name in local:
                        return str(local[name])
                    if name in self.values:
                        return str(self.values[name])
                    raise TemplateError(f"{where}: cannot resolve ${{{name}}} before the stack exists")

                return _SUB_VAR.sub(sub, str(text))
            if key.startswith("Fn::") or key == "Ref":
                raise TemplateError(f"{where}: {key} cannot be resolved before the stack exists; use a literal")
        return value


# ------------------------------------------------------------------------------ SAM -> CloudFormation


class _NoManagedPolicies:
    """samtranslator's managed policy loader without IAM: policies by name are not looked up offline."""

    def load(self) -> dict[str, str]:
        return {}


def _sam_transform(template: dict[str, Any], parameters: Mapping[str, Any], region: str) -> dict[str, Any]:
    # samtranslator reads the region from boto3's default session; give it one without touching AWS.
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        from samtranslator.model.exceptions import InvalidDocumentException
        from samtranslator.translator.transform import transform

        try:
            result: dict[str, Any] = transform(template, dict(parameters), _NoManagedPolicies())
        except InvalidDocumentException as exc:
            problems = "; ".join(str(cause) for cause in exc.causes)
            raise TemplateError(f"the SAM transform refused the template: {problems}") from None
        return result
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def _localise_uris(sam: dict[str, Any], base_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Replace local CodeUri/ContentUri with markers and inline DefinitionUri (what `sam package` does
    with S3, done without S3). Returns marker -> directory for code and for layers."""
    code: dict[str, Path] = {}
    layers: dict[str, Path] = {}

    def local_dir(where: str, uri: Any) -> Path:
        if not isinstance(uri, str) or uri.startswith("s3://"):
            raise TemplateError(f"{where}: only local directories can run locally (got {uri!r})")
        path = (base_dir / uri).resolve()
        if not path.is_dir():
            raise TemplateError(f"{where}: {path} is not a directory")
        return path

    globals_fn = sam.get("Globals", {}).get("Function", {})
    global_code_uri = globals_fn.pop("CodeUri", None) if isinstance(globals_fn, dict) else None
    for logical_id, resource in sam["Resources"].items():
        rtype = resource.get("Type")
        props = resource.setdefault("Properties", {})
        if rtype == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                raise TemplateError(f"{logical_id}: image functions cannot run in the local stack")
            if "InlineCode" in props:
                raise TemplateError(f"{logical_id}: InlineCode is not supported locally; use CodeUri")
            uri = props.get("CodeUri", global_code_uri)
            token = _code_token("code", len(code))
            code[token] = local_dir(f"{logical_id}.CodeUri", uri)
            props["CodeUri"] = token
        elif rtype == "AWS::Serverless::LayerVersion":
            token = _code_token("layer", len(layers))
            layers[token] = local_dir(f"{logical_id}.ContentUri", props.get("ContentUri"))
            props["ContentUri"] = token
        elif rtype == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            uri = props.pop("DefinitionUri")
            if not isinstance(uri, str) or uri.startswith("s3://"):
                raise TemplateError(f"{logical_id}.DefinitionUri: only a local file can be deployed locally")
            path = (base_dir / uri).resolve()
            try:
                props["Definition"] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
            except OSError as exc:
                raise TemplateError(f"{logical_id}.DefinitionUri: cannot read {path}: {exc}") from None
            if not isinstance(props["Definition"], dict) or "States" not in props["Definition"]:
                raise TemplateError(f"{logical_id}.DefinitionUri: {path} is not an ASL definition (no States)")
    return code, layers


def _api_routes(
    sam: dict[str, Any], stages: Mapping[str, str], binary: Mapping[str, tuple[str, ...]]
) -> list[ApiRoute]:
    routes: list[ApiRoute] = []
    for logical_id, resource in sam["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        events = resource.get("Properties", {}).get("Events") or {}
        for event_id, event in events.items():
            etype = event.get("Type")
            props = event.get("Properties") or {}
            if etype == "HttpApi":
                log.warning("%s.%s: HttpApi events are not served locally (REST Api events are)", logical_id, event_id)
                continue
            if etype != "Api":
                continue
            api_ref = props.get("RestApiId", {"Ref": IMPLICIT_REST_API})
            api = api_ref["Ref"] if isinstance(api_ref, dict) and "Ref" in api_ref else str(api_ref)
            path, method = props.get("Path"), props.get("Method")
            if not isinstance(path, str) or not isinstance(method, str):
                raise TemplateError(f"{logical_id}.{event_id}: Path and Method must be literals to serve them locally")
            method = method.upper()
            routes.append(
                ApiRoute(
                    function=logical_id,
                    api=api,
                    stage=stages.get(api, IMPLICIT_REST_API_STAGE),
                    path=path,
                    method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    binary_media_types=binary.get(api, ()),
                )
            )
    return routes


def _binary_media_types(sam: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    global_types = sam.get("Globals", {}).get("Api", {}).get("BinaryMediaTypes", [])
    result: dict[str, tuple[str, ...]] = {}
    for logical_id, resource in sam["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Api":
            types = resource.get("Properties", {}).get("BinaryMediaTypes", global_types) or []
            # API Gateway escapes "/" as "~1" in binaryMediaTypes; accept both spellings.
            result[logical_id] = tuple(str(t).replace("~1", "/") for t in types if isinstance(t, str))
    result.setdefault(IMPLICIT_REST_API, tuple(str(t).replace("~1", "/") for t in global_types if isinstance(t, str)))
    return result


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
    sam = copy.deepcopy(load_template(template_path))
    if "AWS::Serverless-2016-10-31" not in json.dumps(sam.get("Transform", "")):
        raise TemplateError(f"{template_path} has no 'Transform: AWS::Serverless-2016-10-31'")
    code_dirs, layer_dirs = _localise_uris(sam, template_path.parent)
    routes_source = copy.deepcopy(sam)
    binary = _binary_media_types(sam)
    cfn = _sam_transform(sam, parameters, region)
    resources: dict[str, Any] = cfn["Resources"]
    resolver = _MinimalResolver(parameters, stack_name, region, account)

    stages: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::ApiGateway::Stage":
            props = resource.get("Properties", {})
            api_ref = props.get("RestApiId", {})
            api = api_ref.get("Ref") if isinstance(api_ref, dict) else None
            if api:
                stages[str(api)] = str(resolver.resolve(props.get("StageName", "Prod"), f"{logical_id}.StageName"))
    routes = _api_routes(routes_source, stages, binary)

    dropped: dict[str, str] = {}
    apis = {
        lid
        for lid, r in resources.items()
        if str(r.get("Type", "")).startswith(("AWS::ApiGateway", "AWS::ApiGatewayV2"))
    }
    rest_apis = {lid for lid in apis if resources[lid].get("Type") == "AWS::ApiGateway::RestApi"}
    for lid in apis:
        dropped[lid] = "API Gateway is served by the local API server"
        del resources[lid]

    # Secrets: created through the API before the stack; every reference becomes the ARN later.
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
                name=str(resolver.resolve(name, f"{lid}.Name")) if name is not None else None,
                description=str(resolver.resolve(props.get("Description", ""), f"{lid}.Description")),
                secret_string=(
                    str(resolver.resolve(props["SecretString"], f"{lid}.SecretString"))
                    if "SecretString" in props
                    else None
                ),
                generate=props.get("GenerateSecretString"),
            )
        )
        dropped[lid] = "created through the Secrets Manager API (moto has no CloudFormation model for it)"

    # Resources moto cannot create and the stack does not emulate: drop them, loudly.
    from moto.cloudformation.parsing import get_model_map

    known = set(get_model_map()) | {BUCKET_POLICY, SCHEDULER_SCHEDULE}
    for lid in list(resources):
        rtype = str(resources[lid].get("Type"))
        if rtype not in known and not rtype.startswith("AWS::CloudFormation::"):
            log.warning("%s (%s): moto cannot create this resource type; it is left out locally", lid, rtype)
            dropped[lid] = f"{rtype} is not supported by moto"
            del resources[lid]

    # Emulated resources: keep their resolved properties as hidden outputs, then drop them from moto.
    hidden: list[HiddenOutput] = []
    outputs: dict[str, Any] = cfn.setdefault("Outputs", {}) or {}
    cfn["Outputs"] = outputs

    def hide(lid: str, kind: str, value: Any) -> None:
        key = f"{HIDDEN_OUTPUT_PREFIX}{len(hidden)}{re.sub(r'[^A-Za-z0-9]', '', lid)}"
        output: dict[str, Any] = {"Value": {"Fn::ToJsonString": value}}
        if "Condition" in resources[lid]:
            output["Condition"] = resources[lid]["Condition"]
        outputs[key] = output
        hidden.append(HiddenOutput(key=key, kind=kind, logical_id=lid))

    for lid in list(resources):
        rtype = resources[lid].get("Type")
        props = resources[lid].get("Properties", {})
        if rtype == EVENT_SOURCE_MAPPING:
            hide(lid, rtype, props)
            dropped[lid] = "event source mappings are polled by the local stack"
            del resources[lid]
        elif rtype == SCHEDULER_SCHEDULE:
            hide(lid, rtype, props)
            dropped[lid] = "EventBridge Scheduler schedules are fired by the local clock"
            del resources[lid]
        elif rtype == BUCKET_POLICY:
            hide(lid, rtype, props)
            dropped[lid] = "bucket policies are applied through the S3 API"
            del resources[lid]
        elif rtype == EVENTS_RULE and props.get("ScheduleExpression"):
            # moto keeps the rule (list-rules shows it) but never fires it; the clock does.
            hide(lid, rtype, {**props, "Arn": {"Fn::GetAtt": [lid, "Arn"]}})

    # References to dropped resources: the API's URL and id become local, secrets become ARNs later.
    origin_host = re.sub(r"^https?://", "", api_origin)
    secret_ids = {s.logical_id for s in secrets}

    def rewrite(node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((key, arg),) = node.items()
        if key == "Ref" and arg in rest_apis:
            return f"local-{arg}"
        if key == "Fn::Sub":
            text, mapping = (arg[0], arg[1]) if isinstance(arg, list) else (arg, None)
            if isinstance(text, str):
                for api in rest_apis:
                    text = re.sub(
                        r"https://\$\{" + api + r"\}\.execute-api\.\$\{AWS::Region\}\.\$\{AWS::URLSuffix\}",
                        api_origin,
                        text,
                    )
                    text = re.sub(
                        r"\$\{" + api + r"\}\.execute-api\.\$\{AWS::Region\}\.\$\{AWS::URLSuffix\}", origin_host, text
                    )
                    text = text.replace("${" + api + "}", f"local-{api}")
                return {key: [text, mapping] if mapping is not None else text}
        return node

    for section in ("Resources", "Outputs"):
        cfn[section] = _replace(cfn.get(section, {}), rewrite)
    resources = cfn["Resources"]
    outputs = cfn["Outputs"]

    # Anything still pointing at a dropped resource (other than secrets) cannot exist locally.
    gone = set(dropped) - secret_ids
    changed = True
    while changed:
        changed = False
        for lid in list(resources):
            if references(resources[lid]) & gone:
                dropped[lid] = f"refers to {', '.join(sorted(references(resources[lid]) & gone))}, which is emulated"
                gone.add(lid)
                del resources[lid]
                changed = True
    for key in list(outputs):
        missing = references(outputs[key]) & gone
        if missing:
            log.warning("output %s refers to %s, which the local stack emulates; left out", key, ", ".join(missing))
            del outputs[key]

    # Code: placeholders in moto; remember the real directories.
    layer_by_lid: dict[str, Path] = {}
    zipped = base64.b64encode(placeholder_zip()).decode("ascii")
    for lid, resource in resources.items():
        if resource.get("Type") == LAYER_VERSION:
            content = resource["Properties"].get("Content", {})
            token = f"s3://{content.get('S3Bucket')}/{content.get('S3Key')}"
            if token in layer_dirs:
                layer_by_lid[lid] = layer_dirs[token]
            resource["Properties"]["Content"] = {"ZipFile": zipped}

    functions: dict[str, FunctionSource] = {}
    for lid, resource in resources.items():
        if resource.get("Type") != LAMBDA_FUNCTION:
            continue
        props = resource["Properties"]
        code = props.get("Code", {})
        token = f"s3://{code.get('S3Bucket')}/{code.get('S3Key')}"
        runtime = str(props.get("Runtime", ""))
        props["Code"] = {"ZipFile": "def lambda_handler(event, context):\n    return None\n"}
        if token not in code_dirs:
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
            logical_id=lid, code_dir=code_dirs[token], layer_dirs=tuple(layers), runtime=runtime
        )

    # State machines: substitutions applied through Fn::Sub; definitions read back to re-create them.
    state_machines: list[str] = []
    for lid, resource in resources.items():
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
        hide(
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

    if not outputs:
        cfn.pop("Outputs", None)
    cfn.pop("Transform", None)
    return LocalTemplate(
        cfn=cfn,
        parameters=dict(parameters),
        functions=functions,
        routes=routes,
        secrets=secrets,
        hidden_outputs=hidden,
        state_machines=state_machines,
        dropped=dropped,
    )


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

    def rewrite(node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((key, arg),) = node.items()
        if key == "Ref" and arg in arns:
            return arns[arg]
        if key == "Fn::GetAtt" and isinstance(arg, list) and arg and arg[0] in arns:
            return arns[arg[0]]
        if key == "Fn::Sub":
            text, mapping = (arg[0], arg[1]) if isinstance(arg, list) else (arg, None)
            if isinstance(text, str):
                for lid, arn in arns.items():
                    text = text.replace("${" + lid + "}", arn).replace("${" + lid + ".Id}", arn)
                return {key: [text, mapping] if mapping is not None else text}
        return node

    result: dict[str, Any] = _replace(cfn, rewrite)
    return result


def parameter_defaults(template_path: Path) -> dict[str, Any]:
    """The template's parameters and their defaults (None where a value is required)."""
    params = load_template(template_path).get("Parameters") or {}
    return {name: (spec or {}).get("Default") for name, spec in params.items()}
