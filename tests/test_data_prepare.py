"""``harness data prepare``: same output as mmseg's voc_aug.py, resumable, clear about bad input."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from harness.data.layout import AUG_LABELS, SPLITS
from harness.data.matfile import MatError, _fast_read, read_segmentation
from harness.data.prepare import aug_splits, prepare_dataset
from harness.data.synth import sample_ids, sbd_splits
from mmseg_converter import compare_label_dirs, read_id_set, run_mmseg_converter
from test_data_helpers import SMALL, copy_devkit, devkit, error_lines, labels, run_harness, sbd_source  # noqa: F401

N_MATS = 21


def _cls(devkit):
    return devkit / "VOCaug" / "dataset" / "cls"


def test_output_matches_mmseg_converter(devkit, tmp_path):
    mmseg = copy_devkit(devkit, tmp_path / "mmseg" / "VOCdevkit")
    expected_len = SMALL.n_train + SMALL.n_aug
    done = run_mmseg_converter(mmseg, mmseg / "VOCaug", nproc=2, aug_len=expected_len)
    assert done.returncode == 0, done.stderr[-2000:]

    ours = run_harness("data", "prepare", "--voc", devkit, "--workers", "2", cache=tmp_path / "cache")
    assert ours.returncode == 0, ours.stderr

    assert len(list((devkit / AUG_LABELS).glob("*.png"))) == N_MATS
    assert compare_label_dirs(mmseg / AUG_LABELS, devkit / AUG_LABELS) == []
    for name in ("trainaug", "aug"):
        assert read_id_set(devkit / SPLITS / f"{name}.txt") == read_id_set(mmseg / SPLITS / f"{name}.txt")
    ids = sample_ids(SMALL)
    assert read_id_set(devkit / SPLITS / "trainaug.txt") == set(ids["train"]) | set(ids["aug"])
    assert read_id_set(devkit / SPLITS / "aug.txt") == set(ids["aug"])
    assert (devkit / "pspnet-repro-manifest.json").is_file()


def test_converted_labels_equal_the_rendered_ones(devkit, sbd_source):
    report = prepare_dataset(devkit, workers=2, stream=None, manifest=False)
    assert report.ok and report.converted == N_MATS
    rendered = labels(sbd_source / AUG_LABELS)
    for name, pixels in labels(devkit / AUG_LABELS).items():
        assert np.array_equal(pixels, rendered[name]), name
    with Image.open(next((devkit / AUG_LABELS).glob("*.png"))) as image:
        assert image.mode == "L"  # what mmseg's Image.fromarray(uint8).save writes


def test_split_arithmetic_is_mmsegs():
    splits = aug_splits(voc_train=["a", "b"], voc_val=["c", "d"], sbd_train=["b", "c", "e"], sbd_val=["f", "a"])
    assert splits == {"trainaug": ["a", "b", "e", "f"], "aug": ["e", "f"]}


def test_synthetic_sbd_splits_cut_across_voc_splits():
    ids, sbd = sample_ids(SMALL), sbd_splits(SMALL)
    covered = set(sbd["train"]) | set(sbd["val"])
    for voc_split in ("train", "val"):
        part = covered & set(ids[voc_split])
        assert 0 < len(part) < len(ids[voc_split])  # partial overlap, like the real SBD
    assert set(ids["aug"]) <= covered
    assert set(ids["val"]) & set(sbd["train"])  # SBD train holds VOC val images: must be subtracted


def test_resume_redoes_only_missing_and_truncated(devkit, tmp_path):
    first = prepare_dataset(devkit, workers=2, stream=None, manifest=False)
    assert first.converted == N_MATS
    out = devkit / AUG_LABELS
    pngs = sorted(out.glob("*.png"))
    for path in pngs[:3]:
        path.unlink()
    truncated = pngs[3]
    truncated.write_bytes(truncated.read_bytes()[:40])  # a half-written file under the final name
    stale_tmp = out / f".{pngs[4].name}.999999999.tmp"  # left by a prepare that was killed
    stale_tmp.write_bytes(b"\x89PNG")
    untouched = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pngs[4:]}

    again = run_harness("data", "prepare", "--voc", devkit, "--workers", "2", cache=tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    assert f"4 converted, {N_MATS - 4} already done" in again.stderr
    assert not stale_tmp.exists()
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pngs[4:]} == untouched
    assert len(list(out.glob("*.png"))) == N_MATS
    for path in pngs[:4]:
        assert np.array_equal(labels(out)[path.name], read_segmentation(_cls(devkit) / f"{path.stem}.mat"))


def test_mat_newer_than_its_png_is_redone(devkit):
    prepare_dataset(devkit, workers=1, stream=None, manifest=False)
    mat = sorted(_cls(devkit).glob("*.mat"))[0]
    png = devkit / AUG_LABELS / f"{mat.stem}.png"
    os.utime(mat, ns=(png.stat().st_mtime_ns + 10**9,) * 2)
    report = prepare_dataset(devkit, workers=1, stream=None, manifest=False)
    assert (report.converted, report.skipped) == (1, N_MATS - 1)


def _prepare_fails_naming(devkit, tmp_path, bad, expected_words):
    done = run_harness("data", "prepare", "--voc", devkit, "--workers", "2", cache=tmp_path / "cache")
    assert done.returncode == 2, done.stderr
    lines = [line for line in error_lines(done.stderr) if str(bad) in line]
    assert len(lines) == 1, done.stderr
    for word in expected_words:
        assert word in lines[0]
    assert "Traceback" not in done.stderr
    # everything else was converted and kept; the split lists wait for a clean run
    assert len(list((devkit / AUG_LABELS).glob("*.png"))) == N_MATS - 1
    assert not (devkit / SPLITS / "trainaug.txt").exists()
    return lines[0]


def test_corrupt_mat_is_named_and_the_rest_converted(devkit, tmp_path):
    bad = sorted(_cls(devkit).glob("*.mat"))[5]
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    _prepare_fails_naming(devkit, tmp_path, bad, ["not a readable MATLAB file"])
    # fixing the file and running again finishes the job, redoing only that file
    savemat(bad, {"GTcls": {"Segmentation": np.zeros((4, 5), np.uint8)}})
    report = prepare_dataset(devkit, workers=1, stream=None, manifest=False)
    assert (report.converted, report.skipped, report.ok) == (1, N_MATS - 1, True)
    assert (devkit / SPLITS / "trainaug.txt").exists()


def test_mat_without_gtcls(devkit, tmp_path):
    bad = sorted(_cls(devkit).glob("*.mat"))[2]
    savemat(bad, {"GTinst": {"Segmentation": np.zeros((4, 5), np.uint8)}})
    _prepare_fails_naming(devkit, tmp_path, bad, ["no GTcls variable"])


def test_mat_with_values_outside_the_classes(devkit, tmp_path):
    bad = sorted(_cls(devkit).glob("*.mat"))[0]
    seg = np.zeros((6, 7), np.uint8)
    seg[2, 3] = 42
    savemat(bad, {"GTcls": {"Segmentation": seg}})
    _prepare_fails_naming(devkit, tmp_path, bad, ["outside 0..20", "42"])


@pytest.mark.parametrize("remove, expected", [
    ("VOC2012", "VOC2012: missing"),
    ("VOCaug/dataset/cls", "cls: missing"),
    ("VOC2012/ImageSets/Segmentation/val.txt", "val.txt: missing"),
    ("VOCaug/dataset/train.txt", "train.txt: missing"),
])
def test_missing_inputs_exit_2_with_one_line(devkit, tmp_path, remove, expected):
    target = devkit / remove
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    done = run_harness("data", "prepare", "--voc", devkit, cache=tmp_path / "cache")
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and expected in lines[0], done.stderr


def test_missing_devkit(tmp_path):
    done = run_harness("data", "prepare", "--voc", tmp_path / "nowhere", cache=tmp_path / "cache")
    assert done.returncode == 2
    assert "nowhere: no such folder" in done.stderr and len(error_lines(done.stderr)) == 1


def test_sbd_option_accepts_dataset_or_its_parent(devkit, tmp_path):
    moved = tmp_path / "benchmark_RELEASE"
    (devkit / "VOCaug").rename(moved)
    for sbd in (moved, moved / "dataset"):
        report = prepare_dataset(devkit, sbd, workers=1, stream=None, manifest=False)
        assert report.ok and report.converted + report.skipped == N_MATS


def test_workers_must_be_positive(devkit, tmp_path):
    done = run_harness("data", "prepare", "--voc", devkit, "--workers", "0", cache=tmp_path / "cache")
    assert done.returncode == 2 and "must be >= 1" in done.stderr


@pytest.mark.parametrize("options, seg", [
    ({}, np.arange(20, dtype=np.uint8).reshape(4, 5)),
    ({"do_compression": True}, np.arange(20, dtype=np.uint8).reshape(4, 5)),
    ({"do_compression": True}, np.arange(20, dtype=np.float64).reshape(4, 5)),
    ({"long_field_names": True}, np.arange(20, dtype=np.int16).reshape(4, 5)),
    ({"do_compression": True}, np.full((3, 1), 255, np.uint8)),
])
def test_fast_reader_agrees_with_scipy(options, seg, tmp_path):
    buffer = io.BytesIO()
    gtcls = {"Boundaries": np.empty((2, 1), dtype=object), "Segmentation": seg, "CategoriesPresent": np.array([1])}
    gtcls["Boundaries"][0, 0] = gtcls["Boundaries"][1, 0] = np.zeros((1, 1))
    savemat(buffer, {"other": np.ones(3), "GTcls": gtcls}, **options)
    path = tmp_path / "x.mat"
    path.write_bytes(buffer.getvalue())
    expected = loadmat(path)["GTcls"][0]["Segmentation"][0].astype(np.uint8)  # mmseg's read
    assert _fast_read(buffer.getvalue()) is not None
    got = read_segmentation(path)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)


def test_unknown_layouts_fall_back_to_scipy(tmp_path):
    path = tmp_path / "x.mat"
    savemat(path, {"GTcls": np.ones((2, 3))}, format="4")  # MATLAB v4: no structs
    assert _fast_read(path.read_bytes()) is None
    with pytest.raises(MatError, match="not a struct"):
        read_segmentation(path)
    assert _fast_read(b"MATLAB 7.3 MAT-file" + bytes(200)) is None


def _bomb(path, shape=(6000, 6000), dtype=np.uint8, **options):
    """A small file whose label decompresses to tens of megabytes (all zeros compress ~1000x)."""
    savemat(path, {"GTcls": {"Segmentation": np.zeros(shape, dtype)}}, do_compression=True, **options)
    return path


def test_a_mat_that_decompresses_to_a_huge_label_is_refused_fast(tmp_path):
    import time

    path = _bomb(tmp_path / "bomb.mat")
    assert path.stat().st_size < 200_000
    started = time.monotonic()
    with pytest.raises(MatError, match="decompresses to more than"):
        read_segmentation(path)
    assert time.monotonic() - started < 5


def test_a_huge_label_through_scipy_is_refused_too(tmp_path):
    """Files the fast path does not read (big-endian) go to scipy, which would inflate them whole."""
    import struct
    import zlib

    path = tmp_path / "big_endian.mat"
    header = b"MATLAB 5.0 MAT-file, big-endian".ljust(116) + bytes(8) + b"\x01\x00" + b"MI"
    inflated = zlib.compress(bytes(40_000_000), 9)  # 40 MB of zeros in ~40 KB
    path.write_bytes(header + struct.pack(">II", 15, len(inflated)) + inflated)
    assert _fast_read(path.read_bytes()) is None
    with pytest.raises(MatError, match="decompresses to more than"):
        read_segmentation(path)


def test_a_label_larger_than_the_bound_in_pixels_is_refused(tmp_path):
    from harness.data import matfile

    path = tmp_path / "wide.mat"
    savemat(path, {"GTcls": {"Segmentation": np.zeros((1, 64), np.uint8)}})
    assert read_segmentation(path).shape == (1, 64)
    original = matfile.MAX_LABEL_PIXELS
    matfile.MAX_LABEL_PIXELS = 32
    try:
        with pytest.raises(MatError, match="pixels"):
            read_segmentation(path)
    finally:
        matfile.MAX_LABEL_PIXELS = original
