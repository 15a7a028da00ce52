"""A stored run's own recipe (``<run>/recipe.yaml``, after ``--set``) as a validated Recipe.

A recipe.yaml edited by hand so that it no longer validates is a damaged run: one line naming
the file and the field (``DamagedRecord``, exit 2), never a traceback."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from harness.core.errors import first_problem
from harness.planning.recipe import LoadedRecipe, Recipe
from harness.store.records import DamagedRecord
from harness.store.runs import RunDir


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def recipe_data_of(run: RunDir, text: str | None = None) -> dict:
    """The run's recipe fields (``text``: its recipe.yaml, when already read)."""
    try:
        # libyaml's loader where PyYAML has it: ``harness report`` reads every stored run's recipe,
        # and the pure-Python parser took ~10 ms of each run's ~12 ms there.
        data = yaml.load(run.recipe_text() if text is None else text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise DamagedRecord(f"{run.recipe_file}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DamagedRecord(f"{run.recipe_file}: expected a mapping of recipe fields, found {type(data).__name__}")
    return data


def recipe_of(run: RunDir, text: str | None = None) -> Recipe:
    data = recipe_data_of(run, text)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise DamagedRecord(f"{run.recipe_file}: {first_problem(exc)} (was the run's recipe edited?)") from None


def loaded_recipe_of(run: RunDir) -> LoadedRecipe:
    """The recipe exactly as the run was started, resolved against its original source file."""
    recipe = recipe_of(run)
    source = run.recipe_source()
    return LoadedRecipe(path=Path(source.path) if source else run.recipe_file, recipe=recipe, data=recipe_data_of(run))
