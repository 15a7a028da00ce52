"""Shared fixtures and helpers of the tests/test_data_*.py modules (this module holds no tests)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.synth import SynthSpec, write_synthetic_voc

REPO = Path(__file__).resolve().parent.parent
# 8 train, 12 aug, 6 val -> SBD holds 6 train, 12 aug and 3 val ids: 21 .mat files.
SMALL = SynthSpec(seed=3, n_train=8, n_aug=12, n_val=6, sbd=True)


@pytest.fixture(scope="session")
def sbd_source(tmp_path_factory) -> Path:
    """A synthetic VOCdevkit with SBD files, generated once; copy it before changing anything."""
    return write_synthetic_voc(tmp_path_factory.mktemp("sbd-source"), SMALL)


@pytest.fixture
def devkit(sbd_source, tmp_path, monkeypatch) -> Path:
    """A private copy of ``sbd_source`` without SegmentationClassAug/aug lists (as before preparing)."""
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "cache"))
    return copy_devkit(sbd_source, tmp_path / "VOCdevkit", prepared=False)


def copy_devkit(source: Path, target: Path, prepared: bool = True) -> Path:
    ignore = None if prepared else shutil.ignore_patterns("SegmentationClassAug", "aug.txt", "trainaug.txt")
    shutil.copytree(source, target, ignore=ignore)
    return target


def run_harness(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache is not None:
        env["PSPNET_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def labels(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            out[path.name] = np.asarray(image)
    return out
