"""Checkpoints that are whole or absent: atomic saving, and resuming from the last complete one.

mmengine writes a checkpoint with ``open(path, 'wb').write(...)`` under its final name
(``LocalBackend.put``), then points ``work_dir/last_checkpoint`` at it. A full disk or a kill in
between left a truncated ``iter_N.pth`` that ``--resume`` then choked on. Here the worker's local
file backend writes a unique temp file beside the target, fsyncs it and renames it into place, so
a checkpoint (and ``last_checkpoint``) is either complete or not there; and a resume picks the
newest checkpoint that is complete, skipping any damaged one left by older versions.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

from harness.core.fileio import atomic_output, write_text_atomic

LAST_CHECKPOINT = "last_checkpoint"  # mmengine's pointer file in work_dir
_ITER = re.compile(r"^(?:iter|epoch)_(\d+)\.pth$")


def install_atomic_local_backend() -> None:
    """Replace mmengine's local file backend, for this process, by one whose writes are atomic."""
    from mmengine.fileio import register_backend
    from mmengine.fileio.backends import LocalBackend

    class AtomicLocalBackend(LocalBackend):
        def put(self, obj: bytes, filepath) -> None:
            with atomic_output(Path(filepath), "wb") as handle:
                handle.write(obj)

        def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
            with atomic_output(Path(filepath), "w") as handle:
                handle.write(obj)

    register_backend("local", AtomicLocalBackend, force=True, prefixes=[""])
    from mmengine.fileio import io as mmengine_io

    # get_file_backend caches backend instances; drop any made before the replacement.
    mmengine_io.backend_instances.clear()


def is_complete(path: Path) -> bool:
    """A ``torch.save`` file is a zip archive whose directory sits at its very end: a truncated
    one has none. Reading that directory is cheap (no tensor is loaded)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _candidates(work_dir: Path) -> list[Path]:
    """mmengine's pointer first, then every ``iter_N.pth``, newest first."""
    found: list[Path] = []
    pointer = work_dir / LAST_CHECKPOINT
    try:
        named = Path(pointer.read_text().strip())
        if named.name:
            found.append(named if named.is_absolute() else work_dir / named.name)
    except OSError:
        pass
    numbered = sorted(
        (p for p in work_dir.glob("*.pth") if _ITER.match(p.name)),
        key=lambda p: int(_ITER.match(p.name).group(1)),
        reverse=True,
    )
    found.extend(p for p in numbered if p not in found)
    return found


def pick_resume_checkpoint(work_dir: Path) -> tuple[Path | None, list[Path]]:
    """(the checkpoint to resume from, the damaged ones skipped). When the pointer names a
    damaged checkpoint it is rewritten to name the one chosen, so mmengine agrees."""
    work_dir = Path(work_dir)
    chosen, skipped = None, []
    for path in _candidates(work_dir):
        if not path.exists():
            continue
        if is_complete(path):
            chosen = path
            break
        skipped.append(path)
    # The pointer follows the choice: a newer, complete checkpoint it did not name (the pointer
    # write was lost) wins too, as iteration order says it is the latest state.
    numbered = [p for p in _candidates(work_dir)[1:] if p.exists() and is_complete(p)]
    if numbered and (chosen is None or _iteration(numbered[0]) > _iteration(chosen)):
        chosen = numbered[0]
    if chosen is not None:
        write_text_atomic(work_dir / LAST_CHECKPOINT, str(chosen))
    return chosen, skipped


def _iteration(path: Path) -> int:
    match = _ITER.match(path.name)
    return int(match.group(1)) if match else -1
