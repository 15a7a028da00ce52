"""The seed's own format (mmseg 0.10 + Ascend ``fps:``) and its result files.

The fixtures are hand-written (tests/fixtures/logs/README.md); their known answers are below,
and the seed scripts' own grep/awk pipeline is run on the same file to check that
``fps_seed_definition`` and the best mIoU are what the scripts would report.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
from pathlib import Path

from harness.results.logs import parse_logs

HERE = Path(__file__).resolve().parent / "fixtures" / "logs"
ASCEND = HERE / "mmseg010_ascend_pspnet_8p_train_0.log"
RESULT = HERE / "PSPNet_bs16_8p_acc.log"
EVAL_RESULT = HERE / "PSPNet_bs1_1p_eval.log"

# l.47-90: time 3.412 (first, excluded), 1.091, 1.086, 1.534, 1.089, 1.102
STEADY = [1.091, 1.086, 1.534, 1.089, 1.102]
# fps: 4.689, 14.665, 14.733 (l.50, the peak), 10.430, 14.692, 14.519


def seed_pipeline(log: Path, key: str) -> str:
    """The seed scripts' extraction, verbatim: grep | awk | awk | sort -n | tail -1."""
    cmd = (f"grep -a '{key}:' '{log}' | awk -F '{key}: ' '{{print $2}}' "
           "| awk -F ',' '{print $1}' | sort -n | tail -1")
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_ascend_010_numbers():
    r = parse_logs([ASCEND], devices=8)  # RANK_SIZE=8; 0.10 logs do not record it
    assert r.format == "mmseg0x-text"
    assert r.iterations == 300 and r.max_iters == 300  # l.90 "Iter [300/300]"
    assert r.batch_per_device == 16  # l.30 "    samples_per_gpu=16,"
    assert r.devices == 8 and r.sources["devices"] == "argument"
    assert r.mean_iter_time_s == pytest.approx(sum(STEADY) / 5, rel=1e-12)  # 1.1804
    assert r.fps == pytest.approx(16 * 8 / 1.1804, rel=1e-12)  # 108.4378...
    assert r.fps_seed_definition == pytest.approx(8 * 14.733, rel=1e-12)  # 117.864, l.50
    assert r.sources["fps_seed_definition"].endswith(":50")
    # l.86 "Iter(val) [1449]\tmIoU: 0.7731, mAcc: 0.8570, aAcc: 0.9480" (0.10 order)
    assert r.best == {"aAcc": 94.8, "mIoU": 77.31, "mAcc": 85.7}
    # l.126 "Iter(val) [1449]\tmIoU: 0.7704, mAcc: 0.8652, aAcc: 0.9471"
    assert r.final == {"aAcc": 94.71, "mIoU": 77.04, "mAcc": 86.52}
    assert [e.iteration for e in r.evaluations] == [150, 300]
    # 0.10 has no IoU.<class> on the val line: per-class comes from the AsciiTable
    assert r.per_class["background"] == {"IoU": 78.91, "Acc": 90.52}  # l.97
    assert r.per_class["bus"] == {"IoU": 78.19, "Acc": 88.47}  # l.103
    assert r.evaluations[0].per_class["bus"] == {"IoU": 58.67, "Acc": 67.28}  # l.63
    assert r.train[0].extra["decode.loss_seg"] == 0.8932  # l.47
    assert r.final_loss == 0.6658  # l.90 "loss: 0.6658"
    assert r.warnings == []


def test_ascend_010_without_devices_is_honest():
    r = parse_logs([ASCEND])
    # l.19 "Distributed training: True" with l.43 "gpu_ids = range(0, 1)": count unknown
    assert r.devices is None and r.fps is None and r.fps_seed_definition is None
    assert r.mean_iter_time_s == pytest.approx(1.1804)
    assert any("pass --devices" in w for w in r.warnings)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("awk") is None,
                    reason="needs bash, grep, awk, sort")
def test_seed_definition_matches_seed_scripts():
    r = parse_logs([ASCEND], devices=8)
    fps = float(seed_pipeline(ASCEND, "fps"))  # FPS=max(fps:)
    assert fps == 14.733
    assert r.fps_seed_definition == pytest.approx(8 * fps, rel=1e-12)  # ActualFPS
    miou = float(seed_pipeline(ASCEND, "mIoU"))  # max over evaluations, a fraction
    assert miou == 0.7731
    assert r.best["mIoU"] == pytest.approx(miou * 100, abs=1e-9)


def test_seed_result_file():
    r = parse_logs([RESULT])
    assert r.format == "seed-result"
    assert r.devices == 8 and r.batch_per_device == 16  # l.2 RankSize, l.3 BatchSize
    assert r.fps_seed_definition == 117.86  # l.6 "ActualFPS = 117.86"
    assert r.sources["fps_seed_definition"].endswith(":6")
    assert r.best == {"aAcc": None, "mIoU": 77.31, "mAcc": None}  # l.8 "mIoU = 0.7731"
    assert r.final == {"aAcc": None, "mIoU": None, "mAcc": None}  # not recorded: absent
    assert r.final_loss == 0.6658  # l.9 "ActualLoss = 0.6658"
    assert r.mean_iter_time_s is None and r.fps is None and r.iterations is None
    assert r.evaluations_count == 0
    assert r.metadata["seed_fields"]["CaseName"] == "PSPNet_bs16_8p_acc"
    assert r.metadata["seed_fields"]["TrainingTime"] == 1086.0


def test_seed_result_agrees_with_its_log():
    log = parse_logs([ASCEND], devices=8)
    res = parse_logs([RESULT])
    assert res.fps_seed_definition == pytest.approx(log.fps_seed_definition, abs=0.005)
    assert res.best["mIoU"] == log.best["mIoU"]
    assert res.final_loss == log.final_loss


def test_seed_output_folder_takes_rank_size_from_result(tmp_path):
    # output/<id>/ holds train_<id>.log and <CaseName>.log side by side
    (tmp_path / "train_0.log").write_bytes(ASCEND.read_bytes())
    (tmp_path / "PSPNet_bs16_8p_acc.log").write_bytes(RESULT.read_bytes())
    r = parse_logs([tmp_path])
    assert r.format == "mmseg0x-text"
    assert r.devices == 8 and r.sources["devices"].endswith("PSPNet_bs16_8p_acc.log:2")
    assert r.fps_seed_definition == pytest.approx(117.864)
    assert r.metadata["seed_result"]["ActualFPS"] == 117.86


def test_seed_eval_result_file():
    r = parse_logs([EVAL_RESULT])
    assert r.format == "seed-result"
    assert r.best["mIoU"] == 77.04  # l.8 "mIoU = 0.7704"
    assert r.metadata["seed_fields"]["ValTime"] == 95.27  # l.7
    assert r.metadata["seed_fields"]["E2EValTime"] == 131  # l.9
    assert r.final_loss is None  # no ActualLoss in the eval variant


def test_seed_result_empty_value_is_absent(tmp_path):
    f = tmp_path / "PSPNet_bs16_8p_perf.log"
    f.write_text("Network = PSPNet\nRankSize = 8\nBatchSize = 16\nActualFPS = \nmIoU = \n")
    r = parse_logs([f])
    assert r.fps_seed_definition is None and r.best["mIoU"] is None
