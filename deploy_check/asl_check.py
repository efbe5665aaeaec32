"""The template's state machines, as CloudFormation would create them, through a real ASL validator.

Each AWS::Serverless::StateMachine's definition (DefinitionUri or Definition) gets its
DefinitionSubstitutions filled in with plausible values (resource names and ARNs as CloudFormation
makes them, parameter defaults) and goes through the `asl-validator` npm package (installed by
`make deploy-check` from deploy_check/package-lock.json). A placeholder the substitutions do not
fill is an error too: Step Functions would receive it as literal text.

    python -m deploy_check.asl_check [template.yaml] [--validator PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kling_local.stack.template_loader import IntrinsicEvaluator, load_document, load_template, pseudo_parameters

HERE = Path(__file__).resolve().parent
VALIDATOR = HERE / "node_modules" / ".bin" / "asl-validator"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "kling-pipeline"
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine",)
_PLACEHOLDER = re.compile(r"\$\{([^}!][^}]*)\}")


class AslCheckError(Exception):
    """A definition that cannot be rendered, or that the validator refuses."""


def plausible_values(logical_id: str, resource_type: str) -> tuple[str, dict[str, str]]:
    """What Ref and Fn::GetAtt give for a resource of this type once CloudFormation made it."""
    name = f"{STACK}-{logical_id}-1A2B3C4D5E6F"
    where = f"{REGION}:{ACCOUNT}"
    if resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
        return name, {"Arn": f"arn:aws:lambda:{where}:function:{name}"}
    if resource_type == "AWS::DynamoDB::Table":
        return name, {"Arn": f"arn:aws:dynamodb:{where}:table/{name}"}
    if resource_type == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}", {
            "Arn": f"arn:aws:sqs:{where}:{name}",
            "QueueName": name,
        }
    if resource_type == "AWS::SNS::Topic":
        arn = f"arn:aws:sns:{where}:{name}"
        return arn, {"TopicArn": arn, "TopicName": name}
    if resource_type == "AWS::S3::Bucket":
        return name.lower(), {"Arn": f"arn:aws:s3:::{name.lower()}"}
    if resource_type in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
        arn = f"arn:aws:states:{where}:stateMachine:{name}"
        return arn, {"Arn": arn, "Name": name}
    if resource_type == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{where}:secret:{name}-AbCdEf", {}
    if resource_type == "AWS::Events::EventBus":
        return name, {"Arn": f"arn:aws:events:{where}:event-bus/{name}", "Name": name}
    if resource_type == "AWS::Logs::LogGroup":
        return name, {"Arn": f"arn:aws:logs:{where}:log-group:{name}:*"}
    service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "unknown"
    return name, {"Arn": f"arn:aws:{service}:{where}:{logical_id}"}


def _evaluator(template: dict[str, Any]) -> IntrinsicEvaluator:
    refs: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        ref, attrs = plausible_values(logical_id, str(resource.get("Type")))
        refs[logical_id] = ref
        attributes |= {f"{logical_id}.{attribute}": value for attribute, value in attrs.items()}
    return IntrinsicEvaluator(
        template,
        pseudo=pseudo_parameters(REGION, ACCOUNT, STACK),
        refs=refs,
        attributes=attributes,
        hint="(deploy_check.asl_check gives every resource a plausible name and ARN; parameters take their defaults)",
    )


def _substitute(value: Any, substitutions: dict[str, str]) -> Any:
    """DefinitionSubstitutions applied to every string of the definition, as CloudFormation applies them."""
    if isinstance(value, dict):
        return {key: _substitute(item, substitutions) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, substitutions) for item in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: substitutions.get(m.group(1), m.group(0)), value)
    return value


def render_definitions(template_path: Path) -> dict[str, str]:
    """Logical id -> the state machine's definition (JSON text) with its substitutions filled in."""
    template = load_template(template_path)
    evaluator = _evaluator(template)
    rendered: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") not in STATE_MACHINE_TYPES:
            continue
        properties = resource.get("Properties", {})
        if "DefinitionUri" in properties:
            uri = properties["DefinitionUri"]
            if not isinstance(uri, str) or uri.startswith("s3://"):
                raise AslCheckError(f"{logical_id}: DefinitionUri {uri!r} is not a file of this repository")
            definition = load_document(template_path.parent / uri, f"{logical_id}.DefinitionUri")
        elif "Definition" in properties:
            definition = properties["Definition"]
        else:
            raise AslCheckError(f"{logical_id}: no Definition or DefinitionUri")
        raw = evaluator.resolve(properties.get("DefinitionSubstitutions", {}), f"{logical_id}.DefinitionSubstitutions")
        substitutions = {str(key): str(value) for key, value in raw.items()}
        text = json.dumps(_substitute(definition, substitutions), indent=2)
        left = sorted(set(_PLACEHOLDER.findall(text)))
        if left:
            raise AslCheckError(
                f"{logical_id}: {', '.join('${' + name + '}' for name in left)} in the definition but not in "
                "DefinitionSubstitutions (Step Functions would get the placeholder as text)"
            )
        rendered[logical_id] = text
    return rendered


def validate(logical_id: str, definition: str, validator: Path = VALIDATOR) -> None:
    """The definition through asl-validator; AslCheckError with the validator's messages if it refuses."""
    if not validator.exists():
        raise AslCheckError(f"{validator} is missing: run `npm ci --prefix {HERE}` (make deploy-check does)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{logical_id}.asl.json"
        path.write_text(definition, encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - our own validator on our own file
            [str(validator), "--json-path", str(path)], capture_output=True, text=True, check=False, timeout=120
        )
    if result.returncode != 0:
        messages = (result.stderr + result.stdout).strip()
        raise AslCheckError(f"{logical_id}: asl-validator refuses the definition:\n{messages}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("template", nargs="?", type=Path, default=Path("template.yaml"))
    parser.add_argument("--validator", type=Path, default=VALIDATOR)
    args = parser.parse_args(argv)
    try:
        definitions = render_definitions(args.template)
        if not definitions:
            raise AslCheckError(f"{args.template}: no state machine to check")
        for logical_id, definition in definitions.items():
            validate(logical_id, definition, args.validator)
            print(f"{logical_id}: valid ASL, substitutions filled ({args.template})")
    except AslCheckError as exc:
        print(f"asl check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
