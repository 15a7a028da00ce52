"""The run store and the files the harness writes: unique folders under concurrency, atomic writes,
run ids that cannot leave results/, pre-flight checks."""
from __future__ import annotations

import json
import multiprocessing
import subprocess

import pytest

from harness.core import fileio
from harness.executors.preflight import disk_problems, gpu_busy_problems, npu_busy_problems
from harness.store.runs import RunStore, RunStoreError


def _create(args):
    results, name = args
    return RunStore(results).create(name).run_id


def test_concurrent_creates_get_distinct_folders(tmp_path):
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        ids = pool.map(_create, [(str(tmp_path), "smoke_cpu")] * 40)
    assert len(set(ids)) == 40
    assert len(list((tmp_path / "runs").iterdir())) == 40


def test_run_ids_cannot_escape(tmp_path):
    store = RunStore(tmp_path)
    for bad in ("..", "../x", "/etc", "20261125T000000Z-x-abcdef/../../..", "a" * 200):
        with pytest.raises(RunStoreError):
            store.get(bad)


def test_crash_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    fileio.write_json_atomic(path, {"mIoU": 68.62})

    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom()

    monkeypatch.setattr(fileio.os, "fsync", explode)  # dies after the data was written to the temp file
    with pytest.raises(Boom):
        fileio.write_json_atomic(path, {"mIoU": 0.0, "partial": "x" * 100000})
    assert json.loads(path.read_text()) == {"mIoU": 68.62}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_status_states_are_checked(tmp_path):
    run = RunStore(tmp_path).create("x")
    run.set_status("running", attempts=1)
    run.set_status("failed", exit_code=1, reason="training error")
    status = run.status().model_dump()
    assert status["state"] == "failed" and status["attempts"] == 1 and status["created"]
    with pytest.raises(ValueError):
        run.set_status("finished-ish")


def test_disk_preflight():
    assert disk_problems("/tmp", "cpu", free_bytes=50 * 1024**3) == []
    [problem] = disk_problems("/tmp/results", "npu", free_bytes=2 * 1024**3)
    assert "only 2.0 GB free" in problem and ">= 10 GB" in problem


def _completed(stdout="", returncode=0, stderr=""):
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


def test_gpu_busy_and_missing_from_nvidia_smi_output():
    # The two queries nvidia-smi answers on a host (what cannot run here is the tool, not the logic).
    outputs = {
        "--query-compute-apps=gpu_bus_id,pid": _completed("00000000:1B:00.0, 4242\n"),
        "--query-gpu=index,pci.bus_id": _completed("0, 00000000:1A:00.0\n1, 00000000:1B:00.0\n"),
    }
    problems = gpu_busy_problems((0, 1, 2), run=lambda argv: outputs[argv[1]], which=lambda name: "/usr/bin/nvidia-smi")
    assert problems == ["GPU 2: not present (nvidia-smi lists [0, 1])", "GPU 1: in use by process 4242"]
    assert gpu_busy_problems((0,), which=lambda name: None) == []


def test_npu_held_by_another_container():
    def run(argv):
        return _completed("", 1, "Error: dcmi get device info failed, ret = -8005\n") if argv[-1] == "3" else _completed("ok")

    problems = npu_busy_problems((2, 3), run=run, which=lambda name: "/usr/local/bin/npu-smi")
    assert problems == ["NPU 3: npu-smi failed (Error: dcmi get device info failed, ret = -8005); -8005 means another container holds it"]


def test_a_running_run_is_alive_exactly_while_its_lock_is_held(tmp_path):
    """Liveness is the run's lock, not a pid or host: a status naming another host or a pid that
    is alive again says nothing; the kernel drops the lock when its holder dies (SIGKILL)."""
    import os
    import signal
    import sys

    run = RunStore(tmp_path).create("x")
    run.set_status("running", pid=os.getpid(), host="another-host")
    assert run.effective_state() == "stale"  # nobody holds the lock, whatever the status says
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from harness.store.runs import RunDir; "
         "RunDir(Path(sys.argv[1])).lock(); print('locked', flush=True); time.sleep(60)", str(run.path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run.effective_state() == "running" and run.is_live()
        from harness.store.runs import RunBusy

        with pytest.raises(RunBusy, match="another harness process"):
            run.lock()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run.effective_state() == "stale"
    run.lock().release()  # free again: no stale lock survives its holder


def test_atomic_writes_respect_the_umask_like_train_log(tmp_path):
    """mkstemp makes 0600 files; shared results must be readable like the logs (0644 under umask 022)."""
    import subprocess
    import sys

    for umask in (0o022, 0o077, 0o002):
        path = tmp_path / f"file-{umask:o}.json"
        code = ("import os, sys; os.umask(int(sys.argv[2], 8)); from harness.core.fileio import write_json_atomic; "
                "write_json_atomic(sys.argv[1], {'a': 1})")
        subprocess.run([sys.executable, "-c", code, str(path), f"{umask:o}"], check=True)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (oct(path.stat().st_mode), oct(umask))
