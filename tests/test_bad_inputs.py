"""Bad datasets and logs given to `harness run` / `harness parse`: one line, exit 2, nothing written.
(Bad recipes and CLI arguments are in test_recipes.py; data-tool input in test_data_*.py.)"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from harness.data.synth import SynthSpec, voc_palette, write_synthetic_voc
from support import REPO, RECIPES, run_cli

SMALL = SynthSpec(seed=5, n_train=4, n_aug=4, n_val=3)


@pytest.fixture(scope="module")
def good_devkit(tmp_path_factory):
    return write_synthetic_voc(tmp_path_factory.mktemp("good"), SMALL)


def _label_42(voc):
    path = next((voc / "SegmentationClass").glob("*.png"))
    image = Image.fromarray(np.full((8, 8), 42, np.uint8), mode="P")
    image.putpalette(voc_palette())
    with Image.open(next((voc / "JPEGImages").glob("*.jpg"))) as jpg:
        image = image.resize(jpg.size)
    image.save(path)


BREAKAGES = {
    "no_voc2012_folder": lambda voc: shutil.rmtree(voc),
    "no_split_lists": lambda voc: shutil.rmtree(voc / "ImageSets"),
    "missing_image": lambda voc: next((voc / "JPEGImages").glob("*.jpg")).unlink(),
    "label_value_42": _label_42,
    "blank_line_in_split": lambda voc: (lambda p: p.write_text("\n" + p.read_text()))(voc / "ImageSets/Segmentation/train.txt"),
    "duplicate_id_in_split": lambda voc: (lambda p: p.write_text(p.read_text() * 2))(voc / "ImageSets/Segmentation/val.txt"),
    "truncated_label": lambda voc: (lambda p: p.write_bytes(p.read_bytes()[:100]))(next((voc / "SegmentationClass").glob("*.png"))),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_broken_dataset_is_refused_before_anything_is_written(case, good_devkit, tmp_path):
    devkit = tmp_path / "VOCdevkit"
    shutil.copytree(good_devkit, devkit)
    BREAKAGES[case](devkit / "VOC2012")
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--set", f"dataset.root={devkit}", "--set", "dataset.synthetic=null",
                   "--set", "train.iterations=2",
                   "--results", str(results))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "dataset" in lines[0] and str(devkit) in lines[0]
    assert not results.exists()


_ASCEND = (REPO / "tests" / "fixtures" / "logs" / "mmseg010_ascend_pspnet_8p_train_0.log").read_bytes()
BAD_LOGS = {
    "two_runs_appended": _ASCEND + _ASCEND,
    "negative_time": _ASCEND.replace(b"time: 1.091,", b"time: -1.091,"),
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "garbage_text": b"hello\nthis is not a training log\n",
    "json_not_a_log": b'{"a": 1}\n{"b": 2}\n',
}


@pytest.mark.parametrize("case", sorted(BAD_LOGS))
def test_bad_log_is_one_line_exit_2(case, tmp_path):
    path = tmp_path / f"{case}.log"
    path.write_bytes(BAD_LOGS[case])
    proc = run_cli("parse", str(path), "--json")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_missing_log_path(tmp_path):
    proc = run_cli("parse", str(tmp_path / "nope.log"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_resume_of_unknown_or_escaping_run_id(tmp_path):
    for run_id in ("20261125T000000Z-x-abcdef", "../../etc/passwd", "a/b"):
        proc = run_cli("run", "--resume", run_id, "--results", str(tmp_path))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_unreachable_docker_engine_is_exit_3_and_nothing_written(tmp_path):
    import os

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--executor", "docker", "--results", str(results), env=env)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Docker engine" in lines[0] and "docker-up.sh" in lines[0]
    assert not (results / "runs").exists() or not any((results / "runs").iterdir())


# Bad values given through --set (or written in the recipe) that once passed validation and
# crashed after the run folder existed, or copied files they should not have: each is refused
# before anything is written, in one line naming the field.
BOMB = "{" + ", ".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'lol'}]" for i in range(12)) + "}"
BAD_SETS = {
    "config_not_python": (["model.config=/etc/passwd"], "model.config"),
    "timeout_infinite": (["timeout_minutes=.inf"], "timeout_minutes"),
    "lr_nan": (["train.lr=.nan"], "train.lr"),
    "override_unknown_key": (["model.overrides.model.decode_head.dropout_ratoi=0.2"], "model.decode_head.dropout_ratoi"),
    "override_wrong_shape": (["model.overrides.crop_size=[96]"], "model.overrides: crop_size"),
    "override_infinite": (["model.overrides.model.decode_head.dropout_ratio=.inf"], "model.decode_head.dropout_ratio"),
    "device_ids_huge_range": (["device.ids=0-99999999999"], "device.ids"),
    "yaml_alias_bomb_in_set": ([f"model.overrides.x={BOMB}"], "aliases"),
    "config_outside_recipe_tree": ([f"model.config={REPO}/harness/planning/configs.py"], "outside the recipe's folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETS))
def test_bad_set_value_is_one_line_exit_2_nothing_written(case, tmp_path):
    sets, fragment = BAD_SETS[case]
    results = tmp_path / "results"
    args = [item for value in sets for item in ("--set", value)]
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), *args, "--set", "train.iterations=2",
                   "--results", str(results), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0], lines[0]
    assert not results.exists()
