"""Reading the CloudFormation template: YAML short-form tags, parameter checks, conditions and the
subset of intrinsic functions the provisioner needs to build what an emulator's CloudFormation skips.

``load_template`` turns ``!Ref X`` into ``{"Ref": "X"}``, ``!GetAtt A.B`` into
``{"Fn::GetAtt": ["A", "B"]}`` and every other ``!Fn`` into ``{"Fn::Fn": ...}`` — the JSON form, so
the rest of the code (and the tests) see one shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parents[3] / "infra" / "template.yaml"

_FUNCTIONS: tuple[str, ...] = ("Base64", "Cidr", "FindInMap", "GetAZs", "If", "ImportValue", "Join")
_FUNCTIONS += ("Select", "Split", "Sub", "Equals", "Not", "And", "Or", "Length", "ToJsonString")


class TemplateError(ValueError):
    """The template or a parameter value is unusable; the message names the offending key."""


class _CfnLoader(yaml.SafeLoader):
    """PyYAML loader that understands CloudFormation's short-form tags."""


def _construct(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type,unused-ignore]
        if tag in {"Ref", "Condition"}:
            return {tag: value}
        if tag == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag}": value}

    return construct


for _tag in (*_FUNCTIONS, "Ref", "Condition", "GetAtt"):
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template at ``path`` as a plain dict in CloudFormation's JSON form."""
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)
    if not isinstance(loaded, dict) or "Resources" not in loaded:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return loaded


def effective_parameters(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Defaults overlaid with ``given``, each checked against its declaration (unknown keys, type,
    AllowedValues, AllowedPattern, MinValue/MaxValue, missing required values)."""
    declared: dict[str, Any] = template.get("Parameters", {})
    for key in given:
        if key not in declared:
            raise TemplateError(f"unknown parameter {key!r}; the template declares {', '.join(declared)}")
    values: dict[str, str] = {}
    for key, spec in declared.items():
        if key in given:
            value = given[key]
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise TemplateError(f"parameter {key!r} has no default and no value was given")
        _check_parameter(key, spec, value)
        values[key] = value
    return values


def _check_parameter(key: str, spec: Mapping[str, Any], value: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise TemplateError(f"parameter {key!r}={value!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise TemplateError(f"parameter {key!r}={value!r} does not match {pattern}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {key!r}={value!r} is not a number") from None
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise TemplateError(f"parameter {key!r}={value!r} is outside [{low}, {high}]")


@dataclass
class Resolver:
    """Evaluates intrinsic functions against a deployed stack.

    ``refs`` maps parameter names, pseudo parameters (``AWS::Region``...) and logical ids (their
    physical ids) to values; ``get_att(logical_id, attribute)`` answers ``Fn::GetAtt``.
    """

    template: Mapping[str, Any]
    refs: Mapping[str, str]
    get_att: Callable[[str, str], str]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def wanted(self, logical_id: str) -> bool:
        """Whether the resource's Condition (if any) holds."""
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its result (``AWS::NoValue`` drops keys)."""
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self._ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> str:
        if name not in self.refs:
            raise TemplateError(f"cannot resolve Ref {name!r}")
        return self.refs[name]

    def _function(self, name: str, arg: Any) -> Any:
        if name == "GetAtt":
            return self.get_att(arg[0], arg[1])
        if name == "Sub":
            return self._sub(arg)
        if name == "If":
            return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
        args = self.resolve(arg)
        simple: dict[str, Callable[[Any], Any]] = {
            "Join": lambda a: str(a[0]).join(str(v) for v in a[1]),
            "Split": lambda a: str(a[1]).split(str(a[0])),
            "Select": lambda a: a[1][int(a[0])],
            "Equals": lambda a: str(a[0]) == str(a[1]),
            "Not": lambda a: not a[0],
            "And": all,
            "Or": any,
        }
        if name not in simple:
            raise TemplateError(f"intrinsic function Fn::{name} is not supported by the provisioner")
        return simple[name](args)

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def substitute(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in extra:
                return str(extra[inner])
            if "." in inner and inner.split(".", 1)[0] in self.template["Resources"]:
                logical_id, attribute = inner.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self._ref(inner)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)


class _NoValue:
    """Marker for ``AWS::NoValue``: the enclosing key or list item disappears."""


_NO_VALUE: Any = _NoValue()
