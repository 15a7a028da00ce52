"""Offline checks of manifests against an operator's published CRD schema (its openAPIV3Schema).

The API server prunes fields a CRD does not name, so a misspelt field is silently dropped there;
``strict_schema`` makes every object that lists its ``properties`` reject others (as kubectl's
strict field validation does) unless the CRD keeps unknown fields. The CRDs embed the core/v1
PodTemplateSpec schema, so pod templates are checked against core/v1 here too.
"""
from __future__ import annotations

import copy
from typing import Any

import jsonschema


def strict_schema(schema: dict) -> dict:
    strict = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(strict)
    return strict


def _where(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def schema_problems(document: dict, schema: dict) -> list[str]:
    """Every place ``document`` breaks ``schema`` (already strict or not), as 'path: message'."""
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda error: list(map(str, error.absolute_path)))
    return [f"{_where(error.absolute_path)}: {error.message}" for error in errors]
