"""The worker's config adaptation, on the real mmengine configs the recipes name."""
from __future__ import annotations

import pytest

from harness.planning.backends.base import replace_norm
from harness.planning.mmseg_config import adapt, build_config
from harness.store.job import Job, TrainSettings
from support import RECIPES, require_extra

mmengine = require_extra("mmengine", reason="the training stack (pip install -e '.[train]') is not installed")


def job(config: str, kind: str, world: int, **train) -> Job:
    settings = dict(batch_per_device=2, iterations=30, log_interval=5, val_interval=15, checkpoint_interval=15,
                    workers_per_device=1, norm="BN", amp=False, lr=0.02, seed=3)
    settings.update(train)
    return Job(recipe_name="t", mode="accuracy", device_kind=kind, world_size=world, config=str(RECIPES / "configs" / config),
               work_dir="/w", data_root="/d/VOC2012", train=TrainSettings(**settings), overrides={"model.decode_head.dropout_ratio": 0.3})


def norms(node) -> set:
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "norm_cfg" and isinstance(value, dict):
                found.add(value["type"])
            else:
                found |= norms(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            found |= norms(item)
    return found


def test_cpu_two_ranks_real_config():
    cfg, notes = build_config(job("pspnet_r18-d8_synthvoc_cpu-smoke.py", "cpu", 2))
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_dataloader.num_workers == 1
    assert [d.data_root for d in cfg.train_dataloader.dataset.datasets] == ["/d/VOC2012", "/d/VOC2012"]
    assert cfg.val_dataloader.dataset.data_root == "/d/VOC2012"
    assert cfg.train_cfg.max_iters == 30 and cfg.param_scheduler[0].end == 30
    assert cfg.default_hooks.logger.interval == 5 and cfg.default_hooks.checkpoint.interval == 15
    assert cfg.optim_wrapper.optimizer.lr == 0.02 and cfg.randomness.seed == 3
    assert norms(cfg.model.to_dict()) == {"BN"}
    assert cfg.env_cfg.dist_cfg.backend == "gloo" and cfg.launcher == "pytorch"
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model.decode_head.dropout_ratio == 0.3  # the recipe override comes last
    assert cfg.work_dir == "/w"


def test_gpu_syncbn_amp_real_config():
    cfg, _ = build_config(job("pspnet_r50-d8_voc12aug-512x512_gpu.py", "gpu", 8, norm="SyncBN", amp=True))
    assert norms(cfg.model.to_dict()) == {"SyncBN"}
    assert cfg.env_cfg.dist_cfg.backend == "nccl"
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"


def test_gpu_single_process_falls_back_to_bn():
    cfg, _ = build_config(job("pspnet_r50-d8_voc12aug-512x512_gpu.py", "gpu", 1, norm="SyncBN"))
    assert norms(cfg.model.to_dict()) == {"BN"}


def test_npu_real_config():
    cfg, _ = build_config(job("pspnet_r50-d8_voc12aug-512x512_npu-seed.py", "npu", 8, batch_per_device=16, amp=True))
    assert norms(cfg.model.to_dict()) == {"BN"}
    assert cfg.env_cfg.dist_cfg.backend == "hccl"
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == 128.0
    assert cfg.test_dataloader.dataset.pipeline[1]["scale"] == (512, 512)


def test_backends_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match="SyncBN"):
        build_config(job("pspnet_r50-d8_voc12aug-512x512_npu-seed.py", "npu", 8, norm="SyncBN"))
    with pytest.raises(ValueError, match="AMP"):
        build_config(job("pspnet_r18-d8_synthvoc_cpu-smoke.py", "cpu", 1, amp=True))


def test_checked_in_config_is_not_modified():
    path = RECIPES / "configs" / "pspnet_r18-d8_synthvoc_cpu-smoke.py"
    before = path.read_bytes()
    build_config(job(path.name, "cpu", 2))
    assert path.read_bytes() == before


def test_replace_norm_counts():
    tree = {"a": {"norm_cfg": {"type": "SyncBN"}}, "b": [{"norm_cfg": {"type": "BN"}}, {"norm_cfg": {"type": "GN"}}]}
    assert replace_norm(tree, "BN") == 2
    assert tree["b"][1]["norm_cfg"]["type"] == "GN"


def test_adapt_works_on_plain_dicts():
    cfg = {
        "model": {"backbone": {"norm_cfg": {"type": "SyncBN"}}},
        "train_dataloader": {"dataset": {"type": "X"}},
        "train_cfg": {}, "default_hooks": {"logger": {}, "checkpoint": {}},
        "optim_wrapper": {"optimizer": {}}, "param_scheduler": [],
    }
    adapt(cfg, job("x.py", "cpu", 1))
    assert cfg["train_dataloader"]["dataset"]["data_root"] == "/d/VOC2012" and cfg["launcher"] == "none"


def test_nested_overrides_merge_into_the_config_not_replace_it():
    """``--set model.overrides.model.decode_head.dropout_ratio=0.2`` gives a nested mapping; it must
    change that one key, not replace the whole model."""
    base = job("pspnet_r18-d8_synthvoc_cpu-smoke.py", "cpu", 1)
    nested = Job(**{**base.__dict__, "overrides": {"model": {"decode_head": {"dropout_ratio": 0.25}}}})
    cfg, _ = build_config(nested)
    assert cfg.model.decode_head.dropout_ratio == 0.25
    assert cfg.model.backbone.depth == 18 and cfg.model.decode_head.channels == 128
