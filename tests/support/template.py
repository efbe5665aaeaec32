"""Create template.yaml's resources in moto, so the tests and the deployed stack cannot drift.

Reading the template and evaluating its intrinsics is the local stack's own loader
(`kling_local.stack.template_loader`); this module only records what the tests created (names,
URLs, ARNs) so that Ref and Fn::GetAtt to those resources resolve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kling_local.stack.template_loader import IntrinsicEvaluator, load_document, pseudo_parameters
from kling_local.stack.template_loader import load_template as _load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml (or `path`) in JSON form, read as the local stack reads it."""
    return _load_template(path)


@dataclass
class TemplateResolver:
    """The template's values as the tests' moto resources make them: parameters (defaults under
    `parameters`), `refs` (logical id -> physical id: name or URL) and `arns` (for Fn::GetAtt X.Arn)."""

    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)

    def _evaluator(self) -> IntrinsicEvaluator:
        return IntrinsicEvaluator(
            self.template,
            parameters=self.parameters,
            pseudo=pseudo_parameters(REGION, ACCOUNT_ID),
            refs=self.refs,
            attributes={f"{lid}.Arn": arn for lid, arn in self.arns.items()},
            hint="(create the resource in the test first, or set resolver.refs / resolver.arns)",
        )

    def resolve(self, value: Any) -> Any:
        return self._evaluator().resolve(value)

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.template["Resources"][logical_id]["Properties"])

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """Globals plus the function's own variables, resolved: what the function sees on AWS."""
        merged = dict(self.template["Globals"]["Function"]["Environment"]["Variables"])
        merged |= self.properties(logical_id).get("Environment", {}).get("Variables", {})
        evaluator = self._evaluator()
        return {k: str(evaluator.resolve(v, f"{logical_id}.Environment.{k}")) for k, v in merged.items()}

    def state_machine_definition(self, logical_id: str) -> str:
        """The state machine's DefinitionUri file with its DefinitionSubstitutions applied (Fn::Sub, as
        the local stack and CloudFormation apply them)."""
        props = self.properties(logical_id)
        definition = load_document(ROOT / props["DefinitionUri"], f"{logical_id}.DefinitionUri")
        substitutions = props.get("DefinitionSubstitutions", {})
        return str(self.resolve({"Fn::Sub": [json.dumps(definition), substitutions]}))

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
        self.arns[logical_id] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        return name

    def create_secret(self, secretsmanager: Any, logical_id: str, name: str, value: str) -> str:
        arn = secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
        self.refs[logical_id] = arn
        return str(arn)


def placeholder_resolver() -> TemplateResolver:
    """The template resolved with placeholder names and ARNs for every resource: what a function's
    environment looks like on AWS, without creating anything."""
    resolver = TemplateResolver(load_template())
    for logical_id in resolver.template["Resources"]:
        resolver.refs[logical_id] = f"physical-{logical_id}"
        resolver.arns[logical_id] = f"arn:aws:test:{REGION}:{ACCOUNT_ID}:{logical_id}"
    return resolver
