"""Extract a CRD's openAPIV3Schema (one served version) as JSON, for the offline manifest tests.

    python scripts/extract_crd_schema.py CRD.yaml KIND VERSION > tests/fixtures/crds/NAME.json

A file may hold several YAML documents (an operator's whole install manifest); the
CustomResourceDefinition whose spec.names.kind is KIND is used.
"""
from __future__ import annotations

import json
import sys

import yaml


def extract(text: str, kind: str, version: str) -> dict:
    for document in yaml.safe_load_all(text):
        if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
            continue
        spec = document["spec"]
        if spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version:
                return served["schema"]["openAPIV3Schema"]
        raise SystemExit(f"{kind}: no version {version!r} in the CRD")
    raise SystemExit(f"no CustomResourceDefinition of kind {kind!r}")


if __name__ == "__main__":
    path, kind, version = sys.argv[1:4]
    with open(path) as handle:
        schema = extract(handle.read(), kind, version)
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
