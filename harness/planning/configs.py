"""Which files a run copies of its mmseg config: the config itself and the local files it inherits
through ``_base_``, resolved the way mmengine resolves them (``Config._get_cfg_path``: a path
relative to the inheriting file; ``pkg::path`` from the installed package), and nothing else.

Copying the config's whole folder once copied a results folder into itself and, given
``model.config=/etc/passwd``, all of ``/etc``. So: only Python config files, only files inside
the recipe's tree (checked on the resolved path, so symlinks cannot lead out), and every check
before anything is read beyond the file's own ``_base_`` line or written.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from harness.core.errors import BadInput
from harness.planning.shipped import RECIPES_DIR

BASE_KEY = "_base_"
# The configs that ship with the harness (package data): any recipe may name them.
SHIPPED_CONFIGS = RECIPES_DIR.joinpath("configs").resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _base_entries(path: Path) -> list[str]:
    """The ``_base_`` names of one config file, read statically (mmengine evaluates the
    expression; here only literals are accepted, so reading a config runs none of its code)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read config ({exc.__class__.__name__})") from None
    except SyntaxError as exc:
        raise BadInput(f"{path}: line {exc.lineno}: not a valid Python config ({exc.msg})") from None
    for node in tree.body:
        if isinstance(node, ast.With) and any("read_base" in ast.unparse(item.context_expr) for item in node.items):
            raise BadInput(f"{path}: line {node.lineno}: lazy-import configs (read_base) are not supported; use _base_")
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise BadInput(f"{path}: line {node.lineno}: {BASE_KEY} must be a string or a list of strings") from None
            entries = value if isinstance(value, list) else [value]
            if not all(isinstance(entry, str) for entry in entries):
                raise BadInput(f"{path}: line {node.lineno}: {BASE_KEY} must be a string or a list of strings")
            return entries
    return []


def _check_python_config(path: Path, tree: Path, role: str) -> Path:
    resolved = path.resolve()
    if not (_inside(resolved, tree) or _inside(resolved, SHIPPED_CONFIGS)):
        raise BadInput(f"{path}: {role} lies outside the recipe's folder {tree} (and the shipped configs); "
                       "configs are read only from there")
    if resolved.suffix != ".py":
        raise BadInput(f"{path}: {role} is not a Python config file (.py)")
    if not resolved.is_file():
        raise BadInput(f"{path}: {role} does not exist")
    return resolved


def collect_config_files(config_path: Path, recipe_root: Path) -> list[tuple[Path, Path]]:
    """``(source, destination relative to the copy's folder)`` for the config (first) and every
    local base it inherits, directly or through other bases. Package bases (``mmseg::...``) are
    left out: the worker reads them from the installed package, as mmengine does."""
    tree = Path(recipe_root).resolve()
    config = _check_python_config(Path(config_path), tree, "the config")
    anchor = config.parent
    found: dict[Path, Path] = {config: Path(config.name)}
    pending = [config]
    while pending:
        current = pending.pop()
        for entry in _base_entries(current):
            if "::" in entry:
                continue  # from the installed package (mmengine: Config._get_cfg_path)
            base = _check_python_config(current.parent / entry, tree, f"{BASE_KEY} of {current.name}")
            if not _inside(base, anchor):
                raise BadInput(
                    f"{current}: {BASE_KEY} {entry!r} lies outside the config's folder {anchor}; "
                    "keep a config's local bases in its folder or below it"
                )
            if base not in found:
                found[base] = base.relative_to(anchor)
                pending.append(base)
    return list(found.items())


def copy_config_files(config_path: Path, recipe_root: Path, destination: Path) -> list[Path]:
    """Copy what ``collect_config_files`` names into ``destination``, keeping the layout that
    relative ``_base_`` paths need. Returns the copied files."""
    files = collect_config_files(config_path, recipe_root)
    copied = []
    for source, relative in files:
        target = Path(destination) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(target)
    return copied
