"""Deterministic tar.gz writing and safe extraction, for bundles.

Writing: members sorted by name, regular files only, mtime 0, uid/gid 0, no user names, mode
0644, gzip header without time or file name: the same files give the same bytes.

Reading: a bundle comes from someone else, so nothing in it is trusted: it is read by the one
bounded archive reader, ``harness.core.untrusted.extract_archive``, with the bundle bounds below
(relative names only, ``./`` accepted, no links or special files, sizes, counts and header sizes
bounded before reading; anything refused is one line and leaves nothing written).
"""
from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from harness.core.errors import BadInput
from harness.core.untrusted import ArchiveLimits, extract_archive

# A run's logs and records are megabytes; these leave room for large groups and big manifests.
BUNDLE_LIMITS = ArchiveLimits(max_members=100_000, max_member_bytes=512 << 20, max_total_bytes=2 << 30)


class NotABundle(BadInput):
    """A file that is not a readable, safe bundle tarball (exit 2)."""


def write_tarball(out: Path, members: list[tuple[str, bytes]]) -> None:
    """Write ``members`` (name, content) to ``out`` as a deterministic tar.gz, atomically."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, data in sorted(members):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        info.mtime = 0
                        info.mode = 0o644
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def extract_safely(archive: Path, dest: Path, limits: ArchiveLimits | None = None) -> list[str]:
    """Extract the bundle ``archive`` under ``dest`` with the bundle bounds; returns the file
    names. Raises a one-line ``BadInput`` (``ArchiveRefused``) naming the archive and member."""
    return extract_archive(archive, dest, limits or BUNDLE_LIMITS, label="bundle")
