"""``harness parse``: the command module through a small argparse harness, and one real CLI run."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands import parse as parse_cmd

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "logs"
ASCEND = FIX / "mmseg010_ascend_pspnet_8p_train_0.log"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    sub = parser.add_subparsers(dest="command")
    parse_cmd.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_json_output(capsys):
    assert run(["parse", str(ASCEND), "--devices", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "mmseg0x-text"
    assert out["fps_seed_definition"] == pytest.approx(117.864)
    assert out["best"]["mIoU"] == 77.31 and out["final"]["mIoU"] == 77.04
    assert out["definitions"]["fps"].startswith("global images/s")
    assert out["sources"]["best"].endswith(":86")


def test_summary_output(capsys):
    assert run(["parse", str(ASCEND), "--devices", "8", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "mmseg0x-text" in out and "77.31" in out and "117.9" in out


def test_overrides_and_format(capsys):
    assert run(["parse", str(ASCEND), "--format", "mmseg0x-text", "--batch-size", "8",
                "--devices", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_per_device"] == 8 and out["devices"] == 2
    assert out["sources"]["batch_per_device"] == "argument"
    assert out["fps"] == pytest.approx(8 * 2 / 1.1804)


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary", b"garbage\n" * 10])
def test_errors_are_one_line(tmp_path, capsys, content):
    f = tmp_path / "bad.log"
    f.write_bytes(content)
    assert run(["parse", str(f)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness parse: error: {f}")
    assert "Traceback" not in cap.err


def test_truncated_input_is_a_warning_not_an_error(tmp_path, capsys):
    f = tmp_path / "t.log"
    f.write_bytes(ASCEND.read_bytes()[:-40])
    assert run(["parse", str(f), "--devices", "8"]) == 0
    assert "truncated" in capsys.readouterr().out


def test_bad_batch_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        run(["parse", str(ASCEND), "--batch-size", "0"])
    assert e.value.code == 2


def test_cli_subprocess(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "harness", "parse", str(ASCEND), "--devices", "8",
                         "--json"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["fps_seed_definition"] == pytest.approx(117.864)
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x00" * 100)
    err = subprocess.run([sys.executable, "-m", "harness", "parse", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert err.returncode == 2 and "Traceback" not in err.stderr
    assert err.stderr.strip() == f"harness parse: error: {bad}: binary file (NUL bytes), " \
                                 "not a text log"
