"""Read template.yaml and create its resources in moto, so tests and the deployed stack cannot drift.

Only what the tests need is resolved: Ref (parameters and resources), Fn::GetAtt .Arn, Fn::If on
simple conditions, Fn::Sub with ${Name} references.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


@dataclass
class TemplateResolver:
    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # logical id -> physical id (name or URL)
    arns: dict[str, str] = field(default_factory=dict)
    pseudo: dict[str, str] = field(
        default_factory=lambda: {
            "AWS::Region": "us-east-1",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
        }
    )

    def parameter(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        return str(self.template["Parameters"][name].get("Default", ""))

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg in self.pseudo:
                    return self.pseudo[arg]
                if arg in self.template.get("Parameters", {}):
                    return self.parameter(arg)
                return self.refs[arg]
            if key == "Fn::GetAtt":
                return self.arns[arg[0]]
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if key == "Fn::Sub":
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(
                        self.resolve({"Ref": m.group(1)})
                        if "." not in m.group(1)
                        else self.arns[m.group(1).split(".")[0]]
                    ),
                    arg,
                )
        return {k: self.resolve(v) for k, v in value.items()}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.template["Resources"][logical_id]["Properties"])

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """Globals plus the function's own variables, resolved: what the function sees on AWS."""
        merged = dict(self.template["Globals"]["Function"]["Environment"]["Variables"])
        merged |= self.properties(logical_id).get("Environment", {}).get("Variables", {})
        return {k: str(self.resolve(v)) for k, v in merged.items()}

    # -- creating resources in moto -----------------------------------------------------------

    def create_queue(self, sqs: Any, logical_id: str, name: str) -> str:
        props = self.resolve(self.properties(logical_id))
        attributes = {k: str(v) for k, v in props.items() if k in ("VisibilityTimeout", "MessageRetentionPeriod")}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.refs[logical_id] = url
        self.arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return str(url)

    def create_table(self, dynamodb: Any, logical_id: str, name: str) -> str:
        props = self.resolve(self.properties(logical_id))
        kwargs = {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode") if k in props}
        if "GlobalSecondaryIndexes" in props:
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        dynamodb.create_table(TableName=name, **kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        self.refs[logical_id] = name
        self.arns[logical_id] = f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}"
        return name

    def create_secret(self, secretsmanager: Any, logical_id: str, name: str, value: str) -> str:
        arn = secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
        self.refs[logical_id] = arn
        return str(arn)
