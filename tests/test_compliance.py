"""The event-stream ruleset under MLCommons' own compliance checker (issue 19 item 2), on the stream
of a real smoke run (tests/fixtures/logs/README.md) and on that stream tampered with."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest

from harness.results.logs import events as ev
from harness.results.logs.compliance import LAST_ATTEMPT_RULESET, RULESET, check_run, check_stream, ruleset_keys
from harness.results.logs.compliance.official import run_checker
from support import REPO, run_cli

pytest.importorskip("mlperf_logging", reason="mlperf-logging (a project dependency) is not installed")

RUN = REPO / "tests" / "fixtures" / "logs" / "own_events_smoke_cpu_1p"
[ATTEMPT] = [p for p in RUN.iterdir() if p.is_dir()]
STREAM = ATTEMPT / ev.FILE_NAME
LINES = STREAM.read_text().splitlines(keepends=True)


def index_of(key: str, last: bool = False) -> int:
    hits = [i for i, line in enumerate(LINES) if f'"key": "{key}"' in line]
    return hits[-1] if last else hits[0]


def edited(key: str, change, *, last: bool = False) -> list[str]:
    """The real stream with one event changed in place (``change`` edits the parsed event)."""
    lines = list(LINES)
    i = index_of(key, last)
    event = json.loads(lines[i][len(ev.PREFIX):])
    change(event)
    lines[i] = ev.PREFIX + json.dumps(event) + "\n"
    return lines


def checked(tmp_path: Path, lines: list[str], **kwargs) -> list[str]:
    path = tmp_path / ev.FILE_NAME
    path.write_text("".join(lines))
    return check_stream(path, name=ev.FILE_NAME, **kwargs)


def test_the_stream_of_a_real_run_complies_and_the_checker_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    assert check_stream(STREAM) == []
    assert check_run(RUN) == (1, [])
    assert list(tmp_path.iterdir()) == []  # no compliance_checker.log in the working directory
    assert (root.handlers, root.level) == (handlers, level)


def test_the_ruleset_names_every_key_the_worker_writes():
    written = {ev.RUN_START, ev.RUN_STOP, ev.TRAIN_WINDOW, ev.EVAL_ACCURACY, *ev._SETTINGS}
    assert ruleset_keys() == written
    assert RULESET.is_absolute() and LAST_ATTEMPT_RULESET.is_absolute()


@pytest.mark.parametrize(("key", "expected"), [
    ("global_batch_size", f"{ev.FILE_NAME}:8: train_window: rule settings-before-training failed"),
    ("seed", f"{ev.FILE_NAME}: seed: rule REQ EXACTLY_ONE failed: found 0"),
    ("run_start", f"{ev.FILE_NAME}: run_start: rule REQ EXACTLY_ONE failed: found 0"),
    ("run_stop", f"{ev.FILE_NAME}: run_stop: rule REQ EXACTLY_ONE failed: found 0 in the run's last attempt"),
])
def test_a_removed_key_fails_naming_the_rule(tmp_path, key, expected):
    lines = [line for i, line in enumerate(LINES) if i != index_of(key)]
    failures = checked(tmp_path, lines)
    assert any(line.startswith(expected) for line in failures), failures


@pytest.mark.parametrize(("first", "second", "expected"), [
    (("run_start", False), ("world_size", False), f"{ev.FILE_NAME}:1: world_size: rule after-run-start failed"),
    (("global_batch_size", False), ("train_window", False),
     f"{ev.FILE_NAME}:4: train_window: rule settings-before-training failed"),
    (("eval_accuracy", True), ("run_stop", False), f"{ev.FILE_NAME}:17: eval_accuracy: rule before-run-stop failed"),
    (("train_window", True), ("train_window", False), f"{ev.FILE_NAME}:10: train_window: rule window-iteration failed"),
])
def test_two_swapped_keys_fail_naming_the_rule(tmp_path, first, second, expected):
    lines = list(LINES)
    i, j = index_of(*first), index_of(*second)
    lines[i], lines[j] = lines[j], lines[i]
    failures = checked(tmp_path, lines)
    assert any(line.startswith(expected) for line in failures), failures


@pytest.mark.parametrize(("value", "got"), [(100.5, "100.5"), (-0.01, "-0.01"), (math.nan, "NaN"), ("18.8", '"18.8"')])
def test_an_accuracy_outside_0_to_100_fails_naming_the_rule(tmp_path, value, got):
    def change(event):
        event["value"] = event["metadata"]["scalars"]["mIoU"] = value

    failures = checked(tmp_path, edited("eval_accuracy", change, last=True))
    line = index_of("eval_accuracy", last=True) + 1
    assert failures == [f"{ev.FILE_NAME}:{line}: eval_accuracy: rule accuracy-range failed: the value (mIoU) is a "
                        f"percentage, 0-100; got {got}"] + (
        # NaN equals nothing, not even the scalars' NaN
        [f"{ev.FILE_NAME}:{line}: eval_accuracy: rule accuracy-scalars failed: metadata.scalars holds the "
         f"evaluation's tag, its mIoU equal to the value; got NaN"] if value != value else [])


def test_every_failing_rule_of_a_line_is_named_not_only_the_last(tmp_path):
    # the checker keeps one message per key; the harness records every one
    def change(event):
        event["metadata"]["scalars"].update(aAcc=101.0, mAcc=-1.0)

    failures = checked(tmp_path, edited("eval_accuracy", change, last=True))
    assert [f.split(": rule ")[1].split()[0] for f in failures] == ["aacc-range", "macc-range"]


def test_two_identical_run_start_lines_fail_because_warnings_are_errors(tmp_path):
    lines = [LINES[0], *LINES]
    failures = checked(tmp_path, lines)
    assert f"{ev.FILE_NAME}: run_start: rule REQ EXACTLY_ONE failed: found 2" in failures
    assert f"{ev.FILE_NAME}:2: run_start: rule run-start-once failed: a stream has one run_start" in failures

    # Without --werror the checker only warns about the REQ (equal values): it would pass a
    # ruleset that relied on REQ alone.
    from mlperf_logging.compliance_checker import mlp_compliance

    only_req = tmp_path / "only_req.yaml"
    only_req.write_text("- KEY:\n    NAME: run_start\n    REQ: EXACTLY_ONE\n")
    lenient = mlp_compliance.make_checker("training", "6.1.0", quiet=True, werror=False)
    assert lenient.check_file(str(tmp_path / ev.FILE_NAME), str(only_req)) is True
    assert run_checker(tmp_path / ev.FILE_NAME, [only_req], tmp_path / "log") != [[]]


def test_type_and_range_rules(tmp_path):
    cases = [
        ("world_size", lambda e: e.update(value=0), "world-size-type"),
        ("seed", lambda e: e.update(value=True), "seed-type"),
        ("global_batch_size", lambda e: e["metadata"].update(batch_per_device=3), "batch-size-product"),
        ("opt_base_learning_rate", lambda e: e.update(value=math.inf), "learning-rate-type"),
        ("start_iteration", lambda e: e.update(value=61), "start-iteration-range"),
        ("train_window", lambda e: e["value"].update(time=0), "window-time"),
        ("train_window", lambda e: e["value"].pop("time"), "window-time"),
        ("run_stop", lambda e: e["metadata"].update(status="done"), "stop-status"),
        ("run_start", lambda e: e["metadata"].update(mode="val"), "run-mode"),
    ]
    for key, change, rule in cases:
        failures = checked(tmp_path, edited(key, change))
        line = index_of(key) + 1
        assert any(f.startswith(f"{ev.FILE_NAME}:{line}: {key}: rule {rule} failed") for f in failures), (rule, failures)


def test_a_resumed_run_checks_every_attempt_and_only_the_last_must_stop(tmp_path):
    work_dir = tmp_path / "work_dir"
    first, second = work_dir / "20261201_100000", work_dir / "20261201_110000"
    shutil.copytree(ATTEMPT, first)
    shutil.copytree(ATTEMPT, second)
    killed = LINES[:index_of("train_window") + 3]  # killed after three windows: no run_stop
    (first / ev.FILE_NAME).write_text("".join(killed))
    assert check_run(work_dir) == (2, [])

    (second / ev.FILE_NAME).write_text("".join(killed))  # the last attempt died too
    count, failures = check_run(work_dir, name="work_dir")
    assert count == 2 and failures == [
        f"work_dir/{second.name}/{ev.FILE_NAME}: run_stop: rule REQ EXACTLY_ONE failed: found 0 in the run's last "
        "attempt (only a stream that a later attempt of the run follows may end without run_stop)"]

    (second / ev.FILE_NAME).write_text("".join(LINES))
    (first / ev.FILE_NAME).write_text("".join(edited("eval_accuracy", lambda e: e.update(value=200.0))))
    count, failures = check_run(work_dir, name="work_dir")  # the earlier attempt is checked too
    assert any(f.startswith(f"work_dir/{first.name}/{ev.FILE_NAME}:") and "accuracy-range" in f for f in failures)


def test_the_harness_parse_runs_first_so_the_checker_never_sees_a_bad_line(tmp_path):
    no_key = LINES[:3] + [':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "value": 1, '
                          '"metadata": {}}\n'] + LINES[3:]
    assert checked(tmp_path, no_key) == [f"{ev.FILE_NAME}:4: event lacks key (expected the keys namespace, time_ms, "
                                         "event_type, key, value, metadata)"]
    text_time = edited("seed", lambda e: e.update(time_ms="soon"))
    assert checked(tmp_path, text_time) == [f"{ev.FILE_NAME}:3: seed: time_ms is not a number"]
    unknown = edited("seed", lambda e: e.update(key="seed\x1b[2J"))
    assert checked(tmp_path, unknown) == [f'{ev.FILE_NAME}:3: key "seed\\u001b[2J" is not a key of the harness\'s '
                                          "event stream (the ruleset events.yaml names them all)"]
    assert check_stream(tmp_path / "absent.mllog", name="absent.mllog")[0].startswith("absent.mllog: ")


def test_strings_that_would_confuse_the_checker_are_data_only(tmp_path):
    # the checker cuts a line at its last ":::MLLOG "; a reason holding one is still one event
    def change(event):
        event["metadata"]["reason"] = 'x :::MLLOG {"key": "run_start"} ü'

    assert checked(tmp_path, edited("run_stop", change)) == []
    # a last line cut short (the run was killed mid-write) is not the checker's to read
    cut = LINES[:-1] + [LINES[-1][:40]]
    assert checked(tmp_path, cut, last_attempt=False) == []


def test_a_stream_over_the_size_bound_is_refused_unread(tmp_path, monkeypatch):
    import harness.results.logs.compliance as compliance

    monkeypatch.setattr(compliance, "MAX_STREAM_BYTES", 1024)
    [line] = checked(tmp_path, LINES)
    assert line.startswith(f"{ev.FILE_NAME}: {len(''.join(LINES).encode())} bytes, over the")


def test_events_check_command(tmp_path):
    ok = run_cli("events", "check", str(RUN), str(STREAM))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"PASS {RUN} (1 stream, ruleset harness/results/logs/compliance/events.yaml)",
                                      f"PASS {STREAM} (1 stream, ruleset harness/results/logs/compliance/events.yaml)"]
    bad = tmp_path / ev.FILE_NAME
    bad.write_text("".join(edited("eval_accuracy", lambda e: e.update(value=101.0))))
    failed = run_cli("events", "check", str(bad))
    assert failed.returncode == 1
    assert failed.stdout.startswith(f"FAIL {bad}: 2 failure(s)") and "rule accuracy-range failed" in failed.stdout
    missing = run_cli("events", "check", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"harness: error: {tmp_path / 'nothing'}: no such file or folder"
    empty = run_cli("events", "check", str(REPO / "tests" / "fixtures" / "runs"))
    assert empty.returncode == 2 and "holds no event stream" in empty.stderr


def test_a_test_run_stream_states_no_training(tmp_path):
    """What the hook writes for ``runner.test()`` (mode eval): run_start (mode test), world_size,
    seed, one test evaluation without an iteration, run_stop."""
    def as_test(event):
        if event["key"] == ev.RUN_START:
            event["metadata"]["mode"] = "test"
        if event["key"] == ev.EVAL_ACCURACY:
            event["metadata"].update(mode="test", iteration=None)
        return ev.PREFIX + json.dumps(event) + "\n"

    kept = (ev.RUN_START, ev.WORLD_SIZE, ev.SEED, ev.EVAL_ACCURACY, ev.RUN_STOP)
    events = [json.loads(line[len(ev.PREFIX):]) for line in LINES]
    test_run = [as_test(e) for i, e in enumerate(events)
                if e["key"] in kept and not (e["key"] == ev.EVAL_ACCURACY and i != index_of(ev.EVAL_ACCURACY, True))]
    assert checked(tmp_path, test_run) == []
    with_window = test_run[:3] + [LINES[index_of(ev.TRAIN_WINDOW)]] + test_run[3:]
    assert any(": train_window: rule training-window failed" in f for f in checked(tmp_path, with_window))
    with_setting = test_run[:3] + [LINES[index_of(ev.MAX_ITERS)]] + test_run[3:]
    assert any(": max_iters: rule training-setting failed" in f for f in checked(tmp_path, with_setting))
    no_accuracy = [line for line in test_run if f'"key": "{ev.EVAL_ACCURACY}"' not in line]
    assert checked(tmp_path, no_accuracy) == [f"{ev.FILE_NAME}: end of stream: rule test-accuracy failed: a test run "
                                              "that succeeded reported its accuracy"]
