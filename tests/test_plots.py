"""Per-run plots: real fixtures in, valid PNGs of a readable size out; missing data is skipped."""
from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from harness.report.plots import DPI, FIGSIZE, write_run_plots
from harness.results.logs import parse_logs

HERE = Path(__file__).resolve().parent
SMOKE = HERE / "fixtures" / "logs" / "own_smoke_cpu_1p"
SEED = HERE / "fixtures" / "logs" / "mmseg010_ascend_pspnet_8p_train_0.log"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result_like(paths, batch: int, devices: int, kind: str, reference: dict | None = None) -> dict:
    """What harness.results.run_result.build_result stores, from a parse of real logs."""
    data = parse_logs(paths, batch_per_device=batch, devices=devices).to_dict()
    return {
        "run_id": "20261125T202313Z-test-abc123", "recipe": "test",
        "device": {"kind": kind, "count": devices}, "batch_per_device": batch,
        "reference": reference or {"label": "ref", "source": "test", "mIoU": None},
        "fps": data["fps"], "fps_seed_definition": data["fps_seed_definition"],
        "max_iters": data["max_iters"],
        "train": [{k: p[k] for k in ("iter", "lr", "time", "data_time", "loss")} for p in data["train"]],
        "evaluations": [{k: e[k] for k in ("iteration", "aAcc", "mIoU", "mAcc", "source")}
                        for e in data["evaluations"]],
    }


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_smoke_run_plots(tmp_path):
    result = result_like([SMOKE], 4, 1, "cpu", {"label": "CPU floor", "source": "t", "mIoU": 50.0})
    paths = write_run_plots(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["loss.png", "miou.png", "throughput.png"]
    for path in paths:
        width, height = png_size(path)
        assert (width, height) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))  # 770 x 440
        assert path.stat().st_size > 10_000  # drawn, not blank
    # atomic writes leave no temp files behind; the stamp says what result the plots show
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [".plots.json", "loss.png", "miou.png", "throughput.png"]


def test_seed_log_plots_and_rewrite(tmp_path):
    result = result_like([SEED], 16, 8, "npu", {"label": "NPU-8p", "source": "t", "mIoU": 77.04, "fps": 117.808})
    assert result["fps_seed_definition"] == pytest.approx(117.864)
    first = write_run_plots(result, tmp_path)
    assert len(first) == 3
    again = write_run_plots(result, tmp_path)  # rewriting over existing files works
    assert again == first and all(png_size(p) for p in again)


def test_missing_data_gives_fewer_plots(tmp_path):
    result = result_like([SMOKE], 4, 1, "cpu")
    no_evals = {**result, "evaluations": []}
    assert [p.name for p in write_run_plots(no_evals, tmp_path / "a")] == ["loss.png", "throughput.png"]
    no_batch = {**result, "batch_per_device": None}
    assert [p.name for p in write_run_plots(no_batch, tmp_path / "b")] == ["loss.png", "miou.png"]
    no_device = {**result, "device": None}
    assert "throughput.png" not in [p.name for p in write_run_plots(no_device, tmp_path / "c")]
    assert write_run_plots({}, tmp_path / "d") == []
    assert write_run_plots({"train": None, "evaluations": None, "device": {}}, tmp_path / "e") == []
    assert write_run_plots(None, tmp_path / "f") == []  # type: ignore[arg-type]


def test_none_and_nan_values_never_crash(tmp_path):
    nan = math.nan
    result = {
        "device": {"kind": "gpu", "count": 2}, "batch_per_device": 4,
        "fps": nan, "fps_seed_definition": None, "max_iters": None,
        "reference": {"mIoU": nan},
        "train": [
            {"iter": 10, "time": nan, "loss": nan},
            {"iter": 20, "time": 0.0, "loss": None},
            {"iter": 30, "time": 0.5, "loss": 1.5},
            {"iter": None, "time": 0.4, "loss": 1.2},
            {"iter": 40, "time": float("inf"), "loss": "oops"},
            "not a row",
        ],
        "evaluations": [{"iteration": None, "mIoU": 50.0}, {"iteration": 30, "aAcc": nan, "mIoU": 40.0, "mAcc": None}],
    }
    paths = write_run_plots(result, tmp_path)
    assert [p.name for p in paths] == ["loss.png", "miou.png", "throughput.png"]
    all_nan = {**result, "train": [{"iter": 10, "time": nan, "loss": nan}], "evaluations": [{"iteration": 5, "mIoU": nan}]}
    assert write_run_plots(all_nan, tmp_path) == []
    # a plot whose data went away is not left behind from the earlier call
    assert list(tmp_path.glob("*.png")) == []


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.png"))}


def test_unchanged_result_is_not_redrawn(tmp_path):
    """`harness report` runs after every run and redrew every run's plots (60 runs: +17 s)."""
    import time

    result = result_like([SMOKE], 4, 1, "cpu")
    first = write_run_plots(result, tmp_path)
    before = _stamps(tmp_path)
    time.sleep(0.01)
    started = time.monotonic()
    again = write_run_plots(dict(result), tmp_path)  # an equal result, read again from result.json
    assert time.monotonic() - started < 0.5
    assert again == first and _stamps(tmp_path) == before


def test_changed_or_missing_plots_are_redrawn(tmp_path):
    result = result_like([SMOKE], 4, 1, "cpu")
    write_run_plots(result, tmp_path)
    before = _stamps(tmp_path)
    changed = {**result, "train": result["train"][:-1]}  # a resumed run's result grows or changes
    write_run_plots(changed, tmp_path)
    after = _stamps(tmp_path)
    assert all(after[name] != before[name] for name in ("loss.png", "throughput.png"))
    (tmp_path / "loss.png").unlink()
    write_run_plots(changed, tmp_path)
    assert (tmp_path / "loss.png").is_file()


def test_plots_are_readable_like_the_logs(tmp_path):
    import os

    write_run_plots(result_like([SMOKE], 4, 1, "cpu"), tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.glob("*.png")} == {oct(0o666 & ~umask)}


def test_report_draws_no_plots_and_says_how_to_draw_the_missing_ones(tmp_path):
    """Plots are drawn by the commands that record a run; a run folder stored without them (an
    older harness's) is named in the report with the command that draws them."""
    import sys

    from support import run_cli

    sys.path.insert(0, str(HERE))
    from test_records import example_store

    [run] = example_store(tmp_path, "smoke_cpu")  # copied without its plots
    proc = run_cli("report", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not (run.path / "plots").exists()
    text = (tmp_path / "README.md").read_text()
    assert f"missing (`harness plots {run.run_id}`)" in text
    assert "1 run(s) have no plots" in text and "`harness plots --missing`" in text

    proc = run_cli("plots", "--missing", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (run.path / "plots").glob("*.png")) == ["loss.png", "miou.png", "throughput.png"]
    run_cli("report", "--results", str(tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert f"[loss](runs/{run.run_id}/plots/loss.png)" in text and "harness plots" not in text


def test_plots_of_named_runs_and_a_bad_id(tmp_path):
    import sys

    from support import run_cli

    sys.path.insert(0, str(HERE))
    from test_records import example_store

    first, second = example_store(tmp_path, "smoke_cpu", "smoke_cpu")
    proc = run_cli("plots", second.run_id, "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (second.path / "plots" / "loss.png").is_file() and not (first.path / "plots").exists()
    assert f"{second.run_id}: 3 plot(s)" in proc.stdout
    proc = run_cli("plots", "20261125T000000Z-nope-000000", "--results", str(tmp_path))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "no such run" in proc.stderr, proc.stderr
