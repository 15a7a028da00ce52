"""Time ``harness data prepare`` against mmseg's own ``voc_aug.py`` on the same SBD files.

Generates a synthetic VOC2012 + SBD set (``SynthSpec(sbd=True)``, 160x120 images, ~3000 .mat files),
makes two copies, runs each converter as a fresh process with the same number of processes
(mmseg: ``python voc_aug.py DEVKIT AUG_PATH --nproc N`` with only ``AUG_LEN`` set to the synthetic
count, see ``tests/mmseg_converter.py``; harness: ``python -m harness data prepare --voc DEVKIT
--workers N``, which also writes the manifest), starting from an empty SegmentationClassAug each
time, best of ``--repeats``. Then checks every PNG is pixel-identical with the same mode and the
split files hold the same ids, and prints harness/mmseg (goal: <= 0.5).

    python bench/bench_prepare.py [--mats 3000] [--nproc 2] [--repeats 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the mmseg converter reference lives with the tests

from harness.data.layout import AUG_LABELS, SPLITS  # noqa: E402
from harness.data.synth import SynthSpec, sbd_splits, write_synthetic_voc  # noqa: E402
from mmseg_converter import compare_label_dirs, read_id_set, run_mmseg_converter  # noqa: E402


def spec_for(mats: int) -> SynthSpec:
    # SBD covers 3/4 of train, all of aug and 1/2 of val (synth.sbd_splits): solve for ~`mats` files.
    n_aug = int(mats * 0.8)
    n_train = max(4, int((mats - n_aug) / 0.75 * 0.6))
    n_val = max(2, int((mats - n_aug - 0.75 * n_train) / 0.5))
    return SynthSpec(seed=1, n_train=n_train, n_aug=n_aug, n_val=n_val, sbd=True)


def create_latency_us(folder: Path, n: int = 200) -> float:
    probe = Path(tempfile.mkdtemp(prefix="create-probe-", dir=folder))
    start = time.perf_counter()
    for i in range(n):
        os.close(os.open(probe / f"{i}.png", os.O_WRONLY | os.O_CREAT, 0o644))
    elapsed = time.perf_counter() - start
    shutil.rmtree(probe)
    return elapsed / n * 1e6


def copy_devkit(source: Path, target: Path) -> Path:
    """A converter's private copy: hard links for the inputs, no SegmentationClassAug, no aug lists."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, copy_function=os.link,
                    ignore=shutil.ignore_patterns("SegmentationClassAug", "aug.txt", "trainaug.txt", "*.json"))
    return target


def reset(devkit: Path) -> None:
    shutil.rmtree(devkit / AUG_LABELS, ignore_errors=True)
    for name in ("aug.txt", "trainaug.txt"):
        (devkit / SPLITS / name).unlink(missing_ok=True)
    (devkit / "pspnet-repro-manifest.json").unlink(missing_ok=True)


def time_mmseg(devkit: Path, nproc: int, aug_len: int) -> float:
    reset(devkit)
    start = time.perf_counter()
    done = run_mmseg_converter(devkit, devkit / "VOCaug", nproc, aug_len)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"mmseg's converter failed:\n{done.stderr[-2000:]}")
    return elapsed


def time_harness(devkit: Path, nproc: int, resume: bool = False) -> float:
    if not resume:
        reset(devkit)
    command = [sys.executable, "-m", "harness", "data", "prepare", "--voc", str(devkit), "--workers", str(nproc)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"harness data prepare failed:\n{done.stderr[-2000:]}")
    return elapsed


def verify(mmseg: Path, harness: Path) -> None:
    problems = compare_label_dirs(mmseg / AUG_LABELS, harness / AUG_LABELS)
    for name in ("aug", "trainaug"):
        if read_id_set(mmseg / SPLITS / f"{name}.txt") != read_id_set(harness / SPLITS / f"{name}.txt"):
            problems.append(f"{name}.txt: different ids")
    if problems:
        sys.exit("outputs differ:\n  " + "\n  ".join(problems[:20]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mats", type=int, default=3000)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temp work folder (default: $TMPDIR)")
    parser.add_argument("--keep", type=Path, help="generate into / reuse this folder instead of a temp dir")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=args.dir))
    work.mkdir(parents=True, exist_ok=True)
    spec = spec_for(args.mats)
    start = time.perf_counter()
    source = write_synthetic_voc(work / "source", spec)
    sbd = sbd_splits(spec)
    n_mats = len(sbd["train"]) + len(sbd["val"])
    aug_len = spec.n_train + spec.n_aug
    print(f"dataset: {n_mats} .mat files {spec.width}x{spec.height} ({time.perf_counter() - start:.1f} s to generate)")
    mmseg, harness = copy_devkit(source, work / "mmseg"), copy_devkit(source, work / "harness")

    times_m, times_h = [], []
    for _ in range(args.repeats):  # alternate so drift in machine load hits both sides alike
        times_m.append(time_mmseg(mmseg, args.nproc, aug_len))
        times_h.append(time_harness(harness, args.nproc))
    verify(mmseg, harness)
    resumed = time_harness(harness, args.nproc, resume=True)
    best_m, best_h = min(times_m), min(times_h)
    print(f"mmseg voc_aug.py --nproc {args.nproc}: best {best_m:.2f} s of {', '.join(f'{t:.2f}' for t in times_m)}")
    print(f"harness data prepare --workers {args.nproc}: best {best_h:.2f} s of {', '.join(f'{t:.2f}' for t in times_h)}")
    print(f"harness re-run, all finished: {resumed:.2f} s")
    print(f"outputs: {n_mats} PNGs pixel-identical (same mode), aug/trainaug same ids")
    print(f"file creation on {work}: {create_latency_us(work):.0f} us per file (paid once per label by both sides)")
    print(f"ratio harness/mmseg: {best_h / best_m:.2f} (goal <= 0.5)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
