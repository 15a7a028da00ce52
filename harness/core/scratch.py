"""Scratch folders for reading untrusted input (a bundle extracted by ``verify`` or ``ingest``):
never left behind, even by a process that was killed.

Every scratch folder lives under one known parent (``$TMPDIR/harness-scratch-<uid>/``, or the
run store for a run being copied in: ``.incoming-...``), named
``<kind>-<pid>-<token>``, beside a lock file ``<name>.lock`` that its owner holds (flock) for the
folder's whole life. The lock is taken before the folder exists, so a folder whose lock nobody
holds belongs to a process that is gone:

- its owner removes it on ``cleanup()``, on an exception, and on SIGTERM or SIGHUP (turned into
  KeyboardInterrupt while a scratch folder is open, so every ``finally`` runs: exit 130);
- a process killed by SIGKILL cannot; the next ``Scratch`` (any verify or ingest) sweeps every
  folder whose lock is not held.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.flocks import lock_conflicts

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_open: list["Scratch"] = []
_previous_handlers: dict[int, object] = {}


def scratch_parent() -> Path:
    """The one parent of every scratch folder of this user (per user: /tmp is shared)."""
    return Path(tempfile.gettempdir()) / f"harness-scratch-{os.getuid()}"


def sweep_stale(parent: Path | None = None, prefix: str = "") -> list[Path]:
    """Remove the scratch folders (and lock files) under ``parent`` whose names start with
    ``prefix`` and that no living process holds; returns them."""
    parent = parent or scratch_parent()
    removed = []
    try:
        entries = sorted(p for p in parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.endswith(".lock"):
            folder = entry.with_suffix("")
            if not folder.exists() and not lock_conflicts(entry, exclusive=True):
                entry.unlink(missing_ok=True)
            continue
        lock = entry.with_name(entry.name + ".lock")
        if lock_conflicts(lock, exclusive=True):
            continue  # its owner is alive
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _interrupt(signum, frame):  # noqa: ANN001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _install_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only; its own handlers apply
    for sig in _SIGNALS:
        current = signal.getsignal(sig)
        if current in (signal.SIG_DFL, None):  # a handler already installed (a run's) is kept
            _previous_handlers[sig] = current
            signal.signal(sig, _interrupt)


def _restore_handlers() -> None:
    for sig, handler in list(_previous_handlers.items()):
        if signal.getsignal(sig) is _interrupt:
            signal.signal(sig, handler or signal.SIG_DFL)
        del _previous_handlers[sig]


class Scratch:
    """One scratch folder (``path``) held by this process until ``cleanup()``. ``parent``: another
    folder than the scratch parent (e.g. a run store, where a copy must land on the same file
    system to be renamed into place); there only names starting with ``<kind>-`` are swept."""

    def __init__(self, kind: str, parent: Path | None = None):
        if parent is None:
            parent = scratch_parent()
            parent.mkdir(mode=0o700, exist_ok=True)
        sweep_stale(parent, prefix=f"{kind}-")
        if not _open:
            _install_handlers()  # before the folder exists: a signal from now on cleans it up
        _open.append(self)
        self._fd: int | None = None
        try:
            while True:
                name = f"{kind}-{os.getpid()}-{secrets.token_hex(4)}"
                self.lock_path = parent / f"{name}.lock"
                self.path = parent / name
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # before the folder exists: a sweeper never sees it unheld
                try:
                    if os.stat(self.lock_path).st_ino == os.fstat(self._fd).st_ino:
                        break
                except FileNotFoundError:
                    pass
                os.close(self._fd)  # a sweeper removed the lock file between its creation and the flock
                self._fd = None
            self.path.mkdir(mode=0o700)
        except BaseException:
            self._fd = self._fd if self._fd is not None else -1
            self.cleanup()
            raise

    def cleanup(self) -> None:
        if self._fd is None:
            return
        if hasattr(self, "path"):
            shutil.rmtree(self.path, ignore_errors=True)
            self.lock_path.unlink(missing_ok=True)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = None
        if self in _open:
            _open.remove(self)
        if not _open:
            _restore_handlers()


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt for the block (unless a handler is installed
    already), so that a command writing into the store undoes a half-done write, exit 130."""
    first = not _open and not _previous_handlers
    if first:
        _install_handlers()
    try:
        yield
    finally:
        if first and not _open:
            _restore_handlers()


@contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A scratch folder for the ``with`` block, removed after it whatever happens."""
    scratch = Scratch(kind)
    try:
        yield scratch.path
    finally:
        scratch.cleanup()
