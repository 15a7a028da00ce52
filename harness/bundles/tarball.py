"""Deterministic tar.gz writing and safe extraction, for bundles.

Writing: members sorted by name, regular files only, mtime 0, uid/gid 0, no user names, mode
0644, gzip header without time or file name: the same files give the same bytes.

Reading: a bundle comes from someone else, so nothing in it is trusted. Every member must be a
regular file or a folder with a relative, normalised path (no absolute path, no ``..``, no
links, devices or fifos), names must be unique, and the total size and member count are
bounded; anything else is refused before a byte is written.
"""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from harness.errors import BadInput

MAX_TOTAL_BYTES = 4 << 30  # a run's logs and records are megabytes; 4 GiB leaves room for big manifests
MAX_MEMBERS = 100_000


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


def _unsafe(member: tarfile.TarInfo) -> str | None:
    name = member.name
    path = PurePosixPath(name)
    if not name or name.startswith("/") or path.is_absolute() or "\\" in name:
        return "an absolute or odd path"
    if any(part in ("..", "") for part in name.rstrip("/").split("/")) or ":" in path.parts[0]:
        return "a path that climbs out ('..') or is not normalised"
    if member.issym() or member.islnk():
        return "a link"
    if not (member.isfile() or member.isdir()):
        return "a device, fifo or other special file"
    return None


def extract_safely(archive: Path, dest: Path, *, max_total: int = MAX_TOTAL_BYTES,
                   max_members: int = MAX_MEMBERS) -> list[str]:
    """Check every member of ``archive`` first, then extract it under ``dest``; returns the file
    names. Raises ``NotABundle`` naming the archive (and the member) when anything is unsafe."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = []
            total = 0
            seen: set[str] = set()
            for member in tar:  # streamed: a huge member list is refused before it is all read
                why = _unsafe(member)
                if why:
                    raise NotABundle(f"{archive}: member {member.name!r} is {why}; refused, nothing extracted")
                name = member.name.rstrip("/")
                if name in seen:
                    raise NotABundle(f"{archive}: member {name!r} appears twice; refused, nothing extracted")
                seen.add(name)
                total += member.size
                if len(seen) > max_members or total > max_total:
                    raise NotABundle(f"{archive}: more than {max_members} members or {max_total} bytes; "
                                     "refused as too large for a bundle")
                members.append(member)
            for member in members:
                # The members were checked above; the 'data' filter checks again as it writes.
                tar.extract(member, dest, set_attrs=False, filter="data")
    except NotABundle:
        raise
    except FileNotFoundError:
        raise NotABundle(f"{archive}: no such file") from None
    except IsADirectoryError:
        raise NotABundle(f"{archive}: a folder, not a bundle file") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeError) as exc:
        raise NotABundle(f"{archive}: not a bundle (not a readable tar.gz: {' '.join(str(exc).split())})") from None
    return sorted(m.name for m in members if m.isfile())
