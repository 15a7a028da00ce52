"""The "fast" variant's knobs: recipe fields -> job -> the resolved mmengine config and the plan."""
from __future__ import annotations

import pytest

from harness.executors.planned import describe_plan
from harness.planning.plan import PlanInputs, build_plan
from harness.planning.recipe import load_recipe
from support import RECIPES, run_cli, require_extra

INPUTS = PlanInputs(run_dir="/r", dataset_dir="/d/VOCdevkit", config_name="pspnet_r50-d8_voc12aug-512x512_gpu.py")
FAST = ("device.count=1", "device.ids=0", "train.amp=true", "train.amp_dtype=bfloat16", "train.channels_last=true",
        "train.cudnn_benchmark=true", "train.batch_per_device=8")


def changes(name: str, *sets: str) -> dict:
    loaded = load_recipe(RECIPES / f"{name}.yaml", list(sets))
    return describe_plan(build_plan(loaded.recipe, INPUTS, "local"))["config_changes"]


def test_fast_gpu_knobs_show_in_the_plan():
    c = changes("gpu_perf_8p", *FAST)
    assert c["optim_wrapper.type"] == "AmpOptimWrapper" and c["optim_wrapper.dtype"] == "bfloat16"
    assert c["env_cfg.cudnn_benchmark"] is True
    assert c["custom_hooks.0.type"] == "ChannelsLastHook"
    assert c["custom_imports.imports"] == ["harness.worker.hooks"]
    assert c["train_dataloader.batch_size"] == 8
    # One card: SyncBN falls back to BN, as the single-process run really does.
    assert c["model.backbone.norm_cfg.type"] == "BN"


def test_knobs_off_change_nothing():
    c = changes("gpu_perf_8p", "device.count=1", "device.ids=0")
    assert not any(key.startswith(("custom_hooks", "custom_imports", "optim_wrapper.dtype")) for key in c)
    assert "env_cfg.cudnn_benchmark" not in c  # null keeps the stock config's setting


@pytest.mark.parametrize("sets, message", [
    (("train.amp=false", "train.amp_dtype=bfloat16"), "train: Value error, amp_dtype needs amp: true"),
    (("train.amp_dtype=float32",), "train.amp_dtype: Input should be 'float16' or 'bfloat16'"),
])
def test_bad_knobs_are_one_line(sets, message):
    args = [a for s in sets for a in ("--set", s)]
    proc = run_cli("plan", str(RECIPES / "gpu_perf_8p.yaml"), *args)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cudnn_benchmark_refused_off_gpu():
    proc = run_cli("plan", str(RECIPES / "smoke_cpu.yaml"), "--set", "train.cudnn_benchmark=true")
    assert proc.returncode == 2 and "cudnn_benchmark is for device.kind 'gpu'" in proc.stderr, proc.stderr


def test_resolved_config_has_the_knobs():
    require_extra("mmengine")
    from harness.store.job import Job
    from harness.planning.mmseg_config import build_config

    loaded = load_recipe(RECIPES / "gpu_perf_8p.yaml", list(FAST))
    job = build_plan(loaded.recipe, PlanInputs(run_dir="/r", dataset_dir="/d", config_name="x.py"), "local").job
    job = Job.from_dict({**job.to_dict(), "config": str(loaded.config_path)})
    cfg, notes = build_config(job)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.dtype == "bfloat16"
    assert cfg.env_cfg.cudnn_benchmark is True
    assert [h["type"] for h in cfg.custom_hooks] == ["ChannelsLastHook"]
    assert "AMP dtype bfloat16" in notes and "channels_last model" in notes
    # The stock model stays: R50-D8, 512x512 crop.
    assert cfg.model.backbone.depth == 50 and tuple(cfg.crop_size) == (512, 512)


def test_old_job_files_still_load():
    from harness.store.job import Job

    loaded = load_recipe(RECIPES / "smoke_cpu.yaml")
    data = build_plan(loaded.recipe, INPUTS, "local").job.to_dict()
    for key in ("amp_dtype", "channels_last", "cudnn_benchmark"):
        del data["train"][key]
    assert Job.from_dict(data).train.channels_last is False
