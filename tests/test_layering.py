"""The stages' import rules are checked by a tool (import-linter), not by review, and
docs/architecture.md states the same rules as the contracts in pyproject.toml."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support import REPO, require_extra

CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
ARCHITECTURE = REPO / "docs" / "architecture.md"


def lint_imports(root: Path, *contract_ids: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` (its pyproject.toml holds the contracts)."""
    require_extra("importlinter", "import-linter (the test extra) is not installed")
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(no_cache=True, limit_to_contracts={contract_ids!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def contract(kind: str) -> dict:
    (found,) = [c for c in CONTRACTS if c["type"] == kind]
    return found


def test_lint_imports_passes():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("planning/plan.py", "import harness.results.verdict", "stages"),  # a stage importing a later one
    ("planning/plan.py", "import subprocess", "pure-planning"),
    ("worker/main.py", "import harness.executors.local", "launchers"),
    ("store/records.py", "import harness.store.runs", "no-circles"),
])
def test_a_broken_rule_fails(tmp_path, module, line, broken):
    shutil.copytree(REPO / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "harness" / module
    assert lint_imports(tmp_path, broken).returncode == 0, f"{broken} broken before the change"
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path, broken)
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout + result.stderr


def test_no_contract_excuses_an_import():
    assert all("ignore_imports" not in c for c in CONTRACTS)


def _table(heading: str) -> list[list[str]]:
    """The body rows of the first markdown table under ``heading`` in docs/architecture.md."""
    lines = ARCHITECTURE.read_text().split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines[start:end]]
    return rows[2:]  # the header and the separator left out


def _names(cell: str) -> set[str]:
    return {name.strip().strip("`") for name in re.split(r"[,\s]+", cell) if name.strip("` ") and name != "-"}


def test_architecture_import_table_matches_the_layers_contract():
    layers = [[name.strip() for name in layer.split("|")] for layer in contract("layers")["layers"]]
    expected = {}
    for index, layer in enumerate(layers):
        below = {name for lower in layers[index + 1:] for name in lower}
        for name in layer:
            expected[name] = (below, set(layer) - {name})
    documented = {row[0]: (_names(row[2]), _names(row[3])) for row in _table("## Allowed imports")}
    assert documented == expected


def test_architecture_names_the_other_contracts():
    text = ARCHITECTURE.read_text()
    independent = contract("independence")["modules"]
    forbidden = contract("forbidden")
    assert f"Independent: {', '.join(f'`{m}`' for m in independent)}" in text
    assert (f"Forbidden to {', '.join(f'`{m}`' for m in forbidden['source_modules'])}: "
            f"{', '.join(f'`{m}`' for m in forbidden['forbidden_modules'])}") in text
