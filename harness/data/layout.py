"""Where things live in a VOCdevkit folder, split-list reading and the error that means "bad input"."""
from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import BadInput
from harness.planning.recipe import data_home  # the recipe's @data-home: where the dataset lives by default

VOC = "VOC2012"
IMAGES = f"{VOC}/JPEGImages"
LABELS = f"{VOC}/SegmentationClass"
AUG_LABELS = f"{VOC}/SegmentationClassAug"
SPLITS = f"{VOC}/ImageSets/Segmentation"
DEFAULT_SBD = "VOCaug/dataset"

# The real VOC2012 + SBD numbers (mmseg's voc_aug.py asserts the trainaug one).
REAL_COUNTS = {"train": 1464, "val": 1449, "trainaug": 10582, "aug": 10582 - 1464}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def download_cache() -> Path:
    """Where `harness data fetch` keeps the archives: ``downloads/`` beside the data home."""
    return data_home().parent / "downloads"


def cache_dir() -> Path:
    return Path(os.environ.get("PSPNET_CACHE") or Path.home() / ".cache" / "pspnet-repro")


class DataError(BadInput):
    """Bad input (missing folder, unreadable file): ``str()`` is the one line shown; exit code 2."""


def split_path(devkit: Path, name: str) -> Path:
    return Path(devkit) / SPLITS / f"{name}.txt"


def read_ids(path: Path) -> list[str]:
    """Ids of a split file, in order; blank lines skipped (mmseg would turn them into an id '')."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except (OSError, UnicodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def split_problems(path: Path) -> list[tuple[str, str]]:
    """(kind, message) for lines of a split list that mmseg would misread: a blank line becomes the
    id '' (a crash on ``JPEGImages/.jpg`` mid-training), a repeated id silently oversamples it."""
    problems: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        sample = line.strip()
        if not sample:
            problems.append(("blank_line", f"{path}:{number}: blank line (mmseg reads it as the id '' and fails on "
                                           "JPEGImages/.jpg); remove it"))
        elif sample in first_line:
            problems.append(("duplicate_id", f"{path}:{number}: id {sample} repeats line {first_line[sample]}"))
        else:
            first_line[sample] = number
    return problems


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def png_complete(path: Path) -> bool:
    """True when ``path`` starts like a PNG and ends with the IEND chunk.

    A PNG cut short (a copy interrupted, another tool killed mid-write) fails this, and it costs
    two small reads, not a decode.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            handle.seek(-len(PNG_END), os.SEEK_END)
            tail = handle.read()
    except OSError:
        return False
    return head == PNG_SIGNATURE and tail == PNG_END


def rel(path: Path, devkit: Path) -> str:
    """``path`` relative to the devkit for messages, absolute when it lies elsewhere."""
    try:
        return str(Path(path).relative_to(devkit))
    except ValueError:
        return str(path)
