"""The synthetic generator's SBD output, and that the VOC2012 part did not change."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat

from harness.data.layout import AUG_LABELS
from harness.data.resolve import synthetic_root
from harness.data.synth import SynthSpec, sbd_splits, write_synthetic_voc
from test_data_helpers import SMALL, run_harness, sbd_source  # noqa: F401

# Recorded from the generator before the SBD output existed: the smoke run depends on these bytes.
GOLDEN_SPEC = dict(seed=5, n_train=6, n_aug=4, n_val=3)
GOLDEN_VOC2012 = "95a3bb73b34a59f4759625fabd8cae885b90eda7c2a1c42221076d2474a50c29"


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def test_voc2012_bytes_unchanged_with_and_without_sbd(tmp_path):
    for sbd in (False, True):
        devkit = write_synthetic_voc(tmp_path / str(sbd), SynthSpec(**GOLDEN_SPEC, sbd=sbd))
        assert tree_digest(devkit / "VOC2012") == GOLDEN_VOC2012
        assert (devkit / "VOCaug").exists() == sbd


def test_default_spec_keeps_its_identity(tmp_path):
    assert synthetic_root(SynthSpec()).name == "synthetic-voc-b76d41a8e989"  # the pre-SBD cache folder
    stamp = json.loads((write_synthetic_voc(tmp_path, SynthSpec(**GOLDEN_SPEC)) / "synth.json").read_text())
    assert "sbd" not in stamp
    assert synthetic_root(SynthSpec(sbd=True)) != synthetic_root(SynthSpec())


def test_mats_read_like_mmseg_reads_them(sbd_source):
    sbd = sbd_splits(SMALL)
    mats = sorted((sbd_source / "VOCaug/dataset/cls").glob("*.mat"))
    assert [m.stem for m in mats] == sorted(sbd["train"] + sbd["val"])
    for mat in mats:
        data = loadmat(mat)
        seg = data["GTcls"][0]["Segmentation"][0]  # mmseg's voc_aug.py indexing
        assert seg.dtype == np.uint8 and seg.shape == (SMALL.height, SMALL.width)
        assert seg.max() <= 20  # no 255 borders, like SBD
        with Image.open(sbd_source / AUG_LABELS / f"{mat.stem}.png") as label:
            assert np.array_equal(seg, np.asarray(label))
        gtcls = data["GTcls"][0, 0]
        assert gtcls["Boundaries"].shape == (20, 1)
        present = sorted(int(c) for c in np.unique(seg) if c)
        assert gtcls["CategoriesPresent"].ravel().tolist() == present
        assert set(data["GTcls"].dtype.names) == {"Boundaries", "Segmentation", "CategoriesPresent"}


def test_sbd_split_files(sbd_source):
    sbd = sbd_splits(SMALL)
    for name in ("train", "val"):
        assert (sbd_source / f"VOCaug/dataset/{name}.txt").read_text().split() == sbd[name]
    assert not set(sbd["train"]) & set(sbd["val"])


def test_cli_synth_sbd_flag(tmp_path):
    done = run_harness("data", "synth", "--root", tmp_path, "--sbd", "--n-train", "4", "--n-aug", "4",
                       "--n-val", "2", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "VOCdevkit/VOCaug/dataset/cls").glob("*.mat"))) == 3 + 4 + 1


CONCURRENT_SPEC = dict(seed=9, n_train=10, n_aug=6, n_val=4, sbd=True)
_WRITER = """
import sys
from pathlib import Path
from harness.data.synth import SynthSpec, write_synthetic_voc
write_synthetic_voc(Path(sys.argv[1]), SynthSpec(**{spec}))
"""


def set_digest(devkit: Path) -> str:
    """``tree_digest`` with each .mat taken by its label (scipy stamps the write time in its header)."""
    from harness.data.matfile import read_segmentation

    digest = hashlib.sha256()
    for path in sorted(devkit.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(devkit)).encode())
            data = read_segmentation(path).tobytes() if path.suffix == ".mat" else path.read_bytes()
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def test_concurrent_first_use_ends_with_one_complete_set(tmp_path):
    """Three `harness run`s starting at once on an empty cache: each writer once used the same temp
    names, so one's rename found the other's file gone and it crashed."""
    import os
    import subprocess
    import sys

    reference = write_synthetic_voc(tmp_path / "alone", SynthSpec(**CONCURRENT_SPEC))
    shared = tmp_path / "shared"
    code = _WRITER.format(spec=CONCURRENT_SPEC)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(shared)], stderr=subprocess.PIPE, text=True,
                              env={**os.environ}) for _ in range(3)]
    results = [(proc.wait(timeout=300), proc.stderr.read()) for proc in procs]
    assert all(code == 0 for code, _ in results), [err for _, err in results]
    assert set_digest(shared / "VOCdevkit") == set_digest(reference)
    leftovers = [p for p in (shared / "VOCdevkit").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_a_crashed_writer_leaves_no_stamp_and_the_next_one_completes(tmp_path):
    """A writer killed mid-way leaves no synth.json, so the next use finishes the set."""
    import os
    import signal
    import subprocess
    import sys
    import time

    shared = tmp_path / "shared"
    big = dict(CONCURRENT_SPEC, n_train=200)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(spec=big), str(shared)], env={**os.environ})
    deadline = time.monotonic() + 60
    jpegs = shared / "VOCdevkit" / "VOC2012" / "JPEGImages"
    while time.monotonic() < deadline and len(list(jpegs.glob("*.jpg")) if jpegs.is_dir() else []) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (shared / "VOCdevkit" / "synth.json").exists()
    devkit = write_synthetic_voc(shared, SynthSpec(**big))
    assert set_digest(devkit) == set_digest(write_synthetic_voc(tmp_path / "alone", SynthSpec(**big)))
