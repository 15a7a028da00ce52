"""bench/gpu_throughput.py: the GPU invocation is planned here for real (no GPU needed), and the
whole script is rehearsed on the CPU at toy size (what CI can run of it)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml

from support import REPO, RECIPES, run_cli, require_extra

SCRIPT = REPO / "bench" / "gpu_throughput.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["stock", "fast"])
def test_gpu_variants_plan_on_one_gpu(name, tmp_path):
    """The exact --set list the script passes on a GPU machine makes a valid one-GPU plan."""
    variant = {v.name: v for v in bench_module().variants(False, 300, 16)}[name]
    sets = [a for item in (*variant.sets, f"dataset.root={tmp_path}") for a in ("--set", item)]
    proc = run_cli("plan", str(RECIPES / "gpu_perf_8p.yaml"), *sets, "--executor", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["backend"] == "gpu" and plan["world_size"] == 1 and list(plan["device_ids"]) == [0]
    assert "torch.distributed.run" not in plan["launch"]["argv"]
    changes = plan["config_changes"]
    assert changes["model.backbone.norm_cfg.type"] == "BN" and changes["model.pretrained"] is None
    if name == "stock":
        assert changes["train_dataloader.batch_size"] == 4 and "optim_wrapper.type" not in changes
    else:
        assert changes["train_dataloader.batch_size"] == 16
        assert changes["optim_wrapper.type"] == "AmpOptimWrapper" and changes["optim_wrapper.dtype"] == "bfloat16"
        assert changes["env_cfg.cudnn_benchmark"] is True and changes["custom_hooks.0.type"] == "ChannelsLastHook"


def test_without_a_gpu_it_says_so_and_exits_3():
    require_extra("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the real check would run")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "no CUDA GPU" in proc.stderr and len(proc.stderr.splitlines()) == 1


@pytest.mark.slow  # two real `harness run`s of R50-D8 at 64x64: ~1-3 min on 2 cores
def test_rehearsal_runs_both_variants(tmp_path, cache_env):
    env = {**cache_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), "--rehearse", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.startswith(("stock ", "fast "))}
    assert set(rows) == {"stock", "fast"}, proc.stdout
    for name in rows:
        (run,) = (tmp_path / "results" / name / "runs").iterdir()
        result = json.loads((run / "result.json").read_text())
        assert result["fps"] and result["fps"] > 0 and result["iterations"] == 3
        assert f"{result['fps']:9.2f}".strip() in proc.stdout
        changes = json.loads((run / "plan.json").read_text())["config_changes"]
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        assert recipe["device"]["count"] == 1 and recipe["train"]["iterations"] == 3
        if name == "fast":
            assert changes["custom_hooks.0.type"] == "ChannelsLastHook"
            assert "harness: model converted to channels_last" in (run / "train.log").read_text()
