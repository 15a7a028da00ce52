"""Numbers from the real mmseg logs in ../shared/fixtures/logs, each checked by hand.

The comment beside each expected value names the line it was read from (or how it was
computed from those lines, with grep/awk, independently of the parser).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.logs import parse_logs

SHARED = Path(__file__).resolve().parent / "fixtures" / "logs" / "public"  # copies of ../shared/fixtures/logs, see SOURCES.md

LOG_0X = SHARED / "01_mmseg0x_text_pspnet_r50-d8_512x512_20k_voc12aug_20230213_220527.log"
LOG_1X = SHARED / "04_mmseg1x_text_pspnet_r50-d8_voc2012_20230213_115425.log"
SCALARS_1X = SHARED / "05_mmseg1x_scalars_pspnet_r50-d8_voc2012_20230213_115425_scalars.json"
CPU_1X = SHARED / "cpu_mmseg1x_pspnet_r50_workdir"
CPU_0X = SHARED / "cpu_mmseg030_pspnet_r18"


def line_of(source: str) -> int:
    return int(source.rsplit(":", 1)[1])


def test_mmseg0x_text_030_gpu():
    r = parse_logs([LOG_0X])
    assert r.format == "mmseg0x-text"
    assert r.iterations == 20000 and r.max_iters == 20000  # l.1264 "Iter [20000/20000]"
    assert line_of(r.sources["iterations"]) == 1264
    assert r.batch_per_device == 4  # l.119 "    samples_per_gpu=4,"
    assert line_of(r.sources["batch_per_device"]) == 119
    assert r.devices == 1  # l.209 "gpu_ids = [0]" (l.35 "Distributed training: False")
    assert len(r.train) == 400  # grep -c 'Iter \[' -> 400 windows of 50 iterations
    # grep 'Iter \[' | awk -F 'time: ' .. | awk 'NR>1{s+=$1;n++} END{print s/n}':
    # 399 windows (l.512 .. l.1264), l.511 (time 0.427) excluded -> 0.345150375940
    assert r.mean_iter_time_s == pytest.approx(0.345150375940, abs=1e-11)
    assert r.fps == pytest.approx(4 / 0.345150375940, rel=1e-10)  # 11.58915150855
    # no fps: field in 0.30 -> batch / min(time) = 4 / 0.300 (l.516, Iter [300/20000])
    assert r.fps_seed_definition == pytest.approx(13.333333333333, rel=1e-10)
    assert line_of(r.sources["fps_seed_definition"]) == 516
    # l.1300 "Iter(val) [1449]\taAcc: 0.8769, mIoU: 0.5809, mAcc: 0.8111" (fractions)
    assert r.final == {"aAcc": 87.69, "mIoU": 58.09, "mAcc": 81.11}
    assert r.best == r.final  # 0.5809 is also the highest mIoU of the 10
    assert line_of(r.sources["final"]) == 1300
    assert r.evaluations_count == 10  # grep -c 'Iter(val)' -> 10 (l.589 .. l.1300)
    assert [e.iteration for e in r.evaluations] == list(range(2000, 20001, 2000))
    # l.589: the first evaluation, after "Iter [2000/20000]" (l.553)
    assert (r.evaluations[0].aAcc, r.evaluations[0].mIoU, r.evaluations[0].mAcc) == (
        73.48, 7.36, 10.31)
    # l.1300 "IoU.background: 0.8683", "Acc.background: 0.8947", "IoU.person: 0.7517"
    assert r.per_class["background"] == {"IoU": 86.83, "Acc": 89.47}
    assert r.per_class["person"]["IoU"] == 75.17
    assert len(r.per_class) == 21
    assert r.final_loss == 0.7649  # l.1264 "..., loss: 0.7649"
    assert r.train[0].extra["memory"] == 7603  # l.511 "memory: 7603"
    assert r.warnings == [] and r.partial is False


def test_mmseg1x_text():
    r = parse_logs([LOG_1X])
    assert r.format == "mmseg1x-text"
    assert r.iterations == 4000 and r.max_iters == 4000  # l.1026 "Iter(train) [4000/4000]"
    assert r.batch_per_device == 8  # l.167 "    batch_size=8," inside train_dataloader
    assert line_of(r.sources["batch_per_device"]) == 167
    assert r.devices == 1  # l.39 "    GPU number: 1"
    assert line_of(r.sources["devices"]) == 39
    # times l.924..l.1026: .3388 .3387 .3388 .3372 .3372 .3365 .3397, mean 0.338128571429;
    # l.922 (0.3364) is the first window and excluded
    assert r.mean_iter_time_s == pytest.approx(0.338128571429, abs=1e-11)
    assert r.fps == pytest.approx(8 / 0.338128571429, rel=1e-10)  # 23.6596391905
    assert r.fps_seed_definition == pytest.approx(8 / 0.3364, rel=1e-12)  # l.922 min time
    # l.1057 "Iter(val) [1449/1449]  aAcc: 86.1000  mIoU: 45.9200  mAcc: 60.9600" (percent)
    assert r.final == {"aAcc": 86.1, "mIoU": 45.92, "mAcc": 60.96}
    assert r.best == r.final
    assert r.evaluations_count == 4  # l.955, l.989, l.1023, l.1057
    assert [e.iteration for e in r.evaluations] == [1000, 2000, 3000, 4000]
    # l.955 "aAcc: 82.3000  mIoU: 20.5100  mAcc: 27.4700"
    assert r.evaluations[0].mIoU == 20.51
    # the val progress lines (l.926 "Iter(val) [ 500/1449]    eta: ...") are not evaluations
    assert r.per_class["background"] == {"IoU": 88.92, "Acc": 93.04}  # l.1035 table row
    assert r.per_class["person"] == {"IoU": 70.0, "Acc": 85.4}  # l.1050
    assert r.final_loss == 0.5706  # l.1026 "loss: 0.5706"
    assert r.train[-1].extra["memory"] == 3774


def test_mmseg1x_scalars_alone():
    r = parse_logs([SCALARS_1X])
    assert r.format == "mmseg1x-scalars"
    assert r.iterations == 4000  # l.11 "step": 4000 (train rows have no "iter" in mmengine 0.5)
    # 8 train rows; times of rows 2..8 (l.2, 4, 5, 7, 8, 10, 11) averaged, l.1 excluded
    times = [0.3387583255767822, 0.33870112895965576, 0.33878912925720217,
             0.3371811151504517, 0.3371976375579834, 0.3365196228027344, 0.33966023921966554]
    assert r.mean_iter_time_s == pytest.approx(sum(times) / 7, rel=1e-12)  # 0.338115314075
    assert r.batch_per_device is None and r.fps is None  # no config beside it
    assert r.fps_seed_definition is None
    assert any("batch per device" in w for w in r.warnings)
    # l.12 {"aAcc": 86.1, "mIoU": 45.92, "mAcc": 60.96, "step": 4000}
    assert r.final == {"aAcc": 86.1, "mIoU": 45.92, "mAcc": 60.96}
    assert line_of(r.sources["final"]) == 12
    assert [e.iteration for e in r.evaluations] == [1000, 2000, 3000, 4000]  # val "step"
    assert r.per_class == {}  # scalars carry no per-class values


def test_mmseg1x_text_plus_scalars_given_together():
    r = parse_logs([LOG_1X, SCALARS_1X])
    assert r.format == "mmseg1x-scalars+mmseg1x-text"
    assert r.batch_per_device == 8  # from the text log, l.167
    assert r.mean_iter_time_s == pytest.approx(0.338115314074925, rel=1e-12)  # scalars
    assert r.fps == pytest.approx(8 / 0.338115314074925, rel=1e-12)
    assert r.final_loss == 0.5705947428941727  # scalars l.11, full precision
    assert r.per_class["person"] == {"IoU": 70.0, "Acc": 85.4}  # text l.1050
    assert r.evaluations_count == 4


def test_mmseg1x_cpu_workdir_folder():
    r = parse_logs([CPU_1X])
    assert r.format == "mmseg1x-scalars+mmseg1x-text"
    assert r.iterations == 40 and r.max_iters == 40  # log l.1122 "Iter(train) [40/40]"
    assert r.batch_per_device == 2  # log l.295 "    batch_size=2," (train_dataloader)
    assert line_of(r.sources["batch_per_device"]) == 295
    assert r.devices == 1  # log l.32 "    GPU number: 1"
    # scalars l.2..l.4 times; l.1 (1.2881395101547242) excluded
    mean = (1.2446159601211548 + 1.225905179977417 + 1.2495773077011108) / 3
    assert r.mean_iter_time_s == pytest.approx(mean, rel=1e-12)  # 1.24003281593
    assert r.fps == pytest.approx(2 / mean, rel=1e-12)  # 1.61286054232
    assert r.fps_seed_definition == pytest.approx(2 / 1.225905179977417, rel=1e-12)
    assert all("memory" not in pt.extra for pt in r.train)  # CPU: no memory field
    # scalars l.5 {"aAcc": 79.31999969482422, "mIoU": 8.739999771118164, ...}
    assert r.final == {"aAcc": 79.31999969482422, "mIoU": 8.739999771118164,
                       "mAcc": 15.239999771118164}
    assert r.evaluations[0].iteration == 40  # val row "step": 40
    # log l.1129 "|  background | 88.77 | 100.0 |", l.1131 "|   bicycle   |  nan  |  nan  |"
    assert r.per_class["background"] == {"IoU": 88.77, "Acc": 100.0}
    assert r.per_class["bicycle"] == {"IoU": None, "Acc": None}
    assert r.per_class["boat"] == {"IoU": 0.0, "Acc": None}  # l.1133
    json.dumps(r.to_dict(), allow_nan=False)


def test_mmseg030_cpu_text_and_folder():
    text = parse_logs([CPU_0X / "20261125_185649.log"])
    folder = parse_logs([CPU_0X])  # the folder picks the text log over the .log.json
    assert folder.files == text.files
    assert text.iterations == 20 and text.max_iters == 20  # l.422 "Iter [20/20]"
    assert text.batch_per_device == 2  # l.113 "    samples_per_gpu=2,"
    assert text.devices == 1  # l.203 "gpu_ids = [0]"
    assert text.mean_iter_time_s == 2.362  # l.422 "time: 2.362"; l.420 (2.158) excluded
    assert text.fps == pytest.approx(2 / 2.362)
    assert text.fps_seed_definition == pytest.approx(2 / 2.158)  # l.420, min time
    # l.457 "aAcc: 0.763700008392334, mIoU: 0.05460000038146973, mAcc: 0.0714000016450882"
    assert text.final == {"aAcc": 76.3700008392334, "mIoU": 5.460000038146973,
                          "mAcc": 7.14000016450882}
    assert text.per_class["bicycle"] == {"IoU": None, "Acc": None}  # "IoU.bicycle: nan"
    assert text.per_class["background"]["Acc"] == 100.0  # "Acc.background: 1.0"
    assert text.final_loss == 2.1715  # l.422


def test_mmseg030_cpu_json():
    r = parse_logs([CPU_0X / "20261125_185649.log.json"])
    assert r.format == "mmseg0x-json"
    assert r.iterations == 20  # l.3 "iter": 20
    assert r.max_iters == 20  # l.1 config "runner = dict(type='IterBasedRunner', max_iters=20)"
    assert r.batch_per_device == 2 and r.devices == 1  # l.1 config samples_per_gpu, gpu_ids
    assert r.mean_iter_time_s == 2.36154  # l.3 "time": 2.36154; l.2 excluded
    assert r.fps == pytest.approx(2 / 2.36154)
    # l.4 is {"mode": "val", "iter": 8, ...}: 8 val images, attached to train iteration 20
    assert r.evaluations_count == 1 and r.evaluations[0].iteration == 20
    assert r.final["mIoU"] == 5.460000038146973  # l.4 "mIoU": 0.05460000038146973
    assert r.per_class["bicycle"]["IoU"] is None  # l.4 "IoU.bicycle": NaN
    json.dumps(r.to_dict(), allow_nan=False)
