"""The dataset manifest and fingerprint."""
from __future__ import annotations

import json
import os

import pytest

from harness.data import manifest as manifest_module
from harness.data.layout import AUG_LABELS, LABELS, DataError
from harness.data.manifest import MANIFEST_NAME, dataset_fingerprint, fingerprint_of, load_manifest, write_manifest
from harness.data.prepare import prepare_dataset
from test_data_helpers import copy_devkit, devkit, run_harness, sbd_source  # noqa: F401


@pytest.fixture
def prepared(devkit):
    assert prepare_dataset(devkit, workers=1, stream=None).ok
    return devkit


def _no_hashing(monkeypatch):
    def refuse(path):
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(manifest_module, "sha256_file", refuse)


def test_prepare_writes_a_complete_manifest(prepared):
    data = json.loads((prepared / MANIFEST_NAME).read_text())
    files = {f["path"]: f for f in data["files"]}
    assert data["splits"] == {"train": 8, "val": 6, "aug": 12, "trainaug": 20}
    assert data["fingerprint"] == fingerprint_of(data["files"])
    assert data["file_count"] == len(files) == 26 + 14 + 21 + 4  # jpg, SegmentationClass, Aug, split lists
    label = next(p for p in files if p.startswith(AUG_LABELS))
    assert files[label]["size"] == (prepared / label).stat().st_size
    assert not [p for p in prepared.iterdir() if p.name.endswith(".tmp")]


def test_prepare_hashes_match_a_full_rehash(prepared):
    stored = json.loads((prepared / MANIFEST_NAME).read_text())
    write_manifest(prepared, rehash=True)
    assert json.loads((prepared / MANIFEST_NAME).read_text())["fingerprint"] == stored["fingerprint"]


def test_fingerprint_is_stable_and_uses_the_cached_manifest(prepared, monkeypatch):
    first = dataset_fingerprint(prepared)
    _no_hashing(monkeypatch)
    assert dataset_fingerprint(prepared) == first
    assert load_manifest(prepared)["fingerprint"] == first


def test_one_changed_label_byte_changes_the_fingerprint(prepared):
    before = dataset_fingerprint(prepared)
    label = sorted((prepared / LABELS).glob("*.png"))[0]
    data = bytearray(label.read_bytes())
    data[20] ^= 0x01  # inside IHDR: same size, different content
    label.write_bytes(bytes(data))
    after = dataset_fingerprint(prepared)
    assert after != before
    assert dataset_fingerprint(prepared) == after


def test_only_changed_files_are_rehashed(prepared, monkeypatch):
    dataset_fingerprint(prepared)
    label = sorted((prepared / LABELS).glob("*.png"))[0]
    os.utime(label, ns=(label.stat().st_mtime_ns + 10**9,) * 2)
    seen = []
    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda path: seen.append(path) or real(path))
    dataset_fingerprint(prepared)
    assert seen == [label]


def test_a_copy_has_the_same_fingerprint(prepared, tmp_path):
    other = copy_devkit(prepared, tmp_path / "elsewhere")
    (other / MANIFEST_NAME).unlink()
    assert dataset_fingerprint(other) == dataset_fingerprint(prepared)


def test_read_only_dataset_gets_its_manifest_in_the_cache(prepared, tmp_path, monkeypatch):
    (prepared / MANIFEST_NAME).unlink()
    real = manifest_module.write_text_atomic

    def read_only(path, text):
        if path.parent == prepared:
            raise PermissionError(13, "Permission denied", str(path))
        real(path, text)

    monkeypatch.setattr(manifest_module, "write_text_atomic", read_only)
    where = write_manifest(prepared)
    assert where.is_relative_to(tmp_path / "cache" / "manifests") and where.is_file()
    assert not (prepared / MANIFEST_NAME).exists()
    fingerprint = json.loads(where.read_text())["fingerprint"]
    _no_hashing(monkeypatch)
    assert dataset_fingerprint(prepared) == fingerprint  # found in the cache


def test_cli_fingerprint(prepared, tmp_path):
    done = run_harness("data", "fingerprint", "--voc", prepared, cache=tmp_path / "cache")
    assert done.returncode == 0 and done.stdout.strip() == dataset_fingerprint(prepared)
    empty = run_harness("data", "fingerprint", "--voc", tmp_path / "empty", cache=tmp_path / "cache")
    assert empty.returncode == 2 and "no dataset files" in empty.stderr


def test_empty_folder_has_no_fingerprint(tmp_path):
    with pytest.raises(DataError):
        dataset_fingerprint(tmp_path)


def test_stale_or_foreign_manifest_is_ignored(prepared):
    fingerprint = dataset_fingerprint(prepared)
    (prepared / MANIFEST_NAME).write_text("{not json")
    assert load_manifest(prepared) is None
    assert dataset_fingerprint(prepared) == fingerprint
    # a new file in a tracked folder invalidates the stored list
    (prepared / AUG_LABELS / "extra.png").write_bytes(b"x")
    assert load_manifest(prepared) is None
    assert dataset_fingerprint(prepared) != fingerprint
