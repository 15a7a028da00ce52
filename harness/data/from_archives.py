"""``harness data prepare --archives``: the dataset straight from VOCtrainval_11-May-2012.tar and
SBD's benchmark.tgz, without extracting them first.

Each archive is streamed once, front to back, through the bounded reader (``harness.core.untrusted``:
no absolute names, no ``..``, no links, sizes bounded before reading). From the VOC tar only the
files the dataset manifest tracks are written (``VOC2012/{JPEGImages,SegmentationClass,
ImageSets/Segmentation}/*``, the tar's ``VOCdevkit/`` prefix dropped), byte for byte with the tar's
mtimes, as ``tar x`` writes them; so the fingerprint equals extract-then-convert's. From SBD's
archive (``benchmark_RELEASE/dataset/``, which the folder layout calls ``VOCaug/dataset``) only
``cls/*.mat`` and the two split lists are read, and each .mat is converted in memory to its
``SegmentationClassAug`` PNG: SBD's images, instance masks and boundaries never touch the disk.

Every file appears under its final name by rename of a finished temp file, and a file already
there whole (a VOC file of the member's size and mtime, a complete PNG) is kept: a run that dies
is restarted and does only what is left. The split lists and the manifest come last.
"""
from __future__ import annotations

import hashlib
import os
import sys
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from harness.core.untrusted import ArchiveLimits, ArchiveMember, ArchiveRefused, iter_archive
from harness.data.layout import (AUG_LABELS, IMAGES, LABELS, SPLITS, DataError, default_workers, png_complete,
                                 read_ids, split_path)
from harness.data.matfile import segmentation_from_bytes
from harness.data.parallel import stream_map
from harness.data.prepare import ANY_TEMP, PrepareReport, convert_label, finish, remove_stale_temps

VOC_PREFIX = "VOCdevkit/"
SBD_PREFIX = "benchmark_RELEASE/dataset/"
VOC_KEPT = (IMAGES, LABELS, SPLITS)  # what the manifest tracks; SegmentationClassAug is made here
KINDS = {"VOCdevkit": "voc2012", "benchmark_RELEASE": "sbd"}  # an archive's top folder -> its kind
# The real archives: ~40k members, 2 GB (VOC) and ~35k members (SBD); labels and images are < 1 MB.
LIMITS = ArchiveLimits(max_members=200_000, max_member_bytes=64 << 20, max_total_bytes=8 << 30)
MAX_SPLIT_BYTES = 4 << 20
CHUNK = 32  # .mat files per pool task
PROGRESS_EVERY = 2000  # a line per this many files: the archives hold ~20k and ~11k that are used


@dataclass(frozen=True)
class ArchivePair:
    voc: Path
    sbd: Path


def archive_kind(path: Path) -> str:
    """'voc2012' or 'sbd', from the archive's top folder (the first member names it)."""
    with closing(iter_archive(path, LIMITS)) as members:  # closes the archive after one member
        for member in members:
            top = member.name.split("/", 1)[0]
            if top in KINDS:
                return KINDS[top]
            break
    raise DataError(f"{path}: neither VOCtrainval_11-May-2012.tar (VOCdevkit/...) nor SBD's benchmark.tgz "
                    "(benchmark_RELEASE/...)")


def find_archives(paths: list[Path], file_names: dict[str, str]) -> ArchivePair:
    """The two archives among ``paths``: files (told apart by their content) or folders holding
    them under their registry names (the fetch cache)."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for kind, name in file_names.items():
                if (path / name).is_file():
                    found.setdefault(kind, path / name)
        elif path.is_file():
            found[archive_kind(path)] = path
        else:
            raise DataError(f"{path}: no such file or folder (expected an archive or the fetch cache)")
    for kind, name in file_names.items():
        if kind not in found:
            raise DataError(f"{name}: not among {', '.join(map(str, paths))} (run `harness data fetch` or pass it)")
    return ArchivePair(found["voc2012"], found["sbd"])


def voc_target(name: str) -> str | None:
    """The devkit-relative path of a tracked VOC member, else None (``VOCdevkit/`` dropped; only
    files directly in a tracked folder, as the manifest lists them)."""
    if not name.startswith(VOC_PREFIX):
        return None
    relative = name[len(VOC_PREFIX):]
    folder, _, file = relative.rpartition("/")
    return relative if folder in VOC_KEPT and file and not file.startswith(".") else None


def _same_file(target: Path, member: ArchiveMember) -> bool:
    try:
        st = target.stat()
    except OSError:
        return False
    return st.st_size == member.size and int(st.st_mtime) == int(member.info.mtime)


def _write_member(member: ArchiveMember, target: Path) -> tuple[int, int, str]:
    """Write to a temp file beside ``target``, stamp the member's mtime, rename; (size, mtime_ns, sha256)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            left = member.size
            while left:
                chunk = member.stream.read(min(left, 1 << 20))
                if not chunk:
                    raise ArchiveRefused(f"member {member.name}: ends before its {member.size} bytes")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(chunk)
        finally:
            os.close(fd)
        mtime_ns = int(member.info.mtime) * 1_000_000_000
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return member.size, mtime_ns, digest.hexdigest()


def extract_voc(archive: Path, devkit: Path, stream: TextIO | None) -> tuple[int, int, dict]:
    """Write the tracked VOC files; returns (written, kept, sha256 by (path, size, mtime_ns))."""
    written = kept = 0
    hashes: dict = {}
    made: set[Path] = set()
    for member in iter_archive(archive, LIMITS):
        relative = None if member.is_dir else voc_target(member.name)
        if relative is None:
            continue
        target = devkit / relative
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target.parent, ANY_TEMP)
            made.add(target.parent)
        if _same_file(target, member):
            kept += 1
            continue
        size, mtime_ns, sha = _write_member(member, target)
        hashes[(relative, size, mtime_ns)] = sha
        written += 1
        if stream and written % PROGRESS_EVERY == 0:
            print(f"prepare: {archive.name}: {written} files written", file=stream, flush=True)
    if stream:
        print(f"prepare: {archive.name}: {written} files written, {kept} already there", file=stream, flush=True)
    return written, kept, hashes


def _convert_members(jobs: list[tuple[bytes, str, str]]) -> list:
    return [convert_label(partial(segmentation_from_bytes, data), where, out) for data, where, out in jobs]


def _split_ids(member: ArchiveMember, archive: Path) -> list[str]:
    if member.size > MAX_SPLIT_BYTES:
        raise ArchiveRefused(f"{archive}: member {member.name} holds {member.size} bytes, more than a split "
                             f"list may ({MAX_SPLIT_BYTES}); refused")
    try:
        text = member.stream.read(member.size).decode()
    except UnicodeError:
        raise DataError(f"{archive}: member {member.name}: not text") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def convert_sbd(archive: Path, devkit: Path, report: PrepareReport, *, workers: int, force: bool,
                stream: TextIO | None) -> tuple[dict[str, list[str]], set[str], dict]:
    """Convert every ``cls/*.mat`` member; returns SBD's split ids, the ids with a .mat and new PNGs' hashes."""
    out_dir = devkit / AUG_LABELS
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    splits: dict[str, list[str]] = {}
    have: set[str] = set()

    def jobs():
        batch = []
        for member in iter_archive(archive, LIMITS):
            if member.is_dir or not member.name.startswith(SBD_PREFIX):
                continue
            relative = member.name[len(SBD_PREFIX):]
            if relative in ("train.txt", "val.txt"):
                splits[relative[:-4]] = _split_ids(member, archive)
                continue
            folder, _, file = relative.rpartition("/")
            if folder != "cls" or not file.endswith(".mat"):
                continue
            have.add(file[:-4])
            out = out_dir / (file[:-4] + ".png")
            if not force and png_complete(out):
                report.skipped += 1
                continue
            batch.append((member.stream.read(member.size), f"{archive}:{member.name}", str(out)))
            if stream and len(have) % PROGRESS_EVERY == 0:
                print(f"prepare: {archive.name}: {len(have)} labels read", file=stream, flush=True)
            if len(batch) == CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch

    hashes = {}
    for result in stream_map(_convert_members, jobs(), workers):
        if result.status == "error":
            report.problems.append(result.message)
            continue
        report.converted += 1
        name, size, mtime_ns = result.stat
        hashes[(f"{AUG_LABELS}/{name}", size, mtime_ns)] = result.sha256
    for name in ("train", "val"):
        if name not in splits:
            raise DataError(f"{archive}: no member {SBD_PREFIX}{name}.txt (SBD's own split list)")
    if stream:
        print(f"prepare: {archive.name}: {report.converted} labels converted, {report.skipped} already there",
              file=stream, flush=True)
    return splits, have, hashes


def prepare_from_archives(devkit: Path, archives: ArchivePair, *, workers: int | None = None, force: bool = False,
                          stream: TextIO | None = sys.stderr, manifest: bool = True,
                          sources: dict | None = None) -> PrepareReport:
    """The whole dataset into ``devkit`` from the two archives (see the module docstring)."""
    devkit = Path(devkit)
    devkit.mkdir(parents=True, exist_ok=True)
    _, _, hashes = extract_voc(archives.voc, devkit, stream)
    voc = tuple(read_ids(split_path(devkit, name)) for name in ("train", "val"))
    report = PrepareReport()
    splits, have, label_hashes = convert_sbd(archives.sbd, devkit, report, workers=workers or default_workers(),
                                             force=force, stream=stream)
    wanted = set(splits["train"]) | set(splits["val"])
    report.problems += [f"{archives.sbd}: {SBD_PREFIX}cls/{i}.mat: missing (id listed in train.txt or val.txt)"
                        for i in sorted(wanted - have)]
    if report.ok:
        finish(devkit, report, voc, (splits["train"], splits["val"]), hashes | label_hashes,
               manifest=manifest, sources=sources)
    return report
