"""The worker's event stream parser, on the stream of a real smoke run (tests/fixtures/logs/README.md)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.logs import LogParseError, parse_logs, recompute_numbers, result_numbers
from harness.results.logs.events import FILE_NAME

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tests" / "fixtures" / "logs" / "own_events_smoke_cpu_1p"
[ATTEMPT] = [p for p in RUN.iterdir() if p.is_dir()]
STREAM = ATTEMPT / FILE_NAME
[TEXT] = list(ATTEMPT.glob("*.log"))
SCALARS = ATTEMPT / "vis_data" / "scalars.json"


def test_stream_of_a_real_run():
    got = parse_logs(STREAM)
    assert got.format == "harness-events" and got.sources["numbers"] == "events"
    assert [p.iter for p in got.train] == [10, 20, 30, 40, 50, 60]
    assert [e.iteration for e in got.evaluations] == [30, 60]
    # batch and world size come from the stream itself: fps needs no arguments
    assert (got.batch_per_device, got.devices, got.max_iters, got.iterations) == (4, 1, 60, 60)
    assert got.fps == pytest.approx(4 / got.mean_iter_time_s)
    assert got.metadata["events"]["run_status"] == "success"
    assert got.metadata["events"]["train_samples"] == 128
    assert not got.partial and not got.warnings
    assert got.sources["final"] == f"{STREAM}:{_line_of('eval_accuracy', last=True)}"


def _line_of(key: str, last: bool = False) -> int:
    hits = [n for n, line in enumerate(STREAM.read_text().splitlines(), 1) if f'"key": "{key}"' in line]
    return hits[-1] if last else hits[0]


def test_stream_agrees_with_scalars_and_text():
    ev = parse_logs(STREAM, batch_per_device=4, devices=1)
    full = parse_logs([TEXT, SCALARS], batch_per_device=4, devices=1)
    assert [(p.iter, p.time, p.data_time, p.loss, p.lr) for p in ev.train] == \
           [(p.iter, p.time, p.data_time, p.loss, p.lr) for p in full.train]
    assert (ev.fps, ev.mean_iter_time_s, ev.final, ev.best, ev.final_loss) == \
           (full.fps, full.mean_iter_time_s, full.final, full.best, full.final_loss)


def test_run_folder_prefers_events_and_keeps_per_class_from_text(tmp_path):
    got = parse_logs(RUN)
    assert got.format == "harness-events+mmseg1x-text" and got.sources["numbers"] == "events"
    assert got.per_class and got.per_class == parse_logs(TEXT).per_class
    assert str(SCALARS) not in got.files


def test_folder_without_events_reads_the_logs(tmp_path):
    folder = tmp_path / "work_dir" / ATTEMPT.name
    shutil.copytree(ATTEMPT, folder, ignore=shutil.ignore_patterns(FILE_NAME))
    got = parse_logs(tmp_path / "work_dir")
    assert got.sources["numbers"] == "logs" and got.format == "mmseg1x-scalars+mmseg1x-text"


def test_resumed_run_with_one_attempt_lacking_events_reads_logs_for_all(tmp_path):
    work = tmp_path / "work_dir"
    shutil.copytree(ATTEMPT, work / "20990101_000000")
    shutil.copytree(ATTEMPT, work / "20990101_000001", ignore=shutil.ignore_patterns(FILE_NAME))
    assert parse_logs(work).sources["numbers"] == "logs"
    shutil.copy(STREAM, work / "20990101_000001" / FILE_NAME)
    assert parse_logs(work).sources["numbers"] == "events"


def test_recompute_numbers_names_every_number():
    numbers = recompute_numbers(RUN)
    parsed = parse_logs(RUN).to_dict()
    assert numbers == result_numbers(parsed)
    assert numbers["final.mIoU"] == parsed["final"]["mIoU"] and numbers["fps"] == parsed["fps"]
    assert numbers["train[60].loss"] == parsed["train"][-1]["loss"]
    assert numbers["evaluations[0].iteration"] == 30


# --- bad input: one line naming file:line -------------------------------------------------

def _stream_with(tmp_path, edit) -> Path:
    lines = STREAM.read_text().splitlines(keepends=True)
    path = tmp_path / FILE_NAME
    path.write_text("".join(edit(lines)))
    return path


def _error(path: Path) -> str:
    with pytest.raises(LogParseError) as exc:
        parse_logs(path)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_truncated_line_in_the_middle_is_an_error(tmp_path):
    path = _stream_with(tmp_path, lambda ls: ls[:5] + [ls[5][:40] + "\n"] + ls[6:])
    assert _error(path).startswith(f"{path}:6: invalid JSON in event")


def test_non_json_line_is_an_error(tmp_path):
    path = _stream_with(tmp_path, lambda ls: ls[:3] + [":::MLLOG not json at all\n"] + ls[3:])
    assert _error(path).startswith(f"{path}:4: invalid JSON in event")


def test_foreign_line_is_an_error(tmp_path):
    path = _stream_with(tmp_path, lambda ls: ls[:2] + ["Traceback (most recent call last):\n"] + ls[2:])
    assert _error(path) == f"{path}:3: not an event line (expected it to start with ':::MLLOG')"


def test_event_missing_keys_is_an_error(tmp_path):
    path = _stream_with(tmp_path, lambda ls: ls + [':::MLLOG {"key": "run_stop"}\n'])
    assert "lacks namespace, time_ms, event_type, value, metadata" in _error(path)


def test_window_without_iteration_is_an_error(tmp_path):
    def drop_iteration(lines):
        i = next(n for n, line in enumerate(lines) if '"train_window"' in line)
        return lines[:i] + [lines[i].replace('"iteration": ', '"it": ')] + lines[i + 1:]

    path = _stream_with(tmp_path, drop_iteration)
    assert "train_window event without an integer metadata.iteration" in _error(path)


def test_killed_run_last_line_cut_short_is_partial_not_an_error(tmp_path):
    # A killed worker can leave half a line without a line end; the events before it count.
    path = _stream_with(tmp_path, lambda ls: [line for line in ls if '"run_stop"' not in line][:-1] + [ls[-2][:30]])
    got = parse_logs(path)
    assert got.partial
    assert any("last line has no line end" in w for w in got.warnings)
    assert any("no run_stop event" in w for w in got.warnings)


def test_not_a_harness_stream(tmp_path):
    path = _stream_with(tmp_path, lambda ls: [line for line in ls if '"run_start"' not in line])
    assert "no run_start event" in _error(path)


def test_cli_bad_stream_exit_2_one_line(tmp_path):
    path = _stream_with(tmp_path, lambda ls: ls[:3] + ["garbage\n"] + ls[3:])
    proc = subprocess.run([sys.executable, "-m", "harness", "parse", str(path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and f"{path}:4:" in proc.stderr
    assert "Traceback" not in proc.stderr
