"""``harness ingest BUNDLE``: a bundle is verified first (a failing one is refused with one line),
then each of its runs is copied into the store under its own run id, byte for byte, so that
re-bundling it gives the same bundle, and a group bundle's group record into the group store.
A run or group the store already has is skipped: re-ingesting the same bundle imports nothing.
The bundle is extracted into a scratch folder (``harness.core.scratch``), never left behind."""
from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import BadInput
from harness.core.scratch import Scratch
from harness.evidence.bundles.groups import read_group
from harness.evidence.bundles.pack import RUNS_PREFIX
from harness.evidence.bundles.verify import Verification, verify_bundle
from harness.store.runs import GroupStore, RunDir, RunStore


BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class BundleRefused(BadInput):
    """A bundle that fails verification: nothing of it is imported (exit 2)."""


@dataclass
class VerifiedBundle:
    path: Path
    folder: Scratch
    outcome: Verification

    @property
    def root(self) -> Path:
        return self.folder.path


def looks_like_bundle(path: Path) -> bool:
    """A file named or built like a tar archive (a bundle, or something refused as not one)."""
    path = Path(path)
    if path.name.endswith(BUNDLE_SUFFIXES):
        return True
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def verified(path: Path) -> VerifiedBundle:
    """Extract and verify ``path``; ``BundleRefused`` (one line) unless it passes."""
    folder = Scratch("ingest")
    try:
        outcome = verify_bundle(path, keep=folder.path)
        if not outcome.passed:
            more = len(outcome.differences) - 1
            raise BundleRefused(f"{path}: the bundle fails verification, nothing imported: {outcome.differences[0]}"
                                f"{f' (and {more} more; see `harness verify {path}`)' if more else ''}")
    except BaseException:
        folder.cleanup()
        raise
    return VerifiedBundle(path=Path(path), folder=folder, outcome=outcome)


def import_verified(bundle: VerifiedBundle, results_dir: Path, *,
                    on_message: Callable[[str], None] | None = None) -> list[RunDir]:
    store = RunStore(results_dir)
    created = []
    try:
        for run_id in bundle.outcome.record.runs:
            run = store.adopt(run_id, bundle.root / RUNS_PREFIX / run_id)
            if run is None:
                message = f"{bundle.path}: run {run_id} is already in {store.runs_dir}; skipped"
            else:
                created.append(run)
                message = f"{bundle.path}: imported run {run_id} (bundle verified)"
            if on_message:
                on_message(message)
        if bundle.outcome.record.group:
            _import_group(bundle, results_dir, on_message)
    finally:
        bundle.folder.cleanup()
    return created


def _import_group(bundle: VerifiedBundle, results_dir: Path, on_message: Callable[[str], None] | None) -> None:
    """The group record of a verified group bundle (its members' runs came in just before)."""
    group = read_group(bundle.root, bundle.outcome.record)
    stored = GroupStore(results_dir).adopt(group)
    if stored is None:
        message = f"{bundle.path}: group {group.group_id} is already in {GroupStore(results_dir).groups_dir}; skipped"
    else:
        message = f"{bundle.path}: imported group {group.group_id} ({len(group.finished_members())} of {len(group.members)} finished)"
    if on_message:
        on_message(message)
