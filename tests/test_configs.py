"""Config copies: exactly the config and the local files it inherits through ``_base_``, never
a folder, never anything outside the recipe's tree; a config that is not Python is refused."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.core.errors import BadInput
from harness.planning.configs import collect_config_files, copy_config_files
from support import RECIPES


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_config_is_copied_alone_package_bases_are_not():
    config = RECIPES / "configs" / "pspnet_r18-d8_synthvoc_cpu-smoke.py"
    files = collect_config_files(config, RECIPES)
    assert files == [(config.resolve(), Path(config.name))]


def test_local_bases_relative_lists_and_nested_are_resolved_like_mmengine(tmp_path):
    root = tmp_path / "recipes"
    config = _write(root / "configs" / "main.py",
                    "_base_ = ['./parts/model.py', 'mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py']\nx = 1\n")
    _write(root / "configs" / "parts" / "model.py", "_base_ = 'deeper/schedule.py'\nlocal_part = dict(a=1)\n")
    _write(root / "configs" / "parts" / "deeper" / "schedule.py", "local_iters = 3\n")
    _write(root / "configs" / "unrelated.py", "secret = 1\n")
    _write(root / "configs" / "notes.txt", "not a config\n")
    files = collect_config_files(config, root)
    assert sorted(str(dest) for _, dest in files) == ["main.py", "parts/deeper/schedule.py", "parts/model.py"]
    assert files[0] == (config.resolve(), Path("main.py"))
    # mmengine itself agrees on the merged result, so the copy loads the same config.
    from mmengine.config import Config

    out = tmp_path / "run" / "configs"
    copy_config_files(config, root, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "main.py", "parts/deeper/schedule.py", "parts/model.py"]
    cfg = Config.fromfile(str(out / "main.py"))
    assert cfg.local_iters == 3 and cfg.local_part.a == 1 and cfg.x == 1


@pytest.mark.parametrize("name", ["config.yaml", "passwd", "config.json"])
def test_a_config_that_is_not_python_is_refused(tmp_path, name):
    config = _write(tmp_path / name, "a: 1\n")
    with pytest.raises(BadInput, match="Python config"):
        collect_config_files(config, tmp_path)


def test_python_syntax_errors_are_refused(tmp_path):
    config = _write(tmp_path / "bad.py", "x = (\n")
    with pytest.raises(BadInput, match="bad.py"):
        collect_config_files(config, tmp_path)


def test_a_config_outside_the_recipe_tree_is_refused(tmp_path):
    outside = _write(tmp_path / "elsewhere" / "c.py", "x = 1\n")
    with pytest.raises(BadInput, match="outside"):
        collect_config_files(outside, tmp_path / "recipes")


@pytest.mark.parametrize("base", ["'../../outside.py'", "'/etc/hostname.py'", "'link.py'"])
def test_a_base_outside_the_tree_is_refused_before_it_is_read(tmp_path, base):
    root = tmp_path / "recipes"
    _write(tmp_path / "outside.py", "secret = 1\n")
    os.symlink(tmp_path / "outside.py", _write(root / "configs" / "placeholder", "").parent / "link.py")
    config = _write(root / "configs" / "main.py", f"_base_ = [{base}]\n")
    with pytest.raises(BadInput, match="outside"):
        collect_config_files(config, root)


def test_missing_base_and_computed_base_are_refused(tmp_path):
    config = _write(tmp_path / "main.py", "_base_ = ['nope.py']\n")
    with pytest.raises(BadInput, match="nope.py"):
        collect_config_files(config, tmp_path)
    computed = _write(tmp_path / "computed.py", "_base_ = [__import__('os').getcwd() + '/x.py']\n")
    with pytest.raises(BadInput, match="_base_"):
        collect_config_files(computed, tmp_path)


def test_config_next_to_the_recipe_run_from_its_folder_copies_only_the_config(tmp_path):
    """The recipe, its config and a results folder side by side: the run copies one file."""
    from harness.planning.recipe import load_recipe

    folder = tmp_path / "project"
    text = (RECIPES / "smoke_cpu.yaml").read_text().replace("configs/pspnet_r18", "pspnet_r18")
    _write(folder / "recipe.yaml", text)
    _write(folder / "pspnet_r18-d8_synthvoc_cpu-smoke.py",
           (RECIPES / "configs" / "pspnet_r18-d8_synthvoc_cpu-smoke.py").read_text())
    _write(folder / "results" / "old" / "big.bin", "x" * 1000)
    loaded = load_recipe(folder / "recipe.yaml")
    out = folder / "results" / "run1" / "configs"
    copy_config_files(loaded.config_path, loaded.path.parent, out)
    assert [p.name for p in out.rglob("*")] == ["pspnet_r18-d8_synthvoc_cpu-smoke.py"]
