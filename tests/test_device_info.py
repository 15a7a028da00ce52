"""What the worker records about the accelerator (worker_env.json), and the NPU image's chip choice.

The Ascend files' formats are those the CANN toolkit and driver installers write; the optimizer
wrapper record runs a real (tiny) mmengine Runner on the CPU.
"""
from __future__ import annotations

import json

import pytest

from harness.executors import images
from harness.worker import device_info
from support import run_cli

TOOLKIT_INFO = "package_name=Ascend-cann-toolkit\nversion=8.2.RC1\ninnerversion=V100R001C22SPC001B231\narch=aarch64\nos=linux\n"
DRIVER_INFO = "Version=24.1.rc2\nascendhal_version=7.35.23\naicpu_version=1.0\n"


def test_cann_and_driver_versions_from_their_install_files(tmp_path):
    info = tmp_path / "ascend-toolkit" / "latest" / "aarch64-linux" / "ascend_toolkit_install.info"
    info.parent.mkdir(parents=True)
    info.write_text(TOOLKIT_INFO)
    assert device_info.cann_version(tmp_path, machine="aarch64") == "8.2.RC1"
    assert device_info.cann_version(tmp_path, machine="x86_64") is None
    driver = tmp_path / "version.info"
    driver.write_text(DRIVER_INFO)
    assert device_info.driver_version(driver) == "24.1.rc2"
    assert device_info.driver_version(tmp_path / "missing") is None


@pytest.mark.parametrize("soc, forced", [(100, True), (104, True), (220, False), (223, False), (None, None)])
def test_mmengine_forces_amp_below_910b(soc, forced):
    # 910A/910ProB report SoC versions below 220; Atlas A2 (910B1..4) from 220 up.
    assert device_info.mmengine_forces_amp(soc) is forced


def test_mmengine_threshold_is_the_installed_mmengines():
    import inspect

    from mmengine.device import utils

    assert f"= {device_info.MMENGINE_FULL_PRECISION_SOC}" in inspect.getsource(utils.is_npu_support_full_precision)


def test_recorded_environment_keeps_hccl_and_ascend_settings_only():
    env = {"HCCL_CONNECT_TIMEOUT": "1200", "HCCL_EXEC_TIMEOUT": "1800", "ASCEND_RT_VISIBLE_DEVICES": "0",
           "TASK_QUEUE_ENABLE": "1", "HOME": "/tmp", "PATH": "/bin"}
    assert device_info.recorded_environment(env) == {
        "ASCEND_RT_VISIBLE_DEVICES": "0", "HCCL_CONNECT_TIMEOUT": "1200", "HCCL_EXEC_TIMEOUT": "1800",
        "TASK_QUEUE_ENABLE": "1"}


def test_optim_wrapper_hook_records_what_the_runner_built(tmp_path):
    import torch
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode="tensor"):
            out = self.linear(inputs)
            return {"loss": out.pow(2).mean()} if mode == "loss" else out

    from harness.store.runs import write_worker_env

    write_worker_env(tmp_path, {"python": "3.11"})
    worker_env = tmp_path / "worker_env.json"
    data = [{"inputs": torch.ones(2)} for _ in range(4)]
    runner = Runner(model=Tiny(), work_dir=str(tmp_path / "work"), train_dataloader=DataLoader(data, batch_size=2),
                    optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.01)),
                    train_cfg=dict(by_epoch=False, max_iters=1), default_hooks=dict(checkpoint=None))
    runner.register_hook(device_info.optim_wrapper_hook(tmp_path, "AmpOptimWrapper"))
    runner.train()
    recorded = json.loads(worker_env.read_text())
    assert recorded["python"] == "3.11"  # the rest of the file is kept
    # Asked for AMP, got plain: the record shows what ran, and that it differs.
    assert recorded["optim_wrapper"] == {"requested": "AmpOptimWrapper", "used": "OptimWrapper",
                                         "changed_by_mmengine": True}


def test_npu_chip_picks_the_cann_base_tag():
    assert "-910b-" in images.default_base("npu")
    assert images.npu_base_for_chip("910") == images.default_base("npu").replace("-910b-", "-910-")
    assert images.npu_base_for_chip("910b") == images.default_base("npu")
    tags = {chip: run_cli("image", "tag", "npu", "--chip", chip).stdout.strip() for chip in images.NPU_CHIPS}
    assert tags["910"] != tags["910b"] and all(t.startswith("pspnet-repro/npu:") for t in tags.values())


def test_chip_is_refused_for_other_images_and_with_base():
    proc = run_cli("image", "tag", "gpu", "--chip", "910")
    assert proc.returncode == 2 and "--chip is for the npu image" in proc.stderr
    proc = run_cli("image", "tag", "npu", "--chip", "910", "--base", "x:1")
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_recipe_may_name_the_npu_chip_only_for_npus():
    proc = run_cli("plan", "recipes/full_8p.yaml", "--set", "device.chip=910", "--json")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("plan", "recipes/smoke_cpu.yaml", "--set", "device.chip=910")
    assert proc.returncode == 2 and "chip" in proc.stderr
    proc = run_cli("plan", "recipes/full_8p.yaml", "--set", "device.chip=310p")
    assert proc.returncode == 2 and "chip" in proc.stderr
