"""``harness schema``: the JSON schemas of the run-folder records and of compare --json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.core.errors import BadInput


def register(subparsers) -> argparse.ArgumentParser:
    schema = subparsers.add_parser("schema", help="print or write the JSON schemas of the run-folder records (status.json, ...) and of compare --json")
    schema.add_argument("record", nargs="?", help="one record model, e.g. RunStatus or RunResult (default: all)")
    schema.add_argument("-o", "--output", type=Path, help="write <file>.schema.json files into this folder instead")
    schema.set_defaults(func=cmd_schema)
    return schema


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.store.records import json_schemas

    schemas = {**json_schemas(), **{m.__name__: m.model_json_schema() for m in published_models().values()}}
    names = [args.record] if args.record else sorted(schemas)
    unknown = [n for n in names if n not in schemas]
    if unknown:
        raise BadInput(f"schema: unknown record {unknown[0]!r}: expected one of {', '.join(sorted(schemas))}")
    if args.output is None:
        chosen = schemas[names[0]] if args.record else {n: schemas[n] for n in names}
        print(json.dumps(chosen, indent=2))
        return 0
    from harness.core.fileio import write_text_atomic

    for name in names:
        model = {**record_models(), **published_models()}[name]
        write_text_atomic(args.output / schema_file_name(model), json.dumps(schemas[name], indent=2) + "\n")
        print(args.output / schema_file_name(model))
    return 0


def record_models() -> dict:
    from harness.store.records import RECORDS

    return RECORDS


def published_models() -> dict:
    """JSON that commands print (not run-folder records) whose schema is published too."""
    from harness.report.compare import CompareReport

    return {"CompareReport": CompareReport}


def schema_file_name(model) -> str:
    """``status.json`` -> ``status.schema.json``: the schema of each run-folder file."""
    return model.FILE.removesuffix(".json") + ".schema.json"
