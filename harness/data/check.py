"""``harness data check``: is a VOCdevkit folder a usable VOC2012(+aug) dataset?

Checks, per split list (train, val; aug and trainaug when present): every id has
``JPEGImages/<id>.jpg`` and a label (train/val: ``SegmentationClass``; aug: ``SegmentationClassAug``;
trainaug: ``SegmentationClassAug``, or ``SegmentationClass`` for VOC train ids, which is where mmseg's
configs read them); labels are complete single-channel PNGs ('L' or 'P') of the image's size with
values in 0..20 or 255; no val id leaks into a training list; and with ``expect="real"`` the real
counts (1464 train, 1449 val, 10582 trainaug, 9118 aug).

Cost: sizes come from the image and PNG headers (no pixel decode); label values need a full PNG
decode, ~1 ms per real label, about 10 s for the 12k real labels on 2 cores. ``quick=True`` skips that
decode and still catches missing, unreadable, truncated (no IEND), wrong-mode and wrong-size files,
but not wrong values. JPEG pixel data is never decoded: a JPEG with a valid header but damaged data
passes.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np

from harness.data.layout import (AUG_LABELS, IMAGES, LABELS, REAL_COUNTS, SPLITS, VOC, DataError,
                                 default_workers, png_complete, read_ids, split_path,
                                 split_problems)
from harness.data.parallel import ProgressBar, parallel_map

EXPECT = ("any", "real")
OPTIONAL_SPLITS = ("aug", "trainaug")
LABEL_MODES = ("L", "P")


@dataclass
class CheckReport:
    devkit: Path
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    kinds: Counter = field(default_factory=Counter)
    quick: bool = False

    def add(self, kind: str, message: str) -> None:
        self.ok = False
        self.kinds[kind] += 1
        self.problems.append(message)

    def summary(self) -> str:
        splits = ", ".join(f"{k} {self.counts[k]}" for k in ("train", "val", "aug", "trainaug") if k in self.counts)
        depth = "headers only (--quick)" if self.quick else "values decoded"
        if self.ok:
            return f"dataset OK: {self.devkit}: {splits}; {self.counts.get('pairs', 0)} image/label pairs checked, {depth}"
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.kinds.most_common())
        return f"dataset FAILED: {self.devkit}: {len(self.problems)} problem(s) ({kinds}); {splits or 'no splits read'}"


def check_dataset(devkit: Path, *, expect: str = "any", quick: bool = False, workers: int | None = None,
                  stream: TextIO | None = None) -> CheckReport:
    """Validate the dataset; never raises for dataset problems (they are in the report)."""
    if expect not in EXPECT:
        raise ValueError(f"expect must be one of {EXPECT}, got {expect!r}")
    devkit = Path(devkit)
    report = CheckReport(devkit=devkit, quick=quick)
    if not _check_layout(devkit, report):
        return report
    splits = _read_splits(devkit, report)
    if splits is None:
        return report
    report.counts.update({name: len(ids) for name, ids in splits.items()})
    _check_leaks(splits, report)
    if expect == "real":
        _check_real_counts(devkit, splits, report)
    pairs = _pairs(devkit, splits, report)
    report.counts["pairs"] = len(pairs)
    bar = ProgressBar(len(pairs), "check", stream) if stream else None
    inspect = partial(_inspect_chunk, quick=quick)
    for problems in parallel_map(inspect, sorted(pairs), workers or default_workers(), bar):
        for kind, message in problems:
            report.add(kind, message)
    if bar:
        bar.close()
    report.counts["problems"] = len(report.problems)
    return report


def _check_layout(devkit: Path, report: CheckReport) -> bool:
    if not devkit.is_dir():
        report.add("layout", f"{devkit}: no such folder (expected a VOCdevkit folder holding {VOC}/)")
        return False
    if not (devkit / VOC).is_dir():
        report.add("layout", f"{devkit / VOC}: missing folder (expected VOCdevkit/{VOC})")
        return False
    for folder in (IMAGES, SPLITS, LABELS):
        if not (devkit / folder).is_dir():
            report.add("layout", f"{devkit / folder}: missing folder")
    return report.ok


def _read_splits(devkit: Path, report: CheckReport) -> dict[str, list[str]] | None:
    splits = {}
    for name in ("train", "val", *OPTIONAL_SPLITS):
        path = split_path(devkit, name)
        if name in OPTIONAL_SPLITS and not path.exists():
            continue
        try:
            splits[name] = read_ids(path)
        except DataError as exc:
            report.add("layout", str(exc))
            continue
        for kind, message in split_problems(path):
            report.add(kind, message)
    return splits if not any(kind == "layout" for kind in report.kinds) else None


def _check_leaks(splits: dict[str, list[str]], report: CheckReport) -> None:
    val = set(splits["val"])
    for name in ("train", *OPTIONAL_SPLITS):
        shared = sorted(val & set(splits.get(name, ())))
        if shared:
            report.add("val_leak", f"{name}.txt shares {len(shared)} id(s) with val.txt (e.g. {', '.join(shared[:3])})")


def _check_real_counts(devkit: Path, splits: dict[str, list[str]], report: CheckReport) -> None:
    if "trainaug" not in splits:
        report.add("count", f"{split_path(devkit, 'trainaug')}: missing (run: harness data prepare --voc {devkit})")
    for name, expected in REAL_COUNTS.items():
        if name in splits and len(set(splits[name])) != expected:
            report.add("count", f"{split_path(devkit, name)}: {len(set(splits[name]))} ids, "
                                f"expected {expected} for the real VOC2012+aug set")


def _names(folder: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(folder) if not e.name.startswith(".")}
    except OSError:
        return set()


def _pairs(devkit: Path, splits: dict[str, list[str]], report: CheckReport) -> set[tuple[str, str]]:
    """The distinct (image, label) paths to inspect; missing files reported here, from directory listings."""
    images, labels, aug_labels = (_names(devkit / d) for d in (IMAGES, LABELS, AUG_LABELS))
    train = set(splits["train"])
    pairs: set[tuple[str, str]] = set()
    missing: set[str] = set()
    for name, ids in splits.items():
        for sample in ids:
            label_dir = _label_dir(name, sample, train, aug_labels)
            image = f"{sample}.jpg"
            have_label = f"{sample}.png" in (aug_labels if label_dir == AUG_LABELS else labels)
            for ok, path, kind in ((image in images, devkit / IMAGES / image, "missing_image"),
                                   (have_label, devkit / label_dir / f"{sample}.png", "missing_label")):
                if not ok and str(path) not in missing:
                    missing.add(str(path))
                    report.add(kind, f"{path}: missing (listed in {name}.txt)")
            if image in images and have_label:
                pairs.add((str(devkit / IMAGES / image), str(devkit / label_dir / f"{sample}.png")))
    return pairs


def _label_dir(split: str, sample: str, train: set[str], aug_labels: set[str]) -> str:
    if split in ("train", "val"):
        return LABELS
    if split == "trainaug" and sample in train and f"{sample}.png" not in aug_labels:
        return LABELS
    return AUG_LABELS


def _inspect_chunk(pairs: list[tuple[str, str]], quick: bool) -> list[list[tuple[str, str]]]:
    return [inspect_pair(image, label, quick) for image, label in pairs]


def inspect_pair(image: str, label: str, quick: bool = False) -> list[tuple[str, str]]:
    """(kind, message) problems of one image/label pair."""
    from PIL import Image

    try:
        with Image.open(image) as im:
            image_size = im.size
    except (OSError, SyntaxError, ValueError) as exc:
        return [("unreadable", f"{image}: unreadable image ({_one_line(exc)})")]
    if not png_complete(label):
        return [("unreadable", f"{label}: not a complete PNG (truncated or another format)")]
    try:
        with Image.open(label) as lb:
            if lb.mode not in LABEL_MODES:
                return [("bad_mode", f"{label}: mode {lb.mode!r}, expected a single-channel class-index PNG ('L' or 'P')")]
            if lb.size != image_size:
                return [("size_mismatch", f"{label}: {lb.size[0]}x{lb.size[1]}, but {Path(image).name} is "
                                          f"{image_size[0]}x{image_size[1]}")]
            return [] if quick else _value_problems(label, np.asarray(lb))
    except (OSError, SyntaxError, ValueError) as exc:
        return [("unreadable", f"{label}: unreadable PNG ({_one_line(exc)})")]


def _value_problems(label: str, values: np.ndarray) -> list[tuple[str, str]]:
    counts = np.bincount(values.ravel(), minlength=256)
    bad = np.flatnonzero(counts[21:255]) + 21
    if not len(bad):
        return []
    shown = ", ".join(f"{v} ({counts[v]} px)" for v in bad[:5].tolist())
    return [("bad_values", f"{label}: label values outside 0..20 and 255: {shown}")]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
