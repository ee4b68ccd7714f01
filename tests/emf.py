"""Checks an Embedded Metric Format document against the EMF specification: its published JSON schema
(``tests/unit/fixtures/cloudwatch-emf.schema.json``, validated with ``jsonschema``), plus the rules
the specification states in prose that the schema does not encode: every referenced target is a
member of the root; a metric target is a number or an array of at most 100 numbers; a dimension
target is a string of at most 1,024 characters; at most 100 metrics per directive."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = Path(__file__).resolve().parent / "unit" / "fixtures" / "cloudwatch-emf.schema.json"


@cache
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def check_emf(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` or ``AssertionError`` unless ``document`` is valid EMF."""
    _validator().validate(document)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        assert len(directive["Metrics"]) <= 100, "more than 100 MetricDefinitions"
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                value = document[key]
                assert isinstance(value, str), f"dimension {key} is not a string"
                assert len(value) <= 1_024, f"dimension {key} is longer than 1024 characters"
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert len(values) <= 100, f"{metric['Name']}: more than 100 values"
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values), metric


def emf_lines(text: str) -> list[dict[str, Any]]:
    """The EMF documents among ``text``'s JSON lines."""
    documents = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]
