"""`harness ingest` of hostile foreign run folders and log folders (issue 17: S1, S2, L4, M5):
links out of the folder, /dev/zero, FIFOs, a 3 GB sparse log. Each is one line, exit 2, nothing
of it in the store, no secret copied, bounded memory, no hang."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support import REPO, run_measured

RUN_ID = "20261125T210711Z-smoke_cpu-206fec"
FIXTURE_RUN = REPO / "tests" / "fixtures" / "runs" / RUN_ID
ATTEMPT = "work_dir/20261125_210714"
MAX_PEAK_MIB = 512
SECRET = "root:$6$secret-hash-that-must-not-travel:19000:0:99999:7:::\n"


def _pvc(tmp_path: Path, *, keep_result: bool = True) -> tuple[Path, Path]:
    run = tmp_path / "pvc" / "runs" / RUN_ID
    shutil.copytree(FIXTURE_RUN, run)
    if not keep_result:
        (run / "result.json").unlink()
    return tmp_path / "pvc", run


def _secret(tmp_path: Path) -> Path:
    keys = tmp_path / "home" / ".ssh"
    keys.mkdir(parents=True)
    (keys / "id_rsa").write_text(SECRET)
    return keys


def _store_is_clean(store: Path) -> None:
    runs = store / "runs"
    assert not runs.exists() or not list(runs.iterdir()), list(runs.iterdir())
    for path in store.rglob("*") if store.exists() else []:
        assert not path.is_file() or "secret-hash" not in path.read_text(errors="replace"), path


def _one_line_exit_2(done, *names: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "[" not in done.stderr.split(":")[0]
    assert len(done.stderr) < 1000
    for name in names:
        assert name in done.stderr, done.stderr


def _hostile(tmp_path: Path, case: str) -> tuple[Path, str]:
    pvc, run = _pvc(tmp_path, keep_result=case != "sparse_log")
    keys = _secret(tmp_path)
    log = run / "train.log"
    if case == "log_link":  # S1
        log.unlink()
        log.symlink_to(keys / "id_rsa")
        return pvc, "train.log"
    if case == "dir_link":  # S1: a symlinked folder under work_dir/
        (run / ATTEMPT / "keys").symlink_to(keys)
        return pvc, "keys"
    if case == "dev_zero":  # S2
        log.unlink()
        log.symlink_to("/dev/zero")
        return pvc, "train.log"
    if case == "fifo":  # L4
        log.unlink()
        os.mkfifo(log)
        return pvc, "train.log"
    if case == "sparse_log":  # M5: no result.json, a 3 GB sparse log
        attempt_log = run / ATTEMPT / "20261125_210714.log"
        with open(attempt_log, "r+b") as handle:
            handle.truncate(3 << 30)
        return pvc, "20261125_210714.log"
    if case == "huge_record":  # a 300 MB status.json (sparse): refused before it is parsed
        with open(run / "status.json", "r+b") as handle:
            handle.seek(300 << 20)
            handle.write(b" ")
        return pvc, "status.json"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["log_link", "dir_link", "dev_zero", "fifo", "sparse_log", "huge_record"])
def test_a_hostile_run_folder_is_refused_in_one_line_and_nothing_is_stored(tmp_path: Path, case: str):
    pvc, name = _hostile(tmp_path, case)
    store = tmp_path / "results"
    done, peak_mib = run_measured("ingest", str(pvc), "--results", str(store), timeout=120)
    _one_line_exit_2(done, name)
    assert peak_mib < MAX_PEAK_MIB, peak_mib
    _store_is_clean(store)


def test_a_linked_log_in_a_log_folder_is_refused(tmp_path: Path):
    """The same for a plain mmseg work_dir (logs, not a run folder): a log that is a link out of
    the folder is not followed (here to a readable log elsewhere, which would import)."""
    work_dir = tmp_path / "work_dir" / "20261125_210714"
    shutil.copytree(FIXTURE_RUN / ATTEMPT, work_dir)
    elsewhere = tmp_path / "elsewhere.log"
    (work_dir / "20261125_210714.log").rename(elsewhere)
    (work_dir / "20261125_210714.log").symlink_to(elsewhere)
    store = tmp_path / "results"
    done, _ = run_measured("ingest", str(tmp_path / "work_dir"), "--results", str(store), timeout=120)
    _one_line_exit_2(done, "20261125_210714.log")
    assert "secret-hash" not in done.stderr + done.stdout
    _store_is_clean(store)


def test_a_run_whose_result_cannot_be_built_is_not_left_half_ingested(tmp_path: Path):
    """M5's second half: a log that passes the size bound but holds no text (NUL bytes): the
    run either comes in whole with a failed result, or not at all; a re-ingest still sees it."""
    pvc, run = _pvc(tmp_path, keep_result=False)
    for log in (run / ATTEMPT).glob("*.log"):
        with open(log, "r+b") as handle:
            handle.truncate(8 << 20)
            handle.seek(0)
            handle.write(b"\0" * 4096)
    (run / ATTEMPT / "vis_data" / "scalars.json").unlink()
    store = tmp_path / "results"
    done, peak_mib = run_measured("ingest", str(pvc), "--results", str(store), timeout=120)
    assert peak_mib < MAX_PEAK_MIB
    stored = store / "runs" / RUN_ID
    if done.returncode == 0:
        assert (stored / "result.json").is_file(), "a run stored without its result"
    else:
        _one_line_exit_2(done)
        assert not stored.exists() and not [p for p in (store / "runs").iterdir()]


def test_a_copy_left_by_a_killed_ingest_is_removed_by_the_next(tmp_path: Path):
    """M4 for run folders: the copy is made in the store (to be renamed into place) under a lock;
    one whose owner was SIGKILLed (no lock held) is swept by the next ingest."""
    store = tmp_path / "results"
    stale = store / "runs" / ".incoming-999999-deadbeef"
    (stale / RUN_ID).mkdir(parents=True)
    (stale / RUN_ID / "train.log").write_text("half a copy\n")
    (store / "runs" / ".incoming-999999-deadbeef.lock").write_text("")
    pvc, _ = _pvc(tmp_path)
    done, _ = run_measured("ingest", str(pvc), "--results", str(store), timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (store / "runs").iterdir()) == [RUN_ID]
