"""The one reader of SAM/CloudFormation templates, shared by the local stack and the test fixtures.

A template must mean the same thing here as to `sam deploy`, so the well-kept parts come from
samtranslator (the SAM CLI's own library):

- YAML short forms are read with samtranslator's intrinsic constructor: `!Ref X` is `{"Ref": X}`,
  `!Condition X` is `{"Condition": X}`, `!GetAtt A.b` is `{"Fn::GetAtt": [A, b]}`, `!Sub ...` is
  `{"Fn::Sub": ...}`.
- Ref, Fn::Sub and Fn::FindInMap are resolved by samtranslator's intrinsic actions
  (`IntrinsicsResolver`), fed with the values known so far.

samtranslator evaluates neither conditions nor list functions, and its GetAtt action only renames
resources, so `IntrinsicEvaluator` adds the smallest evaluator for Fn::GetAtt (known attribute
values), Condition, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Select, Fn::Split and
Fn::Join. Whatever it cannot know raises `UnresolvedError` rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from samtranslator.intrinsics.actions import FindInMapAction, RefAction, SubAction
from samtranslator.intrinsics.resolver import IntrinsicsResolver
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.yaml_helper import intrinsics_multi_constructor

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
NO_VALUE = "AWS::NoValue"


class TemplateError(ValueError):
    """The template cannot be used as asked; the message says which part and why."""


class UnresolvedError(TemplateError):
    """An intrinsic needs a value that is not known (yet): a resource that does not exist, say."""


# ------------------------------------------------------------------------------ YAML


class _TemplateYamlLoader(yaml.SafeLoader):
    """A SafeLoader with samtranslator's constructor for `!` tags. samtranslator's own `yaml_parse`
    registers the constructor on yaml.SafeLoader itself, which would change every safe_load in the
    process; a subclass keeps the same parsing to itself."""


_TemplateYamlLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def parse_yaml(text: str) -> Any:
    """YAML or JSON text with CloudFormation short forms, in JSON form."""
    return yaml.load(text, Loader=_TemplateYamlLoader)  # noqa: S506 - a SafeLoader subclass


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template (YAML or JSON) into its JSON form."""
    data = parse_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources section)")
    return data


def load_document(path: Path, where: str) -> Any:
    """A file a template points at (a state machine's DefinitionUri), read as the template is."""
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"{where}: cannot read {path}: {exc}") from None


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template's parameters and their defaults (None where a value is required)."""
    params = template.get("Parameters") or {}
    return {name: (spec or {}).get("Default") for name, spec in params.items()}


def pseudo_parameters(region: str, account: str, stack_name: str | None = None) -> dict[str, str]:
    """The pseudo parameters whose values are known before a stack exists."""
    values = {
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    if stack_name is not None:
        values["AWS::StackName"] = stack_name
    return values


# ------------------------------------------------------------------------------ intrinsics

_UNRESOLVED_SUB_VAR = re.compile(r"\$\{(?!!)([^}]*)\}")


def cfn_text(value: Any) -> str:
    """A scalar as CloudFormation turns it into text (booleans are lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Omitted:
    """What `!Ref AWS::NoValue` evaluates to: the property (or list item) is left out."""


_OMITTED = _Omitted()


class IntrinsicEvaluator:
    """Evaluates template fragments to plain JSON from what is known: parameters (template defaults
    under `parameters`), pseudo parameters, `refs` (logical id -> what Ref returns) and `attributes`
    ("LogicalId.Attribute" -> what Fn::GetAtt returns). `refs` and `attributes` are read at each
    call, so a caller may keep filling them as resources come to exist.

    `hint` ends every UnresolvedError message (e.g. what the caller should do instead)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        pseudo: Mapping[str, str] | None = None,
        refs: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        hint: str = "",
    ) -> None:
        self.template = template
        specs: Mapping[str, Any] = template.get("Parameters") or {}
        given = {**parameter_defaults(template), **(parameters or {})}
        self.parameters = {
            name: _parameter_value((specs.get(name) or {}).get("Type", "String"), value)
            for name, value in given.items()
            if value is not None
        }
        self.missing_parameters = {name for name, value in given.items() if value is None}
        self.pseudo = dict(pseudo or {})
        self.refs: Mapping[str, Any] = refs if refs is not None else {}
        self.attributes: Mapping[str, Any] = attributes if attributes is not None else {}
        self.hint = hint
        self._conditions: dict[str, bool] = {}
        self._evaluating: list[str] = []
        self._functions: dict[str, Callable[[Any, str], Any]] = {
            "Ref": self._ref,
            "Fn::Sub": self._sub,
            "Fn::GetAtt": self._get_att,
            "Fn::FindInMap": self._find_in_map,
            "Condition": self._condition_ref,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": self._not,
            "Fn::And": self._and,
            "Fn::Or": self._or,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::Join": self._join,
        }

    # -- public ----------------------------------------------------------------------------------

    def resolve(self, value: Any, where: str = "template") -> Any:
        """`value` with every intrinsic evaluated (None for `!Ref AWS::NoValue`)."""
        result = self._eval(value, where)
        return None if result is _OMITTED else result

    def condition(self, name: str) -> bool:
        """The value of the template's condition `name`."""
        if name in self._conditions:
            return self._conditions[name]
        conditions: Mapping[str, Any] = self.template.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"no condition {name!r} in the template")
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself: {' -> '.join([*self._evaluating, name])}")
        self._evaluating.append(name)
        try:
            value = self._boolean(self._eval(conditions[name], f"Conditions.{name}"), f"Conditions.{name}")
        finally:
            self._evaluating.pop()
        self._conditions[name] = value
        return value

    # -- traversal -------------------------------------------------------------------------------

    def _eval(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = [self._eval(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not _OMITTED]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = self._functions.get(key)
            if function is not None and (key != "Condition" or isinstance(arg, str)):
                return function(arg, where)
        result = {}
        for key, item in value.items():
            evaluated = self._eval(item, f"{where}.{key}")
            if evaluated is not _OMITTED:
                result[key] = evaluated
        return result

    def _unresolved(self, where: str, what: str) -> UnresolvedError:
        return UnresolvedError(f"{where}: {what} cannot be resolved{' ' + self.hint if self.hint else ''}")

    def _values(self) -> dict[str, Any]:
        """What Ref and ${Name} stand for: parameters, pseudo parameters, then resources."""
        return {**self.pseudo, **self.parameters, **dict(self.refs)}

    # -- samtranslator's actions -----------------------------------------------------------------

    def _ref(self, name: Any, where: str) -> Any:
        if name == NO_VALUE:
            return _OMITTED
        node = {"Ref": name}
        resolved = IntrinsicsResolver(self._values(), {"Ref": RefAction()}).resolve_parameter_refs(node)
        if resolved is node:
            missing = " (a required parameter without a value)" if name in self.missing_parameters else ""
            raise self._unresolved(where, f"Ref {name}{missing}")
        return resolved

    def _sub(self, arg: Any, where: str) -> str:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text = arg[0]
            variables = {name: _sub_value(self._eval(value, f"{where}.{name}")) for name, value in arg[1].items()}
        elif isinstance(arg, str):
            text, variables = arg, {}
        else:
            raise TemplateError(f"{where}: Fn::Sub takes a string or [string, {{variables}}]")
        known = {**self._values(), **self.attributes, **variables}
        try:
            resolved = IntrinsicsResolver(known, {"Fn::Sub": SubAction()}).resolve_parameter_refs({"Fn::Sub": text})
        except InvalidDocumentException as exc:
            raise TemplateError(f"{where}: {'; '.join(str(cause) for cause in exc.causes)}") from None
        result = str(resolved["Fn::Sub"])
        left = _UNRESOLVED_SUB_VAR.findall(result)
        if left:
            raise self._unresolved(where, ", ".join("${" + name + "}" for name in left))
        return result.replace("${!", "${")

    def _find_in_map(self, arg: Any, where: str) -> Any:
        mappings = self.template.get("Mappings") or {}
        node = {"Fn::FindInMap": self._eval(arg, where)}
        try:
            resolved = IntrinsicsResolver(mappings, {"Fn::FindInMap": FindInMapAction()}).resolve_parameter_refs(node)
        except InvalidDocumentException as exc:
            raise TemplateError(f"{where}: {'; '.join(str(cause) for cause in exc.causes)}") from None
        if resolved is node:
            raise self._unresolved(where, f"Fn::FindInMap {node['Fn::FindInMap']}")
        return resolved

    # -- what samtranslator does not evaluate ----------------------------------------------------

    def _get_att(self, arg: Any, where: str) -> Any:
        parts = self._eval(arg.split(".", 1) if isinstance(arg, str) else arg, where)
        if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
            raise TemplateError(f"{where}: Fn::GetAtt takes [LogicalId, Attribute]")
        name = ".".join(parts)
        if name not in self.attributes:
            raise self._unresolved(where, f"Fn::GetAtt {name}")
        return self.attributes[name]

    def _condition_ref(self, name: str, where: str) -> bool:
        return self.condition(name)

    def _if(self, arg: Any, where: str) -> Any:
        if not isinstance(arg, list) or len(arg) != 3 or not isinstance(arg[0], str):
            raise TemplateError(f"{where}: Fn::If takes [ConditionName, value if true, value if false]")
        name, when_true, when_false = arg
        return self._eval(when_true if self.condition(name) else when_false, where)

    def _equals(self, arg: Any, where: str) -> bool:
        values = self._eval(arg, where)
        if not isinstance(values, list) or len(values) != 2:
            raise TemplateError(f"{where}: Fn::Equals takes two values")
        return bool(_comparable(values[0]) == _comparable(values[1]))

    def _not(self, arg: Any, where: str) -> bool:
        values = self._eval(arg, where)
        if not isinstance(values, list) or len(values) != 1:
            raise TemplateError(f"{where}: Fn::Not takes one condition")
        return not self._boolean(values[0], where)

    def _and(self, arg: Any, where: str) -> bool:
        return all(self._booleans(arg, where, "Fn::And"))

    def _or(self, arg: Any, where: str) -> bool:
        return any(self._booleans(arg, where, "Fn::Or"))

    def _booleans(self, arg: Any, where: str, name: str) -> list[bool]:
        if not isinstance(arg, list) or not 2 <= len(arg) <= 10:
            raise TemplateError(f"{where}: {name} takes 2 to 10 conditions")
        return [self._boolean(self._eval(item, f"{where}[{i}]"), where) for i, item in enumerate(arg)]

    def _boolean(self, value: Any, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TemplateError(f"{where}: a condition must be true or false, not {value!r}")

    def _select(self, arg: Any, where: str) -> Any:
        values = self._eval(arg, where)
        if not isinstance(values, list) or len(values) != 2 or not isinstance(values[1], list):
            raise TemplateError(f"{where}: Fn::Select takes [index, list]")
        index, items = values
        try:
            return items[int(index)]
        except (ValueError, IndexError):
            raise TemplateError(f"{where}: Fn::Select index {index!r} is not in a list of {len(items)}") from None

    def _split(self, arg: Any, where: str) -> list[str]:
        values = self._eval(arg, where)
        if not isinstance(values, list) or len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise TemplateError(f"{where}: Fn::Split takes [delimiter, string]")
        delimiter, text = str(values[0]), str(values[1])
        return text.split(delimiter)

    def _join(self, arg: Any, where: str) -> str:
        values = self._eval(arg, where)
        if not isinstance(values, list) or len(values) != 2 or not isinstance(values[1], list):
            raise TemplateError(f"{where}: Fn::Join takes [delimiter, list]")
        delimiter, items = values
        return str(delimiter).join(cfn_text(item) for item in items)


def _sub_value(value: Any) -> Any:
    """A Fn::Sub variable as text (a literal number or boolean too); lists stay lists and are refused."""
    return value if isinstance(value, list | dict) else cfn_text(value)


def _comparable(value: Any) -> Any:
    """Fn::Equals compares text: a Number parameter (text once referenced) equals the literal 0."""
    return [_comparable(item) for item in value] if isinstance(value, list) else cfn_text(value)


def _parameter_value(kind: str, value: Any) -> Any:
    """What Ref returns for a parameter: text, or a list of text for list types."""
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return [cfn_text(item) for item in items]
    return cfn_text(value)
