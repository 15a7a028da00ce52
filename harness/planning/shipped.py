"""What ships inside the package: the recipes and their mmseg configs (package data), found the
same way in an editable checkout, a wheel install and inside the images. The checkout's top-level
``recipes`` is a link to this folder, so ``harness run recipes/smoke_cpu.yaml`` works from it."""
from __future__ import annotations

from pathlib import Path

from harness import PACKAGE_DIR

RECIPES_DIR = PACKAGE_DIR / "recipes"


def shipped_recipe(name: str) -> Path | None:
    """``smoke_cpu`` or ``smoke_cpu.yaml`` -> the shipped recipe file, or None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if "/" in stem or not stem:
        return None
    path = RECIPES_DIR / f"{stem}.yaml"
    return path if path.is_file() else None


def shipped_recipes() -> list[Path]:
    return sorted(RECIPES_DIR.glob("*.yaml"))
