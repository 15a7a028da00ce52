"""``harness data prepare``: SBD ``cls/*.mat`` -> ``VOC2012/SegmentationClassAug/*.png`` + split lists.

Produces what mmseg 1.2.2's ``tools/dataset_converters/voc_aug.py`` produces: one mode-'L' PNG
per .mat with the same pixels, and ``trainaug.txt`` / ``aug.txt`` holding the same ids (sorted
here; mmseg writes them in set order). Unlike mmseg it runs in chunks over a process pool, skips
outputs that are already finished, writes every file atomically and reports bad input per file
instead of dying in a worker.

Like mmseg's script it does not copy ``SegmentationClass`` PNGs: mmseg's VOC12+aug configs read
``train.txt`` from ``SegmentationClass`` and ``aug.txt`` (= SBD - VOC train - VOC val) from
``SegmentationClassAug``.

"Finished" means: the PNG exists, is no older than its .mat, and is complete (PNG signature and
IEND trailer). Outputs only ever appear under their final name via ``os.replace`` of a finished
temp file, so an interrupted run leaves whole PNGs plus at most a hidden temp file per worker; a
PNG truncated by something else (a copy, another tool) fails the trailer test and is redone.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple, TextIO

import numpy as np

from harness.core.fileio import write_text_atomic
from harness.core.processes import pid_alive
from harness.data.layout import (AUG_LABELS, DEFAULT_SBD, VOC, DataError, default_workers, png_complete,
                                 read_ids, split_path)
from harness.data.matfile import MatError, read_segmentation
from harness.data.parallel import ProgressBar, parallel_map
from harness.data.png import encode_grey

# zlib level 1: ~3x faster than PIL's default 6 (mmseg's); labels come out ~2-3x larger (a few KB).
PNG_COMPRESS_LEVEL = 1
TEMP = re.compile(r"^\..+\.png\.(\d+)\.tmp$")
ANY_TEMP = re.compile(r"^\..+\.(\d+)\.tmp$")  # ``.<name>.<pid>.tmp`` of any file (prepare --archives)


@dataclass
class PrepareReport:
    converted: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class Result(NamedTuple):
    status: str  # "skipped" | "converted" | "error"
    message: str = ""
    stat: tuple[str, int, int] | None = None  # (file name, size, mtime_ns) of a new PNG
    sha256: str = ""


@dataclass(frozen=True)
class Sources:
    devkit: Path
    sbd: Path

    @property
    def cls_dir(self) -> Path:
        return self.sbd / "cls"

    @property
    def out_dir(self) -> Path:
        return self.devkit / AUG_LABELS


def locate_sources(devkit: Path, sbd: Path | None = None) -> Sources:
    """Check the inputs exist; ``sbd`` may name SBD's ``dataset`` folder or the folder holding it."""
    devkit = Path(devkit)
    root = Path(sbd) if sbd is not None else devkit / DEFAULT_SBD
    if not (root / "cls").is_dir() and (root / "dataset" / "cls").is_dir():
        root = root / "dataset"
    if not devkit.is_dir():
        raise DataError(f"{devkit}: no such folder (expected a VOCdevkit folder holding {VOC}/)")
    if not (devkit / VOC).is_dir():
        raise DataError(f"{devkit / VOC}: missing (expected VOCdevkit/{VOC} from VOCtrainval_11-May-2012.tar)")
    for name in ("train", "val"):
        if not split_path(devkit, name).is_file():
            raise DataError(f"{split_path(devkit, name)}: missing (VOC2012's own split list)")
    if not (root / "cls").is_dir():
        raise DataError(f"{root / 'cls'}: missing (expected SBD's benchmark_RELEASE/dataset at {root}; "
                        "pass --sbd PATH)")
    for name in ("train", "val"):
        if not (root / f"{name}.txt").is_file():
            raise DataError(f"{root / f'{name}.txt'}: missing (SBD's own split list)")
    return Sources(devkit, root)


def aug_splits(voc_train: list[str], voc_val: list[str], sbd_train: list[str], sbd_val: list[str]) -> dict:
    """mmseg's arithmetic: trainaug = VOC train + SBD - VOC val; aug = SBD - VOC train - VOC val."""
    sbd = set(sbd_train) | set(sbd_val)
    return {
        "trainaug": sorted((set(voc_train) | sbd) - set(voc_val)),
        "aug": sorted(sbd - set(voc_train) - set(voc_val)),
    }


def is_finished(mat: str, png: str) -> bool:
    try:
        if os.stat(png).st_mtime_ns < os.stat(mat).st_mtime_ns:
            return False
    except OSError:
        return False
    return png_complete(png)


def write_atomic(data: bytes, out: str) -> os.stat_result:
    """Create, write, rename: a reader never sees a partial PNG under its final name."""
    head, name = os.path.split(out)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:  # one write for a few-KB label, but a short write must not truncate it
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return st


def convert_one(mat: str, out: str, force: bool = False) -> Result:
    """One .mat -> one PNG. The new PNG's sha256 rides along so the manifest need not re-read it."""
    if not force and is_finished(mat, out):
        return Result("skipped")
    return convert_label(partial(read_segmentation, mat), mat, out)


def convert_label(read: Callable[[], np.ndarray], where: str, out: str) -> Result:
    """``read()`` the label (from a file or an archive member's bytes), encode it, write it atomically."""
    try:
        data = encode_grey(read(), PNG_COMPRESS_LEVEL)
        st = write_atomic(data, out)
    except MatError as exc:
        return Result("error", f"{where}: {exc}")
    except OSError as exc:
        return Result("error", f"{where}: {exc.strerror or exc}")
    name = os.path.basename(out)
    return Result("converted", stat=(name, st.st_size, st.st_mtime_ns), sha256=hashlib.sha256(data).hexdigest())


def _convert_chunk(jobs: list[tuple[str, str]], force: bool) -> list[Result]:
    return [convert_one(mat, out, force) for mat, out in jobs]


def conversion_jobs(sources: Sources) -> list[tuple[str, str]]:
    """(mat, png) path pairs as strings: pathlib's parsing was ~10% of the per-file cost."""
    names = sorted(e.name for e in os.scandir(sources.cls_dir) if e.name.endswith(".mat") and e.is_file())
    cls_dir, out_dir = str(sources.cls_dir), str(sources.out_dir)
    return [(os.path.join(cls_dir, n), os.path.join(out_dir, n[:-4] + ".png")) for n in names]


def remove_stale_temps(out_dir: Path, pattern: re.Pattern = TEMP) -> None:
    """Delete temp files left by prepare runs that died (their pid is gone); never a finished file."""
    for entry in os.scandir(out_dir):
        match = pattern.match(entry.name)
        if match and not pid_alive(int(match[1])):
            Path(entry.path).unlink(missing_ok=True)


def write_split(path: Path, ids: list[str]) -> None:
    text = "".join(f"{i}\n" for i in ids)
    if path.is_file() and path.read_text() == text:
        return  # unchanged: keep the mtime, so a cached manifest stays valid
    write_text_atomic(path, text)


def missing_mats(sources: Sources, sbd_ids: set[str], jobs: list[tuple[str, str]]) -> list[str]:
    have = {os.path.basename(mat)[:-4] for mat, _ in jobs}
    return [f"{sources.cls_dir / (i + '.mat')}: missing (id listed in {sources.sbd}/train.txt or val.txt)"
            for i in sorted(sbd_ids - have)]


def prepare_dataset(devkit: Path, sbd: Path | None = None, *, workers: int | None = None, force: bool = False,
                    stream: TextIO | None = sys.stderr, manifest: bool = True) -> PrepareReport:
    """Convert, write the split lists and (if all went well) the manifest. Raises DataError for
    missing inputs; per-file problems come back in the report, and nothing finished is removed."""
    sources = locate_sources(devkit, sbd)
    voc_train, voc_val = read_ids(split_path(devkit, "train")), read_ids(split_path(devkit, "val"))
    sbd_train, sbd_val = read_ids(sources.sbd / "train.txt"), read_ids(sources.sbd / "val.txt")
    sources.out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(sources.out_dir)

    report = PrepareReport()
    jobs = conversion_jobs(sources)
    if not jobs:
        raise DataError(f"{sources.cls_dir}: holds no .mat files (SBD's class masks)")
    bar = ProgressBar(len(jobs), "prepare", stream)
    work = partial(_convert_chunk, force=force)
    hashes = {}
    for result in parallel_map(work, jobs, workers or default_workers(), bar):
        if result.status == "error":
            report.problems.append(result.message)
            continue
        setattr(report, result.status, getattr(report, result.status) + 1)
        if result.stat:
            name, size, mtime_ns = result.stat
            hashes[(f"{AUG_LABELS}/{name}", size, mtime_ns)] = result.sha256
    bar.close()
    report.problems += missing_mats(sources, set(sbd_train) | set(sbd_val), jobs)
    if not report.ok:
        return report

    finish(devkit, report, (voc_train, voc_val), (sbd_train, sbd_val), hashes, manifest=manifest)
    return report


def finish(devkit: Path, report: PrepareReport, voc: tuple[list[str], list[str]], sbd: tuple[list[str], list[str]],
           hashes: dict, *, manifest: bool, sources: dict | None = None) -> None:
    """The split lists, then (last, so it only ever describes a finished dataset) the manifest."""
    splits = aug_splits(*voc, *sbd)
    for name, ids in splits.items():
        write_split(split_path(devkit, name), ids)
    report.splits = {"train": len(voc[0]), "val": len(voc[1]), **{k: len(v) for k, v in splits.items()}}
    if manifest:
        from harness.data.manifest import write_manifest

        report.manifest = write_manifest(devkit, known=hashes, sources=sources)
