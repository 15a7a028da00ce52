"""The training progress display: a rich bar on a terminal, ``progress:`` lines on a pipe when quiet,
the log echoed unless quiet, and a closed pipe that never stops the run."""
from __future__ import annotations

import io

from harness.core.progress import Progress
from harness.data.parallel import ProgressBar

TRAIN = "2026/11/25 12:00:00 - mmengine - INFO - Iter(train) [{i:>3}/200]  lr: 1.0e-02  eta: 0:0{e}:00  time: 0.5  loss: 1.{i}"
VAL = "2026/11/25 12:00:00 - mmengine - INFO - Iter(val) [10/10]    aAcc: 90.0000  mIoU: 50.0000  mAcc: 60.0000"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class HungUp(Terminal):
    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def feed(progress: Progress) -> str:
    for i, e in ((50, 3), (100, 2)):
        progress.feed(TRAIN.format(i=i, e=e))
    progress.feed(VAL)
    progress.close()
    return progress.stream.stream.getvalue()


def test_quiet_on_a_pipe_prints_progress_and_evaluation_lines_only():
    out = feed(Progress(stream=io.StringIO(), quiet=True))
    assert out.splitlines() == [
        "progress: [#######.......................] 50/200 (25%) eta 0:03:00 loss 1.50",
        "progress: [###############...............] 100/200 (50%) eta 0:02:00 loss 1.100",
        "evaluation: aAcc 90.0000 mIoU 50.0000",
    ]


def test_on_a_pipe_the_log_is_echoed_without_a_bar():
    out = feed(Progress(stream=io.StringIO()))
    assert out.splitlines() == [TRAIN.format(i=50, e=3), TRAIN.format(i=100, e=2), VAL, "evaluation: aAcc 90.0000 mIoU 50.0000"]


def test_on_a_terminal_a_rich_bar_stays_below_the_log():
    out = feed(Progress(stream=Terminal()))
    assert TRAIN.format(i=100, e=2) in out and "100/200" in out and "eta 0:02:00 loss 1.100" in out
    assert "\x1b[" in out and "progress:" not in out and "[####" not in out
    assert out.rindex("evaluation: aAcc 90.0000") < out.rindex("100/200")  # the bar is drawn last


def test_a_hung_up_terminal_drops_the_output_and_the_run_goes_on():
    progress = Progress(stream=HungUp())
    progress.feed(TRAIN.format(i=50, e=3))
    progress.close()
    assert progress.stream.closed


def test_the_data_bar_writes_a_line_per_quarter_to_a_file_and_a_rich_bar_to_a_terminal():
    log = io.StringIO()
    bar = ProgressBar(8, "check", log)
    for _ in range(8):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "check: [###...........................] 1/8", "check: [#######.......................] 2/8",
        "check: [###############...............] 4/8",
        "check: [######################........] 6/8", "check: [##############################] 8/8"]
    term = Terminal()
    bar = ProgressBar(8, "check", term)
    bar.update(8)
    bar.close()
    assert "check:" in term.getvalue() and "8/8" in term.getvalue() and "\x1b[" in term.getvalue()
