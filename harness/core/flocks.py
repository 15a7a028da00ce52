"""Asking whether another process holds an flock, without taking it (stdlib only: the worker's
lifeline uses it inside the container too)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_conflicts(path: str | Path, *, exclusive: bool = False) -> bool:
    """Whether some process holds an flock on ``path`` that conflicts with taking a shared one (or,
    with ``exclusive``, any lock at all) now. False when the file cannot be opened: no holder."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return False  # taken, and let go when fd closes
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
