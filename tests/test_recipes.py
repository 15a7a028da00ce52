"""Recipes: every shipped one validates; every kind of bad one is one clear line, exit 2, nothing written."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.planning.recipe import BadInput, load_recipe, parse_device_ids
from support import RECIPES, run_cli

SHIPPED = sorted(RECIPES.glob("*.yaml"))
SEED_MODES = {"full_1p", "perf_1p", "full_8p", "perf_8p", "eval_8p"}


def test_all_modes_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert SEED_MODES | {"gpu_full_8p", "gpu_perf_8p", "smoke_cpu", "smoke_cpu_2p"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipe_loads(path):
    recipe = load_recipe(path).recipe
    assert recipe.name == path.stem
    assert recipe.reference.source


@pytest.mark.parametrize("name", sorted(SEED_MODES - {"eval_8p"}))
def test_seed_modes_match_the_seed(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml").recipe
    assert recipe.device.kind == "npu"
    assert recipe.device.count == (8 if name.endswith("8p") else 1)
    assert recipe.train.batch_per_device == 16
    assert recipe.train.norm == "BN" and recipe.train.amp is True
    assert recipe.train.iterations == (10000 if name.startswith("full") else 1000)
    assert recipe.train.log_interval == 50
    assert recipe.train.val_interval == 1000 and recipe.train.checkpoint_interval == 1000
    assert recipe.mode == ("accuracy" if name.startswith("full") else "performance")


def test_seed_reference_numbers():
    ref = load_recipe(RECIPES / "full_8p.yaml").recipe.reference
    assert (ref.label, ref.fps, ref.aAcc, ref.mIoU, ref.mAcc) == ("NPU-8p", 117.808, 94.71, 77.04, 86.52)
    gpu = load_recipe(RECIPES / "gpu_full_8p.yaml").recipe
    assert (gpu.reference.fps, gpu.reference.aAcc, gpu.reference.mIoU, gpu.reference.mAcc) == (82.296, 94.92, 77.13, 85.7)
    assert gpu.train.norm == "SyncBN" and gpu.train.batch_per_device == 4 and gpu.train.iterations == 20000
    assert [row.mIoU for row in gpu.published if row.label == "mmsegmentation"] == [76.78]


def test_device_ids_are_bounded():
    import time

    started = time.monotonic()
    for text in ("0-99999999999", "1024", "0-3,99999999999999999999"):
        with pytest.raises(ValueError, match="0..1023"):
            parse_device_ids(text)
    assert time.monotonic() - started < 1
    assert parse_device_ids("1020-1023") == (1020, 1021, 1022, 1023)


def test_a_few_yaml_aliases_are_fine():
    text = GOOD.replace("tolerance: {fps_ratio: 0.9", "tolerance: &tol {fps_ratio: 0.9")
    text += "published:\n- {label: a, source: b}\n- {label: c, source: d}\n"
    text = text.replace("label: CPU smoke floor", "label: &label CPU smoke floor").replace("{label: c,", "{label: *label,")
    recipe = RECIPES / ".test_aliases.yaml"
    recipe.write_text(text)
    try:
        assert [row.label for row in load_recipe(recipe).recipe.published] == ["a", "CPU smoke floor"]
    finally:
        recipe.unlink()


def test_device_ids():
    assert parse_device_ids("0-7") == tuple(range(8))
    assert parse_device_ids("4,5") == (4, 5)
    assert parse_device_ids("0-1,6") == (0, 1, 6)
    with pytest.raises(ValueError):
        parse_device_ids("7-3")


GOOD = (RECIPES / "smoke_cpu.yaml").read_text()

# name -> (recipe text, a fragment the one-line error must contain)
BAD_RECIPES = {
    "yaml_syntax": ("name: [unclosed\n", "invalid YAML"),
    "not_a_mapping": ("- just\n- a list\n", "expected a mapping"),
    "empty_file": ("", "expected a mapping"),
    "wrong_type_count": (GOOD.replace("count: 1}", "count: two}"), "device.count"),
    "count_zero": (GOOD.replace("count: 1}", "count: 0}"), "device.count"),
    "unknown_kind": (GOOD.replace("kind: cpu", "kind: tpu"), "device.kind"),
    "unknown_mode": (GOOD.replace("mode: accuracy", "mode: fast"), "mode"),
    "missing_train": (GOOD.replace("train:\n  batch_per_device: 4\n", "trian:\n  batch_per_device: 4\n"), "train"),
    "unknown_key": (GOOD + "colour: blue\n", "colour: unknown key"),
    "unknown_nested_key": (GOOD.replace("  lr: 0.05", "  lr: 0.05\n  lr_typo: 1"), "train.lr_typo"),
    "config_missing": (GOOD.replace("configs/pspnet_r18-d8_synthvoc_cpu-smoke.py", "configs/nope.py"), "model.config"),
    "syncbn_on_cpu": (GOOD.replace("norm: BN", "norm: SyncBN"), "SyncBN"),
    "ids_count_mismatch": (GOOD.replace("count: 1}", "count: 1, ids: '0-3'}"), "ids"),
    "python_tag": (GOOD.replace("description:", "evil: !!python/object/apply:os.system ['touch /tmp/pwned']\ndescription:"), "invalid YAML"),
    "bad_name": (GOOD.replace("name: smoke_cpu", "name: ../../etc"), "name"),
    "both_dataset_sources": (GOOD.replace("dataset:\n", "dataset:\n  root: /tmp\n"), "dataset"),
    "negative_reference": (GOOD.replace("mIoU: 50.0", "mIoU: -3"), "reference.mIoU"),
    # Non-finite numbers, override keys the config lacks, override values of the wrong shape:
    # once accepted here, they crashed after the run folder existed.
    "timeout_infinite": (GOOD + "timeout_minutes: .inf\n", "timeout_minutes"),
    "timeout_nan": (GOOD + "timeout_minutes: .nan\n", "timeout_minutes"),
    "lr_nan": (GOOD.replace("lr: 0.05", "lr: .nan"), "train.lr"),
    "tolerance_infinite": (GOOD.replace("fps_ratio: 0.9", "fps_ratio: .inf"), "reference.tolerance.fps_ratio"),
    "override_nan": (GOOD.replace("overrides: {}", "overrides: {model.decode_head.dropout_ratio: .nan}"),
                     "model.overrides: model.decode_head.dropout_ratio"),
    "override_unknown_key": (GOOD.replace("overrides: {}", "overrides: {model.decode_head.dropout_ratoi: 0.2}"),
                             "model.overrides: model.decode_head.dropout_ratoi"),
    "override_unknown_nested": (GOOD.replace("overrides: {}", "overrides: {model: {backbone: {depht: 50}}}"),
                                "model.overrides: model.backbone.depht"),
    "override_through_a_scalar": (GOOD.replace("overrides: {}", "overrides: {model.backbone.depth.x: 1}"),
                                  "model.overrides: model.backbone.depth.x"),
    "override_shape_mapping": (GOOD.replace("overrides: {}", "overrides: {model.backbone: 3}"),
                               "model.overrides: model.backbone"),
    "override_shape_number": (GOOD.replace("overrides: {}", "overrides: {model.decode_head.num_classes: [1, 2]}"),
                              "model.overrides: model.decode_head.num_classes"),
    "override_shape_tuple_length": (GOOD.replace("overrides: {}", "overrides: {crop_size: [96]}"),
                                    "model.overrides: crop_size"),
    # Unbounded input: each must be refused in well under a second, not exhaust memory.
    "device_ids_huge_range": (GOOD.replace("count: 1}", "count: 1, ids: '0-99999999999'}"), "device.ids"),
    "device_id_too_large": (GOOD.replace("count: 1}", "count: 1, ids: '5000'}"), "device.ids"),
    "yaml_alias_bomb": (GOOD + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'lol'}]\n" for i in range(12)), "aliases"),
    "yaml_huge_document": (GOOD + "description: '" + "x" * 2_000_000 + "'\n", "larger than"),
    "override_list_index": (GOOD.replace("overrides: {}", "overrides: {param_scheduler.7.end: 3}"),
                            "model.overrides: param_scheduler.7"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_is_one_line_exit_2_nothing_written(case, tmp_path):
    text, fragment = BAD_RECIPES[case]
    recipe = RECIPES / f".test_bad_{case}.yaml"  # beside the real ones so relative config paths resolve
    recipe.write_text(text)
    results = tmp_path / "results"
    try:
        for command in (["plan", str(recipe)], ["run", str(recipe), "--results", str(results)]):
            proc = run_cli(*command)
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, proc.stderr
            assert str(recipe) in lines[0] and fragment in lines[0], lines[0]
            assert "Traceback" not in proc.stderr
            assert not results.exists()
    finally:
        recipe.unlink()
    assert not Path("/tmp/pwned").exists()


def test_missing_recipe_file(tmp_path):
    proc = run_cli("plan", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"harness: error: {tmp_path / 'nope.yaml'}: recipe file does not exist"


def test_dataset_root_missing_refused_at_run_not_plan(tmp_path):
    # A plan for an NPU cluster prints without its dataset; running needs it.
    assert run_cli("plan", str(RECIPES / "full_8p.yaml")).returncode == 0
    proc = run_cli("run", str(RECIPES / "full_8p.yaml"), "--set", f"dataset.root={tmp_path}/none", "--results", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "dataset.root" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["run"], "give a RECIPE file, or --resume RUN_ID"),
        (["run", "--resume", "../../etc"], "expected an id like"),
        (["run", "--resume", "20261125T201500Z-smoke_cpu-a1b2c3"], "no such run"),
        (["plan", "recipes/smoke_cpu.yaml", "--executor", "ssh"], "executor 'ssh': expected one of"),
        (["plan", "recipes/smoke_cpu.yaml", "--set", "no_equals"], "expected KEY=VALUE"),
        (["plan", "recipes/smoke_cpu.yaml", "--set", "train.iterations=-1"], "train.iterations"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["data", "synth"], "--root"),
    ],
)
def test_bad_cli_arguments(args, fragment):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert fragment in proc.stderr


def test_good_overrides_pass_the_config_check():
    loaded = load_recipe(RECIPES / "smoke_cpu.yaml", [
        "model.overrides.model.decode_head.dropout_ratio=0.2",
        "model.overrides.model.backbone.init_cfg=null",
        "model.overrides.randomness={seed: 4}",  # a key the harness itself sets
    ])
    assert loaded.recipe.model.overrides["model"]["decode_head"] == {"dropout_ratio": 0.2}


def test_set_overrides_and_types():
    loaded = load_recipe(RECIPES / "smoke_cpu.yaml", ["train.iterations=20", "model.overrides.model.decode_head.dropout_ratio=0.2"])
    assert loaded.recipe.train.iterations == 20
    assert loaded.recipe.model.overrides == {"model": {"decode_head": {"dropout_ratio": 0.2}}}
    with pytest.raises(BadInput, match="train.iterations"):
        load_recipe(RECIPES / "smoke_cpu.yaml", ["train.iterations=many"])


@pytest.mark.parametrize("path", [p for p in SHIPPED if load_recipe(p).recipe.dataset.synthetic is None],
                         ids=lambda p: p.stem)
def test_shipped_recipes_use_the_data_home_never_a_folder_in_the_package(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PSPNET_DATA", str(tmp_path / "my-data" / "VOCdevkit"))
    assert load_recipe(path).dataset_root() == tmp_path / "my-data" / "VOCdevkit"
    monkeypatch.delenv("PSPNET_DATA")
    monkeypatch.chdir(tmp_path)
    assert load_recipe(path).dataset_root() == tmp_path / "data" / "VOCdevkit"  # ./data/VOCdevkit


def test_plan_shows_the_data_home(tmp_path):
    import json
    import os

    env = {**os.environ, "PSPNET_DATA": str(tmp_path / "my-data" / "VOCdevkit")}
    proc = run_cli("plan", str(RECIPES / "full_8p.yaml"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dataset"] == str(tmp_path / "my-data" / "VOCdevkit")
