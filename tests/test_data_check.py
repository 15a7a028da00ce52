"""``harness data check`` / ``check_dataset``: problems named file by file, counts, exit codes."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from harness.data.check import check_dataset
from harness.data.layout import AUG_LABELS, IMAGES, LABELS, SPLITS
from harness.data.prepare import prepare_dataset
from harness.data.synth import voc_palette
from test_data_helpers import SMALL, copy_devkit, devkit, error_lines, run_harness, sbd_source  # noqa: F401


@pytest.fixture
def prepared(devkit):
    assert prepare_dataset(devkit, workers=1, stream=None, manifest=False).ok
    return devkit


def _first(devkit, folder, suffix=".png"):
    return sorted((devkit / folder).glob(f"*{suffix}"))[0]


def _put_value(path, value):
    with Image.open(path) as image:
        pixels = np.array(image)
        mode = image.mode
    pixels[0, 0] = value
    out = Image.fromarray(pixels, mode="L")
    if mode == "P":
        out = out.convert("P")
        out.putpalette(voc_palette())
    out.save(path)


def test_prepared_synthetic_set_passes_with_counts(prepared):
    report = check_dataset(prepared, workers=2)
    assert report.ok, report.problems
    # trainaug's 6 SBD-covered train ids have their own SegmentationClassAug label; the other 2 share
    # train's (SegmentationClass) pairs: 8 + 6 + 12 + 6 distinct image/label pairs
    assert report.counts == {"train": SMALL.n_train, "val": SMALL.n_val, "aug": SMALL.n_aug,
                             "trainaug": SMALL.n_train + SMALL.n_aug, "pairs": 32, "problems": 0}
    assert report.summary().startswith("dataset OK:") and "\n" not in report.summary()


def test_the_smoke_layout_passes_without_prepare(sbd_source):
    assert check_dataset(sbd_source, quick=True).ok


def test_cli_reports_a_label_value_of_42_by_file(prepared, tmp_path):
    label = _first(prepared, LABELS)
    _put_value(label, 42)
    done = run_harness("data", "check", "--voc", prepared, cache=tmp_path / "cache")
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and str(label) in lines[0] and "42 (1 px)" in lines[0], done.stderr
    assert done.stdout.startswith("dataset FAILED:") and "1 bad values" in done.stdout
    # --quick reads headers only, so it does not see values: the documented trade-off
    quick = run_harness("data", "check", "--voc", prepared, "--quick", cache=tmp_path / "cache")
    assert quick.returncode == 0, quick.stderr


def test_values_in_an_aug_label_are_checked(prepared):
    label = _first(prepared, AUG_LABELS)
    _put_value(label, 77)
    report = check_dataset(prepared)
    assert not report.ok and report.kinds == {"bad_values": 1}
    assert str(label) in report.problems[0]


def test_missing_image_and_label_are_named(prepared):
    image, label = _first(prepared, IMAGES, ".jpg"), sorted((prepared / LABELS).glob("*.png"))[-1]
    image.unlink()
    label.unlink()
    report = check_dataset(prepared)
    assert report.kinds == {"missing_image": 1, "missing_label": 1}
    assert any(str(image) in p and "missing" in p for p in report.problems)
    assert any(str(label) in p and "missing" in p for p in report.problems)


def test_size_mismatch_and_truncation_are_caught_even_quick(prepared):
    label = _first(prepared, LABELS)
    with Image.open(label) as image:
        image.resize((10, 10)).save(label)
    aug_id = (prepared / SPLITS / "aug.txt").read_text().split()[0]
    truncated = prepared / AUG_LABELS / f"{aug_id}.png"
    truncated.write_bytes(truncated.read_bytes()[:50])
    report = check_dataset(prepared, quick=True)
    assert report.kinds == {"size_mismatch": 1, "unreadable": 1}
    assert any(str(label) in p and "10x10" in p for p in report.problems)
    assert any(str(truncated) in p and "not a complete PNG" in p for p in report.problems)


def test_rgb_label_is_rejected(prepared):
    label = _first(prepared, LABELS)
    with Image.open(label) as image:
        image.convert("RGB").save(label)
    report = check_dataset(prepared, quick=True)
    assert report.kinds == {"bad_mode": 1} and "'RGB'" in report.problems[0]


def test_val_leaking_into_training_lists(prepared):
    val = (prepared / SPLITS / "val.txt").read_text().split()
    with open(prepared / SPLITS / "trainaug.txt", "a") as handle:
        handle.write(val[0] + "\n")
    report = check_dataset(prepared, quick=True)
    assert report.kinds["val_leak"] == 1 and "trainaug.txt shares 1 id" in report.problems[0]


def test_expect_real_checks_the_counts(prepared):
    report = check_dataset(prepared, expect="real", quick=True)
    assert report.kinds == {"count": 4}
    assert any("train.txt: 8 ids, expected 1464" in p for p in report.problems)
    assert any("trainaug.txt: 20 ids, expected 10582" in p for p in report.problems)


def test_expect_real_wants_trainaug(devkit):
    report = check_dataset(devkit, expect="real", quick=True)
    assert any("trainaug.txt: missing" in p and "harness data prepare" in p for p in report.problems)


def test_listing_is_capped_with_a_count(prepared, tmp_path):
    for image in (prepared / IMAGES).glob("*.jpg"):
        image.unlink()
    done = run_harness("data", "check", "--voc", prepared, "--quick", cache=tmp_path / "cache")
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    total = SMALL.n_train + SMALL.n_aug + SMALL.n_val
    assert len(lines) == 21 and lines[-1].endswith(f"... and {total - 20} more problem(s)"), done.stderr
    assert f"{total} missing image" in done.stdout


@pytest.mark.parametrize("remove", ["VOC2012", "VOC2012/JPEGImages", "VOC2012/ImageSets/Segmentation/train.txt"])
def test_layout_problems_exit_2(prepared, tmp_path, remove):
    target = prepared / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    done = run_harness("data", "check", "--voc", prepared, cache=tmp_path / "cache")
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and remove.split("/")[-1] in lines[0], done.stderr


def test_cli_success_writes_the_manifest(prepared, tmp_path):
    done = run_harness("data", "check", "--voc", prepared, "--workers", "2", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dataset OK:")
    assert (prepared / "pspnet-repro-manifest.json").is_file()
    assert "manifest written to" in done.stderr


def test_expect_must_be_known(prepared):
    with pytest.raises(ValueError):
        check_dataset(prepared, expect="mostly")


def test_copy_is_checked_independently(prepared, tmp_path):
    other = copy_devkit(prepared, tmp_path / "copy")
    assert check_dataset(other, quick=True).ok


def test_blank_lines_in_a_split_list_are_named_by_file_and_line(prepared, tmp_path):
    """mmseg reads a blank line as the id '' and crashes mid-training on JPEGImages/.jpg."""
    path = prepared / SPLITS / "train.txt"
    ids = path.read_text().split()
    path.write_text(ids[0] + "\n\n" + "\n".join(ids[1:]) + "\n   \n")
    report = check_dataset(prepared, quick=True)
    assert report.kinds == {"blank_line": 2}
    assert f"{path}:2: blank line" in report.problems[0] and f"{path}:{len(ids) + 2}: blank line" in report.problems[1]
    done = run_harness("data", "check", "--voc", prepared, "--quick", cache=tmp_path / "cache")
    assert done.returncode == 2 and f"{path}:2: blank line" in done.stderr


@pytest.mark.parametrize("expect", ["any", "real"])
def test_duplicate_ids_are_reported(prepared, expect):
    path = prepared / SPLITS / "val.txt"
    ids = path.read_text().split()
    path.write_text("\n".join(ids + [ids[1]]) + "\n")
    report = check_dataset(prepared, expect=expect, quick=True)
    assert report.kinds.get("duplicate_id") == 1
    assert any(f"{path}:{len(ids) + 1}: id {ids[1]} repeats line 2" in p for p in report.problems), report.problems
