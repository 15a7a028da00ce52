"""What real-world log files do to a parser: prefixes, CRLF, resumes, truncation, junk."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.logs import FORMATS, LogParseError, parse_logs
from harness.results.logs.detect import detect

SHARED = Path(__file__).resolve().parent / "fixtures" / "logs" / "public"  # copies of ../shared/fixtures/logs, see SOURCES.md
LOG_0X = SHARED / "01_mmseg0x_text_pspnet_r50-d8_512x512_20k_voc12aug_20230213_220527.log"
LOG_1X = SHARED / "04_mmseg1x_text_pspnet_r50-d8_voc2012_20230213_115425.log"
SCALARS_1X = SHARED / "05_mmseg1x_scalars_pspnet_r50-d8_voc2012_20230213_115425_scalars.json"
JSON_0X = SHARED / "cpu_mmseg030_pspnet_r18" / "20261125_185649.log.json"
ASCEND = Path(__file__).resolve().parent / "fixtures" / "logs" / \
    "mmseg010_ascend_pspnet_8p_train_0.log"


def headline(r) -> tuple:
    return (r.iterations, r.max_iters, r.batch_per_device, r.devices, r.mean_iter_time_s,
            r.fps, r.fps_seed_definition, r.final, r.best, r.evaluations_count, r.per_class,
            r.final_loss)


def lines_of(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


# --- detection ---------------------------------------------------------------------------

def test_formats_listed():
    assert set(FORMATS) == {"mmseg0x-text", "mmseg0x-json", "mmseg1x-text", "mmseg1x-scalars",
                            "seed-result", "harness-events"}


@pytest.mark.parametrize("path, fmt", [
    (LOG_0X, "mmseg0x-text"), (LOG_1X, "mmseg1x-text"), (SCALARS_1X, "mmseg1x-scalars"),
    (JSON_0X, "mmseg0x-json"),
    (SHARED / "cpu_mmseg1x_pspnet_r50_workdir" / "vis_data" / "scalars.json", "mmseg1x-scalars"),
])
def test_detect_real_logs(path, fmt):
    assert detect(path) == fmt


def test_detect_seed_files():
    assert detect(ASCEND) == "mmseg0x-text"
    assert detect(ASCEND.parent / "PSPNet_bs16_8p_acc.log") == "seed-result"


def test_forced_format_skips_detection_and_wrong_one_fails():
    assert headline(parse_logs([LOG_0X], fmt="mmseg0x-text")) == headline(parse_logs([LOG_0X]))
    with pytest.raises(LogParseError) as e:
        parse_logs([LOG_0X], fmt="mmseg1x-scalars")
    assert e.value.line == 1 and "invalid JSON" in e.value.reason
    with pytest.raises(ValueError):
        parse_logs([LOG_0X], fmt="mmseg2x")


# --- prefixes, line endings ----------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["[rank0]: ", "[default0]:", "[1,0]<stdout>:"])
@pytest.mark.parametrize("src", [LOG_0X, LOG_1X], ids=["0x", "1x"])
def test_launcher_prefixes(tmp_path, prefix, src):
    f = tmp_path / src.name
    f.write_text("".join(prefix + line + "\n" for line in lines_of(src)))
    got, want = parse_logs([f]), parse_logs([src])
    assert headline(got) == headline(want)


def test_prefix_on_seed_format(tmp_path):
    f = tmp_path / "train_0.log"
    f.write_text("".join("[default0]:" + line + "\n" for line in lines_of(ASCEND)))
    assert headline(parse_logs([f], devices=8)) == headline(parse_logs([ASCEND], devices=8))


@pytest.mark.parametrize("src", [LOG_1X, ASCEND, SCALARS_1X], ids=["1x", "010", "scalars"])
def test_crlf(tmp_path, src):
    f = tmp_path / src.name
    f.write_bytes(src.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert headline(parse_logs([f], devices=8)) == headline(parse_logs([src], devices=8))


def test_crlf_source_already_crlf_and_lf_copy_agree(tmp_path):
    # 01 is a Windows log (CRLF, GBK bytes in the MSVC line); an LF copy must read the same
    f = tmp_path / "lf.log"
    f.write_bytes(LOG_0X.read_bytes().replace(b"\r\n", b"\n"))
    assert headline(parse_logs([f])) == headline(parse_logs([LOG_0X]))


# --- resumed runs ----------------------------------------------------------------------------

def _index(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


def test_resume_stitching(tmp_path):
    lines = lines_of(LOG_0X)
    header = lines[:_index(lines, "Iter [50/20000]")]
    cut_a = _index(lines, "Iter [9000/20000]") + 1       # first run died after 9000
    start_b = _index(lines, "Iter [8050/20000]")         # resumed from the 8000 checkpoint
    b_lines = header + lines[start_b:]
    i = len(header)
    assert "Iter [8050/20000]" in b_lines[i]
    b_lines[i] = b_lines[i].replace("time: ", "time: 9", 1)  # the rerun's window differs
    a, b = tmp_path / "20230213_220527.log", tmp_path / "20230214_090000.log"
    a.write_text("\n".join(lines[:cut_a]) + "\n")
    b.write_text("\n".join(b_lines) + "\n")

    whole = parse_logs([LOG_0X])
    for order in ([a, b], [b, a]):
        r = parse_logs(order)
        assert r.iterations == 20000 and len(r.train) == 400  # no window counted twice
        assert [pt.iter for pt in r.train] == list(range(50, 20001, 50))
        assert r.evaluations_count == 10 and r.final == whole.final and r.best == whole.best
        pt = next(p for p in r.train if p.iter == 8050)
        assert pt.time > 9 and pt.source.startswith(str(b))  # the later file's window wins
        assert next(p for p in r.train if p.iter == 8000).source.startswith(str(a))
        assert any("resumed run" in w for w in r.warnings)
        assert r.files[0] == str(a)


def test_resume_folder_of_two_1x_timestamps(tmp_path):
    rows = SCALARS_1X.read_text().splitlines()
    for name, part in (("20230213_115425", rows[:6]), ("20230213_130000", rows[3:])):
        (tmp_path / name / "vis_data").mkdir(parents=True)
        (tmp_path / name / "vis_data" / "scalars.json").write_text("\n".join(part) + "\n")
    r = parse_logs([tmp_path])  # a work_dir: one timestamp folder per (re)start
    assert r.iterations == 4000 and len(r.train) == 8 and r.evaluations_count == 4


# --- truncation, NaN, absent metrics ---------------------------------------------------------

def test_truncated_last_text_line(tmp_path):
    lines = lines_of(ASCEND)
    i = _index(lines, "Iter [300/300]")
    f = tmp_path / "train_0.log"
    f.write_text("\n".join(lines[:i]) + "\n" + lines[i][:lines[i].index("time: ") + 8])
    r = parse_logs([f], devices=8)
    assert r.iterations == 250 and r.partial
    assert any("truncated" in w and f"{f}:{i + 1}" in w for w in r.warnings)
    # 1.091, 1.086, 1.534, 1.089 (the half line's "time: 1.1" is not read)
    assert r.mean_iter_time_s == pytest.approx((1.091 + 1.086 + 1.534 + 1.089) / 4)
    assert r.final["mIoU"] == 77.31 and r.evaluations_count == 1


def test_truncated_last_json_row(tmp_path):
    data = SCALARS_1X.read_text()
    f = tmp_path / "scalars.json"
    f.write_text(data[:-30])  # the final val row cut short
    r = parse_logs([f])
    assert r.evaluations_count == 3 and r.partial
    assert any("truncated" in w for w in r.warnings)
    g = tmp_path / "complete.json"
    g.write_text(data.rstrip("\n"))  # complete last row, no newline: JSON delimits itself
    r = parse_logs([g])
    assert r.evaluations_count == 4 and not r.partial and r.warnings == ["batch per device "
                                                                       "not in the log: fps "
                                                                       "needs --batch-size"]


def test_nan_tokens_and_nan_loss(tmp_path):
    f = tmp_path / "run.log.json"
    rows = [
        '{"env_info": "x", "config": "data = dict(\\n    samples_per_gpu=4,\\n)\\ngpu_ids = range(0, 2)\\n"}',
        '{"mode": "train", "epoch": 1, "iter": 50, "lr": 0.01, "time": 0.5, "loss": 1.0}',
        '{"mode": "train", "epoch": 1, "iter": 100, "lr": 0.01, "time": 0.4, "loss": NaN}',
        '{"mode": "val", "epoch": 1, "iter": 1449, "aAcc": 0.9, "mIoU": NaN, "mAcc": 0.5, '
        '"IoU.cat": NaN, "Acc.cat": 0.25}',
    ]
    f.write_text("\n".join(rows) + "\n")
    r = parse_logs([f])
    assert r.batch_per_device == 4 and r.devices == 2  # gpu_ids = range(0, 2)
    assert r.fps == pytest.approx(4 * 2 / 0.4)
    assert r.final == {"aAcc": 90.0, "mIoU": None, "mAcc": 50.0}
    assert r.best == {"aAcc": None, "mIoU": None, "mAcc": None}  # no finite mIoU to rank
    assert r.per_class == {"cat": {"IoU": None, "Acc": 25.0}}
    assert r.evaluations[0].iteration == 100  # val "iter" 1449 is the val image count
    assert any("NaN" in w for w in r.warnings)
    d = r.to_dict()
    assert d["final_loss"] is None
    json.dumps(d, allow_nan=False)


def test_metric_absent_is_not_an_error(tmp_path):
    lines = lines_of(ASCEND)
    f = tmp_path / "train_0.log"
    f.write_text("\n".join(l for l in lines if "Iter(val)" not in l and not l.startswith("|"))
                 + "\n")
    r = parse_logs([f], devices=8)
    assert r.evaluations_count == 0
    assert r.final == {"aAcc": None, "mIoU": None, "mAcc": None} and r.per_class == {}
    assert r.iterations == 300 and r.fps is not None
    assert any("no evaluation" in w for w in r.warnings)


def test_val_line_missing_one_metric(tmp_path):
    f = tmp_path / "x.log"
    f.write_text(
        "2023/02/13 11:54:26 - mmengine - INFO - Iter(train) [10/20]  lr: 1e-2  eta: 0:00:01"
        "  time: 1.5  data_time: 0.1  loss: 2.0\n"
        "2023/02/13 11:54:26 - mmengine - INFO - Iter(train) [20/20]  lr: 1e-2  eta: 0:00:00"
        "  time: 1.25  data_time: 0.1  loss: 1.5\n"
        "2023/02/13 11:54:27 - mmengine - INFO - Iter(val) [8/8]  aAcc: 80.0000  mIoU: 9.5000\n")
    r = parse_logs([f], batch_per_device=2)
    assert r.final == {"aAcc": 80.0, "mIoU": 9.5, "mAcc": None}
    assert r.devices == 1 and r.sources["devices"].startswith("default")
    assert r.fps == pytest.approx(2 / 1.25) and r.max_iters == 20


def test_single_window_gives_no_mean(tmp_path):
    f = tmp_path / "x.log"
    f.write_text("2021-01-01 00:00:00,000 - mmseg - INFO - Iter [50/100]\tlr: 1.0e-02, "
                 "eta: 0:01:00, time: 1.200, data_time: 0.010, loss: 2.0000\n")
    r = parse_logs([f], batch_per_device=2)
    assert r.mean_iter_time_s is None and r.fps is None
    assert r.fps_seed_definition == pytest.approx(2 / 1.2)  # the seed takes any window
    assert r.partial  # 50 of 100
    assert any("fewer than two" in w for w in r.warnings)


def test_eta_with_days_does_not_break_fields(tmp_path):
    f = tmp_path / "x.log"
    f.write_text("2021-01-01 00:00:00,000 - mmseg - INFO - Iter [50/100000]\tlr: 1.0e-02, "
                 "eta: 1 day, 2:03:04, time: 1.200, data_time: 0.010, loss: 2.0000\n")
    r = parse_logs([f])
    assert r.train[0].time == 1.2 and r.train[0].loss == 2.0


# --- could not parse -------------------------------------------------------------------------

def _err(path: Path) -> LogParseError:
    with pytest.raises(LogParseError) as e:
        parse_logs([path])
    err = e.value
    assert err.path == str(path)
    assert "\n" not in str(err) and str(err).startswith(str(path) + ":")
    return err


def test_empty_file(tmp_path):
    f = tmp_path / "empty.log"
    f.write_text("")
    assert "empty" in _err(f).reason
    f.write_text("\n \r\n\t\n")
    assert "empty" in _err(f).reason


def test_binary_file(tmp_path):
    f = tmp_path / "latest.pth"
    f.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 64)
    assert "binary" in _err(f).reason


def test_garbage_text(tmp_path):
    f = tmp_path / "notes.log"
    f.write_text("hello\nthis is not a training log\n" * 100)
    err = _err(f)
    assert "not recognised" in err.reason and err.line is None


def test_huge_single_line_without_markers(tmp_path):
    f = tmp_path / "huge.log"
    f.write_bytes(b"x" * (6 << 20))  # 6 MiB, no newline
    assert "not recognised" in _err(f).reason


def test_malformed_train_line(tmp_path):
    f = tmp_path / "bad.log"
    f.write_text("2021-01-01 00:00:00,000 - mmseg - INFO - Iter [50/100]\tlr: 1.0e-02, "
                 "time: fast, loss: 2.0\nmore\n")
    err = _err(f)
    assert err.line == 1 and "time" in err.reason
    assert str(err) == f"{f}:1: malformed train line: time = 'fast'"


def test_malformed_json_line_in_the_middle(tmp_path):
    f = tmp_path / "scalars.json"
    f.write_text('{"lr": 0.01, "loss": 1.0, "time": 0.5, "step": 10}\n{"lr": oops}\n'
                 '{"lr": 0.01, "loss": 1.0, "time": 0.5, "step": 20}\n')
    err = _err(f)
    assert err.line == 2 and "invalid JSON" in err.reason


def test_unknown_json(tmp_path):
    f = tmp_path / "other.json"
    f.write_text('{"foo": 1}\n')
    assert "neither" in _err(f).reason


def test_missing_path_and_empty_dir(tmp_path):
    assert "no such file" in _err(tmp_path / "nope.log").reason
    (tmp_path / "empty_dir").mkdir()
    assert "holds no" in _err(tmp_path / "empty_dir").reason


def test_mixed_formats_refused(tmp_path):
    json0 = tmp_path / "a.log.json"
    json0.write_text('{"mode": "train", "iter": 10, "time": 1.0, "loss": 1.0}\n')
    with pytest.raises(LogParseError) as e:
        parse_logs([ASCEND, json0])
    assert "mixed log formats" in e.value.reason


def test_bad_arguments():
    with pytest.raises(ValueError):
        parse_logs([])
    with pytest.raises(ValueError):
        parse_logs([ASCEND], devices=0)


def test_1x_test_script_log(tmp_path):
    f = tmp_path / "test.log"
    f.write_text("2023/02/13 12:00:00 - mmengine - INFO - Load checkpoint from iter_4000.pth\n"
                 "+-------------+-------+-------+\n|    Class    |  IoU  |  Acc  |\n"
                 "+-------------+-------+-------+\n|  background | 88.92 | 93.04 |\n"
                 "+-------------+-------+-------+\n"
                 "2023/02/13 12:01:00 - mmengine - INFO - Iter(test) [1449/1449]    "
                 "aAcc: 86.1000  mIoU: 45.9200  mAcc: 60.9600  data_time: 0.0020  time: 0.0300\n")
    r = parse_logs([f])
    assert r.format == "mmseg1x-text" and r.iterations is None and r.train == []
    assert r.final == {"aAcc": 86.1, "mIoU": 45.92, "mAcc": 60.96}
    assert r.evaluations[0].iteration is None  # a test run belongs to no train iteration
    assert r.per_class == {"background": {"IoU": 88.92, "Acc": 93.04}}


def test_0x_test_script_tables_only(tmp_path):
    # mmseg 0.10 tools/test.py prints the tables but no Iter(val) line; the seed's
    # train_val_8p.sh reads mIoU from the "| global |" row
    f = tmp_path / "eval.log"
    f.write_text("2021-03-01 10:00:00,000 - mmseg - INFO - per class results:\n"
                 "| Class       | IoU   | Acc   |\n| background  | 93.91 | 97.12 |\n"
                 "2021-03-01 10:00:00,000 - mmseg - INFO - Summary:\n"
                 "| Scope  | mIoU  | mAcc  | aAcc  |\n| global | 77.04 | 86.52 | 94.71 |\n")
    r = parse_logs([f])
    assert r.final == {"aAcc": 94.71, "mIoU": 77.04, "mAcc": 86.52}
    assert r.sources["final"] == f"{f}:6"
    assert r.per_class == {"background": {"IoU": 93.91, "Acc": 97.12}}


def test_leading_blank_space_is_not_empty(tmp_path):
    f = tmp_path / "x.log"
    f.write_bytes(b"\n" * 20000 + ASCEND.read_bytes())
    assert parse_logs([f], devices=8).fps_seed_definition == pytest.approx(117.864)


# --- two runs in one file; impossible times (issue 13, item 15) ----------------------------

OWN_1X = Path(__file__).resolve().parent / "fixtures" / "logs" / "own_smoke_cpu_1p" / "20261125_202313"


def _first_train_line(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if "Iter [" in line or "Iter(train)" in line)


@pytest.mark.parametrize("source", [ASCEND, OWN_1X / "20261125_202313.log"], ids=["0x-text", "1x-text"])
def test_two_runs_appended_to_one_file_are_refused_naming_the_line(source, tmp_path):
    """A training script that appends (``>>``) its second run to the first's log: the iteration
    counter restarts. Merged silently, the two runs' windows replaced each other."""
    lines = lines_of(source)
    path = tmp_path / source.name
    path.write_text("\n".join(lines + lines) + "\n")
    restart = len(lines) + _first_train_line(lines) + 1  # 1-based line of the second run's first window
    with pytest.raises(LogParseError) as info:
        parse_logs(path)
    assert info.value.line == restart and "restart" in str(info.value), str(info.value)


def test_scalars_with_a_restarting_counter_are_refused(tmp_path):
    rows = (OWN_1X / "vis_data" / "scalars.json").read_text().splitlines()
    path = tmp_path / "scalars.json"
    path.write_text("\n".join(rows + rows) + "\n")
    with pytest.raises(LogParseError, match="restart"):
        parse_logs(path)


@pytest.mark.parametrize("value", ["-1.091", "0.000"])
def test_negative_or_zero_time_is_a_parse_error_naming_the_line(value, tmp_path):
    lines = lines_of(ASCEND)
    index = next(i for i, line in enumerate(lines) if "time: 1.091," in line)
    lines[index] = lines[index].replace("time: 1.091,", f"time: {value},")
    path = tmp_path / "train_0.log"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogParseError) as info:
        parse_logs(path)
    assert info.value.line == index + 1 and "time" in str(info.value)


def test_cli_refuses_a_negative_time_in_one_line(tmp_path):
    from support import run_cli

    lines = lines_of(ASCEND)
    index = next(i for i, line in enumerate(lines) if "time: 1.091," in line)
    lines[index] = lines[index].replace("time: 1.091,", "time: -1.091,")
    path = tmp_path / "train_0.log"
    path.write_text("\n".join(lines) + "\n")
    proc = run_cli("parse", str(path), "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and f"{path}:{index + 1}" in proc.stderr
