"""The dataset manifest and fingerprint that every run records.

``VOCdevkit/pspnet-repro-manifest.json`` lists every file under ``VOC2012/{JPEGImages,
SegmentationClass, SegmentationClassAug, ImageSets/Segmentation}`` (hidden temp files excluded)
with its size, mtime and sha256, the split counts, and the fingerprint:

    sha256( "".join(f"{path}\\t{sha256}\\n" for path, sha256 in sorted(files)) )

with ``path`` relative to the devkit, '/'-separated. Sizes and mtimes are not part of it, so a
copy of the dataset elsewhere has the same fingerprint.

Hashing the real set (~2.5 GB) takes seconds, so a manifest is reused while every listed file
still has its recorded size and mtime, and a rewrite re-hashes only the files whose size or mtime
changed. That trusts mtimes, as make does: a file edited in place with its mtime put back would
go unnoticed (``write_manifest(devkit, rehash=True)`` recomputes everything).

When the dataset folder is read-only the manifest goes to ``$PSPNET_CACHE/manifests/`` (default
``~/.cache/pspnet-repro/manifests/``) under a name derived from the folder's absolute path.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from harness.core.fileio import file_digest, write_text_atomic
from harness.data.layout import (AUG_LABELS, IMAGES, LABELS, SPLITS, DataError, cache_dir, default_workers,
                                 read_ids, split_path)

MANIFEST_NAME = "pspnet-repro-manifest.json"
MANIFEST_FORMAT = 1
TRACKED = (IMAGES, LABELS, AUG_LABELS, SPLITS)
SPLIT_NAMES = ("train", "val", "aug", "trainaug")
READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}

Stat = tuple[str, int, int]  # (relative path, size, mtime_ns)


def cache_manifest_path(devkit: Path) -> Path:
    key = hashlib.sha256(str(Path(devkit).resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "manifests" / f"{Path(devkit).resolve().name}-{key}.json"


def manifest_locations(devkit: Path) -> list[Path]:
    return [Path(devkit) / MANIFEST_NAME, cache_manifest_path(devkit)]


def scan(devkit: Path) -> list[Stat]:
    """The tracked files with their sizes and mtimes, sorted by path."""
    devkit = Path(devkit)
    stats: list[Stat] = []
    for folder in TRACKED:
        if not (devkit / folder).is_dir():
            continue
        with os.scandir(devkit / folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                st = entry.stat()
                stats.append((f"{folder}/{entry.name}", st.st_size, st.st_mtime_ns))
    return sorted(stats)


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def fingerprint_of(entries: list[dict]) -> str:
    digest = hashlib.sha256()
    for path, sha in sorted((e["path"], e["sha256"]) for e in entries):
        digest.update(f"{path}\t{sha}\n".encode())
    return digest.hexdigest()


def split_counts(devkit: Path) -> dict[str, int]:
    return {name: len(read_ids(split_path(devkit, name)))
            for name in SPLIT_NAMES if split_path(devkit, name).is_file()}


def load_manifest(devkit: Path, stats: list[Stat] | None = None) -> dict | None:
    """A stored manifest whose file list still matches ``stats`` (by path, size and mtime), else None."""
    stats = scan(devkit) if stats is None else stats
    for location in manifest_locations(devkit):
        manifest = _read_json(location)
        if manifest and manifest.get("format") == MANIFEST_FORMAT and _stats_of(manifest) == stats:
            return manifest
    return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stats_of(manifest: dict) -> list[Stat]:
    try:
        return [(f["path"], f["size"], f["mtime_ns"]) for f in manifest["files"]]
    except (KeyError, TypeError):
        return []


def _known_hashes(devkit: Path) -> dict[Stat, str]:
    """sha256 by (path, size, mtime) from any stored manifest, so unchanged files are not re-read."""
    known: dict[Stat, str] = {}
    for location in manifest_locations(devkit):
        manifest = _read_json(location) or {}
        if manifest.get("format") != MANIFEST_FORMAT:
            continue
        for f in manifest.get("files", []):
            try:
                known[(f["path"], f["size"], f["mtime_ns"])] = f["sha256"]
            except (KeyError, TypeError):
                continue
    return known


def stored_sources(devkit: Path) -> dict | None:
    """Where the dataset came from (registry and archives), as the last manifest recorded it."""
    for location in manifest_locations(devkit):
        sources = (_read_json(location) or {}).get("sources")
        if isinstance(sources, dict):
            return sources
    return None


def build_manifest(devkit: Path, *, rehash: bool = False, workers: int | None = None,
                   known: dict[Stat, str] | None = None, sources: dict | None = None) -> dict:
    """``known``: sha256 by (path, size, mtime_ns) the caller already has (prepare hashes what it writes).
    ``sources``: the registry and archives the dataset was prepared from; kept from the stored
    manifest when not given (a later `data check` does not forget them)."""
    devkit = Path(devkit)
    sources = sources if sources is not None else stored_sources(devkit)
    stats = scan(devkit)
    known = ({} if rehash else _known_hashes(devkit)) | (known or {})
    todo = [s for s in stats if s not in known]
    # Threads suffice: hashlib and file reads release the GIL.
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        fresh = dict(zip(todo, pool.map(lambda s: sha256_file(devkit / s[0]), todo)))
    files = [{"path": s[0], "size": s[1], "mtime_ns": s[2], "sha256": known.get(s) or fresh[s]} for s in stats]
    return {
        "format": MANIFEST_FORMAT,
        "devkit": str(devkit.resolve()),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint_of(files),
        "splits": split_counts(devkit),
        "file_count": len(files),
        "total_bytes": sum(f["size"] for f in files),
        **({"sources": sources} if sources else {}),
        "files": files,
    }


def store_manifest(devkit: Path, manifest: dict) -> Path:
    """Write atomically into the devkit, or into the cache when the devkit is read-only."""
    text = dump_manifest(manifest)
    target = Path(devkit) / MANIFEST_NAME
    try:
        write_text_atomic(target, text)
        return target
    except OSError as exc:
        if exc.errno not in READ_ONLY:
            raise
    fallback = cache_manifest_path(devkit)
    fallback.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(fallback, text)
    return fallback


def dump_manifest(manifest: dict) -> str:
    """JSON with one file entry per line: diffable, and ~10x faster than ``indent=`` (which makes
    the json module fall back from its C encoder) on a 30k-entry list."""
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in manifest.items() if k != "files"]
    files = ",\n".join("  " + json.dumps(f) for f in manifest.get("files", []))
    return "{\n" + ",\n".join(head) + ',\n "files": [\n' + files + "\n ]\n}\n"


def write_manifest(devkit: Path, *, rehash: bool = False, known: dict[Stat, str] | None = None,
                   sources: dict | None = None) -> Path:
    """Recompute (re-hashing only changed files unless ``rehash``) and store; return where it went."""
    return store_manifest(devkit, build_manifest(devkit, rehash=rehash, known=known, sources=sources))


def dataset_fingerprint(devkit: Path) -> str:
    """The dataset's fingerprint: from the stored manifest while it matches the files, else recomputed
    (and stored)."""
    stats = scan(devkit)
    if not stats:
        raise DataError(f"{devkit}: no dataset files under {', '.join(TRACKED)}")
    cached = load_manifest(devkit, stats)
    if cached:
        return cached["fingerprint"]
    manifest = build_manifest(devkit)
    try:
        store_manifest(devkit, manifest)
    except OSError:
        pass  # the fingerprint is still right; only the next call will be slower
    return manifest["fingerprint"]
