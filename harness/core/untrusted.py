"""The one place where bytes written by someone else are read: archives (bundles, downloaded data
archives) and folders (foreign run folders). Nothing here trusts a name, a size or a file type.

API
---
``ArchiveLimits``
    Frozen bounds: ``max_members``, ``max_member_bytes``, ``max_total_bytes``,
    ``max_header_bytes`` (a GNU long-name/long-link or PAX header's data), ``max_name_chars``.
    The defaults suit bundles and data archives; pass your own with ``dataclasses.replace``.
``iter_archive(path, limits, *, label="tar archive") -> Iterator[ArchiveMember]``
    Streams a tar / tar.gz / tar.bz2 / tar.xz once, front to back. Yields regular files
    (``name``, ``size``, ``stream``: readable until the next member) and directories
    (``is_dir``). Names are normalised (a leading ``./`` and empty or ``.`` parts dropped); the
    archive's own root (``.``) is skipped. Refused with ``ArchiveRefused`` (BadInput, exit 2,
    one line naming the archive and the member): an absolute path, ``..``, a backslash, a name
    that becomes empty or is longer than ``max_name_chars``, a link (symbolic or hard), a FIFO,
    device or other special file, a file met twice, a member under a file (``a`` then ``a/b``)
    or a file where a folder was (``a/b`` then ``a``), more than ``max_members`` members, a file
    over ``max_member_bytes``, more than ``max_total_bytes`` in all, a header over
    ``max_header_bytes`` (checked from its size field, before tarfile reads it), a sparse
    member (GNU sparse maps are read in loops bounded only by the archive), and an archive that
    is truncated, corrupt or not an archive at all.
``extract_archive(path, dest, limits, select=None, *, label="tar archive") -> list[str]``
    ``iter_archive`` written under ``dest`` (created if missing): only inside ``dest``, checked
    again by tarfile's ``data`` filter (PEP 706), files created exclusively and without following
    links. ``select(name)`` picks the files to write (the rest are read past, still counted).
    Returns the written file names, sorted. On any error, what it wrote is removed again.
``read_bounded(path, max_bytes) -> bytes``
    A regular file's bytes, refused (``UntrustedInput``) when it is a link, FIFO, device or
    folder (checked with lstat, opened with O_NOFOLLOW | O_NONBLOCK: a FIFO never hangs) or
    holds more than ``max_bytes``.
``copy_file_bounded(src, dst, max_bytes) -> int``
    One regular file to a new file, as ``read_bounded`` reads it, streamed.
``check_tree(src, limits, skip=None) -> (folders, [(file, size)])``
    What ``copy_tree_bounded`` checks before it writes anything, alone: call it first to refuse
    a hostile folder before any other input is acted on.
``copy_tree_bounded(src, dst, limits, skip=None) -> list[str]``
    Copies the folder ``src`` to ``dst`` (which must not exist), regular files and folders only.
    A symbolic link anywhere under ``src`` (to a file or a folder) is REFUSED, not skipped:
    a run folder whose ``train.log`` is a link is not the run it claims to be, and skipping
    would import it without its log. FIFOs, sockets and devices are refused without being
    opened. Each file is bounded by ``max_member_bytes``, the total by ``max_total_bytes`` and
    the number of entries by ``max_members``, all from lstat before a byte is read (and again
    while copying: a growing file is cut off and refused). On any error ``dst`` is removed: the
    copy appears whole or not at all. ``skip(relative_name)`` leaves entries out.
``short(text)``
    A name cut to a length fit for a one-line message (a hostile name may be megabytes).

Errors are ``UntrustedInput`` (a ``BadInput``, exit 2); ``ArchiveRefused`` is its archive kind.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from harness.core.errors import BadInput, one_line

_CHUNK = 1 << 20
_SHOWN_CHARS = 120


class UntrustedInput(BadInput):
    """Input from elsewhere that is refused (exit 2); ``str()`` is one line naming it."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


class ArchiveRefused(UntrustedInput):
    """An archive (or one of its members) that is refused: unsafe, too large, or unreadable."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an untrusted archive or folder may hold; every one is checked before the
    bytes it bounds are read."""

    max_members: int = 100_000
    max_member_bytes: int = 2 << 30
    max_total_bytes: int = 4 << 30
    # GNU long names and PAX records are a few hundred bytes; 1 MiB is generous and bounded.
    max_header_bytes: int = 1 << 20
    max_name_chars: int = 4096


@dataclass
class ArchiveMember:
    """One member as ``iter_archive`` yields it. ``stream`` reads a file's bytes (``size`` of
    them) and is valid only until the next member is asked for; ``None`` for a folder."""

    name: str
    size: int
    is_dir: bool
    stream: IO[bytes] | None
    info: tarfile.TarInfo


def short(text: object, limit: int = _SHOWN_CHARS) -> str:
    """``text`` quoted and cut for a one-line message."""
    text = str(text)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} chars)"


class _HeaderTooLarge(Exception):
    def __init__(self, kind: str, size: int):
        super().__init__(kind, size)
        self.kind, self.size = kind, size


def _bounded_tarinfo(limits: ArchiveLimits) -> type[tarfile.TarInfo]:
    """A TarInfo whose long-name and PAX headers are refused by their size field, before
    tarfile reads their data into memory (it reads them whole)."""

    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_gnulong(self, tar):  # noqa: ANN001 - tarfile's own signature
            if self.size > limits.max_header_bytes:
                raise _HeaderTooLarge("GNU long-name", self.size)
            return super()._proc_gnulong(tar)

        def _proc_pax(self, tar):  # noqa: ANN001
            if self.size > limits.max_header_bytes:
                raise _HeaderTooLarge("PAX", self.size)
            return super()._proc_pax(tar)

        # Sparse members: their maps are read in loops bounded only by the archive's size. The
        # harness writes none and data archives hold none: they are refused, unread.
        def _proc_sparse(self, tar):  # noqa: ANN001
            raise _HeaderTooLarge("GNU sparse", self.size)

        def _proc_gnusparse_10(self, next, pax_headers, tar):  # noqa: ANN001, A002
            raise _HeaderTooLarge("GNU sparse 1.0", next.size)

    return BoundedTarInfo


_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeError, ValueError)


def _unreadable(archive: Path, exc: BaseException, label: str) -> ArchiveRefused:
    # OSError covers gzip's BadGzipFile and lzma/bz2 stream errors too.
    detail = short(" ".join(str(exc).split()) or exc.__class__.__name__)
    return ArchiveRefused(f"{archive}: not a {label} (not a readable archive: truncated or corrupt: {detail})")


class _MemberStream(io.RawIOBase):
    """A member's bytes; a truncated or corrupt archive met while reading them is the same one
    line as one met between members (the reader reads outside ``iter_archive``'s own frame)."""

    def __init__(self, archive: Path, inner: IO[bytes], label: str):
        super().__init__()
        self._archive, self._inner, self._label = archive, inner, label

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except _READ_ERRORS as exc:
            raise _unreadable(self._archive, exc, self._label) from None

    def readinto(self, buffer) -> int:  # noqa: ANN001 - io's signature
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _normalised(raw: str, archive: Path, limits: ArchiveLimits) -> str:
    """The member's name with ``./`` and empty parts dropped; '' for the archive's root."""

    def refuse(why: str) -> ArchiveRefused:
        return ArchiveRefused(f"{archive}: member {short(raw)} is {why}; refused")

    if len(raw) > limits.max_name_chars:
        raise refuse(f"a name of {len(raw)} characters (at most {limits.max_name_chars})")
    if raw.startswith("/") or PurePosixPath(raw).is_absolute():
        raise refuse("an absolute path")
    if "\\" in raw or "\x00" in raw:
        raise refuse("an odd path (a backslash or NUL)")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refuse("a path that climbs out ('..')")
    if parts and ":" in parts[0]:
        raise refuse("a path with a drive or scheme (':' in its first part)")
    return "/".join(parts)


def _kind_refused(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return "a link (symbolic)"
    if info.islnk():
        return "a link (hard)"
    if not (info.isfile() or info.isdir()):
        return "a FIFO, device or other special file"
    return None


def iter_archive(path: Path, limits: ArchiveLimits = ArchiveLimits(), *, label: str = "tar archive"
                 ) -> Iterator[ArchiveMember]:
    """Stream the members of the archive at ``path`` (see the module docstring); ``label`` names
    what it should have been in the unreadable-archive line ("not a bundle ...")."""
    archive = Path(path)
    files: set[str] = set()
    folders: set[str] = set()
    count = 0
    total = 0
    try:
        # "r|*": a stream, read once front to back; nothing is kept per member, and a member's
        # data is never read unless asked for.
        with tarfile.open(archive, mode="r|*", tarinfo=_bounded_tarinfo(limits)) as tar:
            for info in tar:
                count += 1
                if count > limits.max_members:
                    raise ArchiveRefused(f"{archive}: more than {limits.max_members} members; refused as too large")
                name = _normalised(info.name, archive, limits)
                why = _kind_refused(info)
                if why:
                    raise ArchiveRefused(f"{archive}: member {short(info.name)} is {why}; refused "
                                         "(links and special files are never extracted)")
                if not name:
                    if info.isdir():
                        continue  # "." or "./": the archive's own root, as `tar -C dir .` writes it
                    raise ArchiveRefused(f"{archive}: member {short(info.name)} has an empty name; refused")
                parents = PurePosixPath(name).parents
                under_file = next((str(p) for p in parents if str(p) in files), None)
                if under_file is not None:
                    raise ArchiveRefused(f"{archive}: member {short(name)} is under {short(under_file)}, "
                                         "which is a file in the archive; refused")
                if info.isdir():
                    if name in files:
                        raise ArchiveRefused(f"{archive}: member {short(name)} is both a file and a folder; refused")
                    folders.add(name)
                    yield ArchiveMember(name=name, size=0, is_dir=True, stream=None, info=info)
                    continue
                if name in files:
                    raise ArchiveRefused(f"{archive}: member {short(name)} appears twice; refused")
                if name in folders:
                    raise ArchiveRefused(f"{archive}: member {short(name)} is both a folder and a file; refused")
                if info.size > limits.max_member_bytes:
                    raise ArchiveRefused(f"{archive}: member {short(name)} holds {info.size} bytes "
                                         f"(at most {limits.max_member_bytes}); refused")
                total += info.size
                if total > limits.max_total_bytes:
                    raise ArchiveRefused(f"{archive}: more than {limits.max_total_bytes} bytes in its files; "
                                         "refused as too large")
                files.add(name)
                folders.update(str(p) for p in parents if str(p) != ".")
                yield ArchiveMember(name=name, size=info.size, is_dir=False, stream=_MemberStream(archive, tar.extractfile(info), label), info=info)
    except UntrustedInput:
        raise
    except _HeaderTooLarge as exc:
        if "sparse" in exc.kind:
            raise ArchiveRefused(f"{archive}: a {exc.kind} member (sparse files are not read); refused") from None
        raise ArchiveRefused(f"{archive}: a {exc.kind} header of {exc.size} bytes (at most "
                             f"{limits.max_header_bytes}); refused before reading it") from None
    except FileNotFoundError:
        raise ArchiveRefused(f"{archive}: no such file") from None
    except IsADirectoryError:
        raise ArchiveRefused(f"{archive}: a folder, not an archive file") from None
    except _READ_ERRORS as exc:
        raise _unreadable(archive, exc, label) from None


def _open_new(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def _copy_bounded(source: IO[bytes] | int, target_fd: int, max_bytes: int, what: str) -> int:
    """Copy at most ``max_bytes`` from ``source`` (file object or fd) to ``target_fd``;
    ``UntrustedInput`` when there is more."""
    written = 0
    while True:
        want = min(_CHUNK, max_bytes + 1 - written)
        chunk = os.read(source, want) if isinstance(source, int) else source.read(want)
        if not chunk:
            return written
        written += len(chunk)
        if written > max_bytes:
            raise UntrustedInput(f"{what}: more than {max_bytes} bytes; refused")
        view = memoryview(chunk)
        while view:
            view = view[os.write(target_fd, view):]


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits(),
                    select: Callable[[str], bool] | None = None, *, label: str = "tar archive") -> list[str]:
    """Write the archive's folders and (selected) files under ``dest``; see the module docstring."""
    archive = Path(path)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    created: list[Path] = []
    written: list[str] = []
    try:
        for member in iter_archive(archive, limits, label=label):
            if not member.is_dir and select is not None and not select(member.name):
                continue
            try:
                tarfile.data_filter(member.info.replace(name=member.name, deep=False), str(root))
            except tarfile.FilterError as exc:
                raise ArchiveRefused(f"{archive}: member {short(member.name)} refused by the data filter "
                                     f"({exc.__class__.__name__})") from None
            target = root / member.name
            for folder in [*reversed(PurePosixPath(member.name).parents), PurePosixPath(member.name)][1:]:
                if folder == PurePosixPath(member.name) and not member.is_dir:
                    break
                where = root / folder
                if where.is_symlink() or (where.exists() and not where.is_dir()):
                    raise ArchiveRefused(f"{archive}: member {short(member.name)}: {where} is not a folder; refused")
                if not where.exists():
                    where.mkdir()
                    created.append(where)
            if member.is_dir:
                continue
            try:
                fd = _open_new(target)
            except FileExistsError:
                raise ArchiveRefused(f"{archive}: member {short(member.name)}: {target} already exists; refused") from None
            created.append(target)
            try:
                _copy_bounded(member.stream, fd, member.size, f"{archive}: member {short(member.name)}")
            finally:
                os.close(fd)
            written.append(member.name)
    except BaseException:
        for made in reversed(created):
            if made.is_dir() and not made.is_symlink():
                shutil.rmtree(made, ignore_errors=True)
            else:
                made.unlink(missing_ok=True)
        raise
    return sorted(written)


def _open_regular(path: Path, what: str) -> tuple[int, os.stat_result]:
    """An fd on the regular file ``path``, never following a link and never blocking on a FIFO."""
    try:
        before = os.lstat(path)
    except OSError as exc:
        raise UntrustedInput(f"{what}: unreadable ({exc.strerror or exc.__class__.__name__})") from None
    refused = _not_regular(before)
    if refused:
        raise UntrustedInput(f"{what}: {refused}; refused (only regular files are read)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedInput(f"{what}: a symbolic link; refused (links are not followed)") from None
        raise UntrustedInput(f"{what}: unreadable ({exc.strerror or exc.__class__.__name__})") from None
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise UntrustedInput(f"{what}: changed while being opened; refused")
    return fd, after


def _not_regular(info: os.stat_result) -> str | None:
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if not stat.S_ISREG(mode):
        return "a special file"
    return None


def read_bounded(path: Path, max_bytes: int, *, what: str | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` (else ``UntrustedInput``)."""
    what = what or str(path)
    fd, info = _open_regular(Path(path), what)
    try:
        if info.st_size > max_bytes:
            raise UntrustedInput(f"{what}: {info.st_size} bytes (at most {max_bytes}); refused")
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise UntrustedInput(f"{what}: more than {max_bytes} bytes; refused")
            chunks.append(chunk)
    finally:
        os.close(fd)


def check_tree(src: Path, limits: ArchiveLimits = ArchiveLimits(), skip: Callable[[str], bool] | None = None
               ) -> tuple[list[str], list[tuple[str, int]]]:
    """Every folder and regular file under ``src`` (relative names), from lstat alone; refuses
    links and special files, and bounds counts and sizes before anything is read."""
    folders: list[str] = []
    files: list[tuple[str, int]] = []
    total = 0
    stack = [""]
    while stack:
        relative = stack.pop()
        try:
            with os.scandir(src / relative if relative else src) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            raise UntrustedInput(f"{src / relative}: unreadable ({exc.strerror or exc.__class__.__name__})") from None
        for entry in listing:
            name = f"{relative}/{entry.name}" if relative else entry.name
            if skip is not None and skip(name):
                continue
            if len(folders) + len(files) >= limits.max_members:
                raise UntrustedInput(f"{src}: more than {limits.max_members} files and folders; refused")
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                folders.append(name)
                stack.append(name)
                continue
            refused = _not_regular(info)
            if refused:
                raise UntrustedInput(f"{src / name}: {refused}; refused (only regular files and folders are "
                                     "copied, links are never followed)")
            if info.st_size > limits.max_member_bytes:
                raise UntrustedInput(f"{src / name}: {info.st_size} bytes (at most {limits.max_member_bytes}); refused")
            total += info.st_size
            if total > limits.max_total_bytes:
                raise UntrustedInput(f"{src}: more than {limits.max_total_bytes} bytes in its files; refused")
            files.append((name, info.st_size))
    return folders, files


def copy_file_bounded(src: Path, dst: Path, max_bytes: int) -> int:
    """Copy the regular file ``src`` to the new file ``dst`` (never following a link at either
    end); ``UntrustedInput`` when it is not a regular file or holds more than ``max_bytes``.
    Returns the bytes copied; ``dst`` is removed again on any error."""
    fd, info = _open_regular(Path(src), str(src))
    try:
        if info.st_size > max_bytes:
            raise UntrustedInput(f"{src}: {info.st_size} bytes (at most {max_bytes}); refused")
        out = _open_new(Path(dst))
        try:
            return _copy_bounded(fd, out, max_bytes, str(src))
        except BaseException:
            Path(dst).unlink(missing_ok=True)
            raise
        finally:
            os.close(out)
    finally:
        os.close(fd)


def copy_tree_bounded(src: Path, dst: Path, limits: ArchiveLimits = ArchiveLimits(),
                      skip: Callable[[str], bool] | None = None) -> list[str]:
    """Copy the folder ``src`` to the new folder ``dst``; returns the copied file names (see the
    module docstring)."""
    src, dst = Path(src), Path(dst)
    folders, files = check_tree(src, limits, skip)
    dst.mkdir()  # FileExistsError for an existing one: never merged into
    try:
        for name in sorted(folders):
            (dst / name).mkdir()
        for name, size in files:
            what = str(src / name)
            fd, _ = _open_regular(src / name, what)
            try:
                out = _open_new(dst / name)
                try:
                    # Bounded by the size lstat gave: a file that grows meanwhile is refused.
                    _copy_bounded(fd, out, size, what)
                finally:
                    os.close(out)
            finally:
                os.close(fd)
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    return [name for name, _ in files]
