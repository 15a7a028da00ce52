"""A checkpoint that was not completely written is never left under its final name, and a resume
starts from the last complete one (issue 13, item 4; the harness's "disk full" status is separate)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import require_extra  # noqa: E402

torch = require_extra("torch", reason="the training stack is not installed")

from harness.worker.checkpoints import LAST_CHECKPOINT, install_atomic_local_backend, is_complete, pick_resume_checkpoint  # noqa: E402
from support import RECIPES  # noqa: E402


@contextmanager
def small_tmpfs(path: Path, size: str):
    """A real filesystem that fills up; needs root (mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _checkpoint(path: Path, iteration: int) -> Path:
    torch.save({"meta": {"iter": iteration}, "state_dict": {"w": torch.arange(1000.0)}}, path)
    return path


def test_mmengine_save_on_a_full_disk_leaves_nothing_under_the_final_name(tmp_path):
    from mmengine.runner.checkpoint import save_checkpoint

    install_atomic_local_backend()
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        big = {"state_dict": {"w": torch.zeros(1_000_000)}}  # 4 MB: cannot fit
        with pytest.raises(OSError) as info:
            save_checkpoint(big, str(disk / "iter_4.pth"))
        assert info.value.errno == errno.ENOSPC
        assert sorted(p.name for p in disk.iterdir()) == []  # no iter_4.pth, no temp file
        save_checkpoint({"state_dict": {"w": torch.zeros(10)}}, str(disk / "iter_2.pth"))
        assert is_complete(disk / "iter_2.pth")


def test_resume_skips_a_truncated_checkpoint_and_repoints_mmengine(tmp_path):
    good = _checkpoint(tmp_path / "iter_2.pth", 2)
    bad = _checkpoint(tmp_path / "iter_4.pth", 4)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # what a full disk once left
    (tmp_path / LAST_CHECKPOINT).write_text(str(bad))
    chosen, skipped = pick_resume_checkpoint(tmp_path)
    assert chosen == good and skipped == [bad]
    assert (tmp_path / LAST_CHECKPOINT).read_text() == str(good)
    from mmengine.runner.checkpoint import find_latest_checkpoint

    assert find_latest_checkpoint(str(tmp_path)) == str(good)


def test_resume_with_no_complete_checkpoint_starts_over(tmp_path):
    bad = _checkpoint(tmp_path / "iter_2.pth", 2)
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert pick_resume_checkpoint(tmp_path) == (None, [bad])


def test_a_newer_complete_checkpoint_than_the_pointer_wins(tmp_path):
    """Killed between writing iter_4.pth and updating the pointer: iter_4 is whole and newest."""
    _checkpoint(tmp_path / "iter_2.pth", 2)
    newest = _checkpoint(tmp_path / "iter_4.pth", 4)
    (tmp_path / LAST_CHECKPOINT).write_text(str(tmp_path / "iter_2.pth"))
    assert pick_resume_checkpoint(tmp_path)[0] == newest


# --- real training on a disk that fills up -----------------------------------------------------

def _job(run_dir: Path, devkit: Path, *, resume: bool, iterations: int):
    from harness.planning.configs import copy_config_files
    from harness.planning.plan import PlanInputs, build_plan
    from harness.planning.recipe import load_recipe

    loaded = load_recipe(RECIPES / "smoke_cpu.yaml", [f"train.iterations={iterations}", "train.checkpoint_interval=2",
                                                      "train.val_interval=1000", "train.log_interval=1",
                                                      "train.workers_per_device=0", "train.batch_per_device=2"])
    copy_config_files(loaded.config_path, loaded.path.parent, run_dir / "configs")
    inputs = PlanInputs(run_dir=str(run_dir), dataset_dir=str(devkit), config_name=loaded.config_path.name,
                        python=sys.executable, resume=resume)
    plan = build_plan(loaded.recipe, inputs, "local")
    plan.job.write(run_dir / "job.json")
    return plan


def _train(plan, run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **plan.launch.environment, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(list(plan.launch.argv), cwd=run_dir, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_full_disk_while_saving_then_resume_after_freeing_space(tmp_path):
    from harness.data.synth import SynthSpec, write_synthetic_voc

    devkit = write_synthetic_voc(tmp_path / "data", SynthSpec(seed=1, n_train=6, n_aug=2, n_val=2))
    with small_tmpfs(tmp_path / "disk", "400m") as disk:
        run_dir = disk / "run"
        run_dir.mkdir()
        plan = _job(run_dir, devkit, resume=False, iterations=2)
        first = _train(plan, run_dir)
        assert first.returncode == 0, first.stderr[-3000:]
        work_dir = run_dir / "work_dir"
        size = (work_dir / "iter_2.pth").stat().st_size
        # Fill the disk so that the next checkpoint cannot fit (but the log lines still can).
        free = shutil.disk_usage(disk).free
        filler = disk / "filler"
        with open(filler, "wb") as handle:
            handle.truncate(0)
            handle.write(b"\0" * max(0, free - size // 2))
        plan = _job(run_dir, devkit, resume=True, iterations=4)
        full = _train(plan, run_dir)
        assert full.returncode != 0
        assert "No space left on device" in full.stdout + full.stderr
        assert not (work_dir / "iter_4.pth").exists()  # never truncated under its final name
        assert not [p for p in work_dir.iterdir() if p.name.endswith(".tmp")]
        assert Path((work_dir / LAST_CHECKPOINT).read_text().strip()).name == "iter_2.pth"
        filler.unlink()  # free the space: the resume finishes from the last complete checkpoint
        again = _train(plan, run_dir)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resumed" in (again.stdout + again.stderr).lower()
        assert is_complete(work_dir / "iter_4.pth")
        assert torch.load(work_dir / "iter_4.pth", map_location="cpu", weights_only=False)["meta"]["iter"] == 4
