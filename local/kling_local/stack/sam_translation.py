"""The SAM side of `template.prepare()`: what `sam package` and `sam deploy` do before CloudFormation.

Local CodeUri/ContentUri become marker locations (remembered as directories on this machine),
DefinitionUri is inlined, the SAM transform runs offline with samtranslator, and the API routes are
read from the functions' Api events (the local API server serves them; moto cannot).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kling_local.stack.template_loader import TemplateError, load_document

log = logging.getLogger(__name__)

CODE_BUCKET = "kling-local-code"  # never created: marks code locations through the SAM transform
IMPLICIT_REST_API = "ServerlessRestApi"
IMPLICIT_REST_API_STAGE = "Prod"


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
class LocalCode:
    """Marker location (s3://CODE_BUCKET/...) -> directory on this machine, for functions and layers."""

    functions: dict[str, Path]
    layers: dict[str, Path]


def code_token(location: Mapping[str, Any]) -> str:
    """The marker a translated Code/Content location carries ({S3Bucket, S3Key} -> s3://bucket/key)."""
    return f"s3://{location.get('S3Bucket')}/{location.get('S3Key')}"


def _marker(kind: str, index: int) -> str:
    return f"s3://{CODE_BUCKET}/{kind}-{index}"


def _local_dir(base_dir: Path, where: str, uri: Any) -> Path:
    if not isinstance(uri, str) or uri.startswith("s3://"):
        raise TemplateError(f"{where}: only local directories can run locally (got {uri!r})")
    path = (base_dir / uri).resolve()
    if not path.is_dir():
        raise TemplateError(f"{where}: {path} is not a directory")
    return path


def localise_uris(sam: dict[str, Any], base_dir: Path) -> LocalCode:
    """Replace local CodeUri/ContentUri with markers and inline DefinitionUri (what `sam package` does
    with S3, done without S3)."""
    code: dict[str, Path] = {}
    layers: dict[str, Path] = {}
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
            token = _marker("code", len(code))
            code[token] = _local_dir(base_dir, f"{logical_id}.CodeUri", props.get("CodeUri", global_code_uri))
            props["CodeUri"] = token
        elif rtype == "AWS::Serverless::LayerVersion":
            token = _marker("layer", len(layers))
            layers[token] = _local_dir(base_dir, f"{logical_id}.ContentUri", props.get("ContentUri"))
            props["ContentUri"] = token
        elif rtype == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = _definition(base_dir, logical_id, props.pop("DefinitionUri"))
    return LocalCode(functions=code, layers=layers)


def _definition(base_dir: Path, logical_id: str, uri: Any) -> Any:
    where = f"{logical_id}.DefinitionUri"
    if not isinstance(uri, str) or uri.startswith("s3://"):
        raise TemplateError(f"{where}: only a local file can be deployed locally")
    path = (base_dir / uri).resolve()
    definition = load_document(path, where)
    if not isinstance(definition, dict) or "States" not in definition:
        raise TemplateError(f"{where}: {path} is not an ASL definition (no States)")
    return definition


class _NoManagedPolicies:
    """samtranslator's managed policy loader without IAM: policies by name are not looked up offline."""

    def load(self) -> dict[str, str]:
        return {}


@contextlib.contextmanager
def _quiet_feature_toggles() -> Iterator[None]:
    """samtranslator warns that its feature-toggle config (an AppConfig document `sam deploy` may read)
    lacks a feature, once per API: offline there is no such config, and the defaults are what we want."""
    toggles = logging.getLogger("samtranslator.feature_toggle")
    previous = toggles.level
    toggles.setLevel(logging.ERROR)
    try:
        yield
    finally:
        toggles.setLevel(previous)


def sam_transform(template: dict[str, Any], parameters: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The SAM transform, offline (samtranslator, as `sam deploy` runs it server-side)."""
    # samtranslator reads the region from boto3's default session; give it one without touching AWS.
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        from samtranslator.model.exceptions import InvalidDocumentException
        from samtranslator.translator.transform import transform

        try:
            with _quiet_feature_toggles():
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


def api_routes(sam: dict[str, Any], stages: Mapping[str, str]) -> list[ApiRoute]:
    """The REST routes of the functions' Api events; `stages` maps an API's logical id to its stage."""
    binary = _binary_media_types(sam)
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
