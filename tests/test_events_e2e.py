"""A real smoke training writes the worker's event stream, and the events, the text log and
scalars.json say the same thing about every number."""
from __future__ import annotations

import json

import pytest

from harness.results.logs import parse_logs, recompute_numbers, result_numbers
from harness.results.logs.compliance import check_run
from harness.results.logs.events import FILE_NAME, read_events
from harness.store.runs import RunStore
from support import RECIPES, run_cli, require_extra

pytestmark = pytest.mark.slow
require_extra("mmseg", reason="the training stack (pip install -e '.[train]') is not installed")
require_extra("mlperf_logging", reason="mlperf-logging (a project dependency) is not installed")

ITERS, VAL, LOG = 60, 30, 10


def printed(value: float | None, spec: str) -> float | None:
    """What mmengine's LogProcessor prints for ``value`` (``num_digits`` = 4)."""
    return None if value is None else float(format(value, spec))


def test_events_agree_with_text_log_and_scalars(tmp_path, cache_env):
    results = tmp_path / "results"
    proc = run_cli(
        "run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--quiet", "--no-report",
        "--set", f"train.iterations={ITERS}", "--set", f"train.val_interval={VAL}",
        "--set", f"train.checkpoint_interval={ITERS}", env=cache_env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = RunStore(results).all()
    # `run` draws the plots of the run it records (even with --no-report: the report never draws)
    assert sorted(p.name for p in (run.path / "plots").glob("*.png")) == ["loss.png", "miou.png", "throughput.png"]
    [attempt] = [p for p in run.work_dir.iterdir() if p.is_dir()]
    stream = attempt / FILE_NAME
    [text_log] = list(attempt.glob("*.log"))
    scalars = attempt / "vis_data" / "scalars.json"
    assert stream.is_file() and scalars.is_file()

    # the stream itself: MLPerf-logging lines with the run's settings, closed with success
    events, warning = read_events(stream)
    assert warning is None
    keys = [e["key"] for _, e in events]
    assert keys[0] == "run_start" and keys[-1] == "run_stop"
    assert events[-1][1]["metadata"]["status"] == "success"
    # every line keeps its metadata (the MLPerf checker needs it), its source named inside the package
    assert {e["metadata"]["file"] for _, e in events} == {"harness/worker/events_hook.py"}
    by_key = {e["key"]: e for _, e in events}
    assert by_key["global_batch_size"]["value"] == 4 and by_key["world_size"]["value"] == 1
    assert by_key["opt_base_learning_rate"]["value"] == 0.05 and by_key["max_iters"]["value"] == ITERS
    assert by_key["train_samples"]["value"] == 128  # n_train + n_aug of the synthetic set
    assert isinstance(by_key["seed"]["value"], int)
    assert keys.count("train_window") == ITERS // LOG and keys.count("eval_accuracy") == ITERS // VAL
    # ... and it complies with the shipped ruleset under MLCommons' compliance checker
    assert check_run(run.work_dir) == (1, [])

    ev = parse_logs([stream], batch_per_device=4, devices=1)
    full = parse_logs([text_log, scalars], batch_per_device=4, devices=1)  # scalars: full precision
    text = parse_logs([text_log], batch_per_device=4, devices=1)  # the text alone: 4 digits printed
    assert ev.format == "harness-events" and ev.sources["numbers"] == "events"
    assert full.format == "mmseg1x-scalars+mmseg1x-text" and text.sources["numbers"] == "logs"

    # every window, every evaluation, every headline number: identical to scalars.json's values
    assert [p.iter for p in ev.train] == [p.iter for p in full.train] == list(range(LOG, ITERS + 1, LOG))
    for a, b in zip(ev.train, full.train, strict=True):
        assert (a.time, a.data_time, a.loss, a.lr, a.extra) == (b.time, b.data_time, b.loss, b.lr, b.extra), a.source
    assert [(e.iteration, e.aAcc, e.mIoU, e.mAcc) for e in ev.evaluations] == \
           [(e.iteration, e.aAcc, e.mIoU, e.mAcc) for e in full.evaluations]
    assert [e.iteration for e in ev.evaluations] == [VAL, ITERS]
    for name in ("iterations", "max_iters", "mean_iter_time_s", "fps", "fps_seed_definition", "final",
                 "best", "evaluations_count", "final_loss", "batch_per_device", "devices", "partial"):
        assert getattr(ev, name) == getattr(full, name), name
    assert ev.fps is not None and ev.final["mIoU"] is not None

    # ... and to the text log as mmengine printed them (time/data_time/loss .4f, lr .4e)
    for a, t in zip(ev.train, text.train, strict=True):
        assert a.iter == t.iter
        assert printed(a.time, ".4f") == t.time and printed(a.data_time, ".4f") == t.data_time
        assert printed(a.loss, ".4f") == t.loss and printed(a.lr, ".4e") == t.lr, t.source
    # (mmseg's metrics are float32 rounded to 2 decimals: 18.809999465942383 in the events and
    # scalars.json, ``18.8100`` in the text)
    for a, t in zip(ev.evaluations, text.evaluations, strict=True):
        assert a.iteration == t.iteration, t.source
        assert [printed(getattr(a, m), ".4f") for m in ("aAcc", "mIoU", "mAcc")] == [t.aAcc, t.mIoU, t.mAcc], t.source
    for group in ("final", "best"):
        assert {k: printed(v, ".4f") for k, v in getattr(ev, group).items()} == getattr(text, group), group
    assert (ev.iterations, ev.max_iters, ev.evaluations_count) == (text.iterations, text.max_iters, text.evaluations_count)
    assert printed(ev.final_loss, ".4f") == text.final_loss
    # the text's mean differs by at most the printing's rounding (half a unit in the 4th decimal)
    assert abs(ev.mean_iter_time_s - text.mean_iter_time_s) <= 5e-5 + 1e-12
    assert ev.fps == pytest.approx(text.fps, rel=5e-5 / text.mean_iter_time_s + 1e-12)

    # the run's result.json came from the events, says so, and keeps the text log's per-class table
    result = json.loads(run.result_file.read_text())
    assert result["sources"]["numbers"] == "events"
    assert result["log_format"] == "harness-events+mmseg1x-text"
    assert result["sources"]["final"].startswith(str(stream))
    assert result["per_class"] and result["per_class"] == text.per_class
    assert (result["fps"], result["final"], result["best"]) == (ev.fps, ev.final, ev.best)

    # what `harness verify` will do: the numbers recomputed from the stored logs match result.json
    assert recompute_numbers(run.path, batch_per_device=4, devices=1) == result_numbers(result)


def test_failed_run_closes_the_stream_as_aborted(tmp_path, cache_env):
    # load_from is read after mmengine's before_run: the stream is open when the run fails
    results = tmp_path / "results"
    proc = run_cli(
        "run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--quiet", "--no-report",
        "--set", "model.overrides.load_from=/nonexistent.pth", "--set", "train.iterations=20", env=cache_env,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    [run] = RunStore(results).all()
    [stream] = list(run.work_dir.glob(f"*/{FILE_NAME}"))
    events, _ = read_events(stream)
    assert events[-1][1]["key"] == "run_stop" and events[-1][1]["metadata"]["status"] == "aborted"
    assert "FileNotFoundError" in events[-1][1]["metadata"]["reason"]
    assert check_run(run.work_dir) == (1, [])  # an aborted run's stream complies too
    result = json.loads(run.result_file.read_text())
    assert result["sources"]["numbers"] == "events"
    assert any("run_stop status is 'aborted' (FileNotFoundError" in w for w in result["warnings"])
