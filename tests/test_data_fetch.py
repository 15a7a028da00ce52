"""``harness data fetch`` and ``data prepare --archives`` against a real HTTP server on 127.0.0.1
serving archives with the real VOC/SBD member paths (built from the synthetic set)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from archive_server import ArchiveServer, build_sbd_tgz, build_voc_tar, md5, write_registry
from harness.core.errors import EnvironmentNotReady
from harness.data.download import RetryPolicy, redirect_refused
from harness.data.fetch import fetch_one
from harness.data.layout import AUG_LABELS
from harness.data.manifest import TRACKED, dataset_fingerprint
from harness.data.prepare import prepare_dataset
from harness.data.registry import load_registry
from support import wait_for, mount_tmpfs, umount
from test_data_helpers import REPO, error_lines, sbd_source  # noqa: F401

VOC_FILE, SBD_FILE = "VOCtrainval_11-May-2012.tar", "benchmark.tgz"


@pytest.fixture(scope="module")
def archives(sbd_source, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    return {"voc2012": build_voc_tar(sbd_source, folder / VOC_FILE), "sbd": build_sbd_tgz(sbd_source, folder / SBD_FILE)}


@pytest.fixture
def server(archives):
    with ArchiveServer() as srv:
        srv.behaviour.files = {f"/site/{p.name}": p.read_bytes() for p in archives.values()}
        yield srv


@pytest.fixture
def registry(tmp_path, archives, server) -> Path:
    return write_registry(tmp_path / "registry.yaml", archives,
                          {name: [server.url(f"/site/{p.name}")] for name, p in archives.items()})


def fetch_cli(*args, tmp_path: Path, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``harness data ARGS``; ``env`` values of None unset the variable."""
    environment = {key: value for key, value in os.environ.items() if key != "PSPNET_MIRRORS"}
    environment |= {"PSPNET_CACHE": str(tmp_path / "pspnet-cache"), "PSPNET_FETCH_BACKOFF_S": "0.01",
                    "PSPNET_DATA": str(tmp_path / "home" / "VOCdevkit"), "PYTHONPATH": str(REPO), **(env or {})}
    environment = {key: value for key, value in environment.items() if value is not None}
    return subprocess.run([sys.executable, "-m", "harness", "data", *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def extract_then_convert(archives: dict[str, Path], root: Path) -> Path:
    """What a user does by hand: untar both, move SBD's dataset to VOCaug/dataset, prepare."""
    for path in archives.values():
        with tarfile.open(path) as tar:
            tar.extractall(root, filter="data")
    devkit = root / "VOCdevkit"
    (devkit / "VOCaug").mkdir()
    shutil.move(root / "benchmark_RELEASE" / "dataset", devkit / "VOCaug" / "dataset")
    assert prepare_dataset(devkit, workers=1, stream=None).ok
    return devkit


def tracked_files(devkit: Path) -> dict[str, bytes]:
    return {f"{folder}/{p.name}": p.read_bytes() for folder in TRACKED if (devkit / folder).is_dir()
            for p in (devkit / folder).iterdir() if p.is_file() and not p.name.startswith(".")}


def test_from_nothing_fetch_prepare_equals_extract_then_convert(tmp_path, archives, registry, server, monkeypatch):
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "pspnet-cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    devkit, downloads = empty / "data" / "VOCdevkit", empty / "data" / "downloads"  # the defaults, no $PSPNET_DATA
    done = fetch_cli("fetch", "--prepare", "--registry", registry, "--workers", "2", tmp_path=tmp_path,
                     cwd=empty, env={"PSPNET_DATA": None})
    assert done.returncode == 0, done.stderr
    plan = done.stdout.splitlines()[:4]  # printed before anything is downloaded
    assert plan[0].startswith(f"fetch: download {VOC_FILE}") and plan[3].startswith("fetch: disk needed: ")
    assert sorted(p.name for p in downloads.iterdir() if not p.name.startswith(".")) == sorted([SBD_FILE, VOC_FILE])
    check = fetch_cli("check", tmp_path=tmp_path, env={"PSPNET_DATA": str(devkit)})  # --voc: the data home
    assert check.returncode == 0, check.stderr

    by_hand = extract_then_convert(archives, tmp_path / "by-hand")
    assert tracked_files(devkit) == tracked_files(by_hand)
    assert dataset_fingerprint(devkit) == dataset_fingerprint(by_hand)
    assert f"fingerprint {dataset_fingerprint(devkit)}" in done.stdout
    manifest = json.loads((devkit / "pspnet-repro-manifest.json").read_text())
    assert manifest["sources"]["registry"]["path"] == str(registry.resolve())
    assert manifest["sources"]["archives"]["sbd"]["md5"] == md5(archives["sbd"])
    assert not (devkit / "VOCaug").exists() and not (devkit / "VOC2012" / "Annotations").exists()


def test_dry_run_prints_the_plan_and_downloads_nothing(tmp_path, registry, server, archives):
    done = fetch_cli("fetch", "--prepare", "--dry-run", "--registry", registry, "--cache", tmp_path / "dl",
                     tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"download {SBD_FILE}" in done.stdout and "disk needed" in done.stdout
    assert str(tmp_path / "home" / "VOCdevkit") in done.stdout  # the data home, from $PSPNET_DATA
    assert server.behaviour.served == {} and not (tmp_path / "dl" / SBD_FILE).exists()


def test_cut_download_resumes_without_fetching_its_bytes_again(tmp_path, registry, server, archives):
    path = f"/site/{SBD_FILE}"
    size = archives["sbd"].stat().st_size
    server.behaviour.cut_after[path] = size // 2
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert server.behaviour.served[path] == size  # the first half was not sent twice
    ranges = [r for p, r in server.behaviour.requests if p == path]
    assert ranges == [None, f"bytes={size // 2}-"]
    assert md5(tmp_path / "dl" / SBD_FILE) == md5(archives["sbd"])


def test_a_later_fetch_resumes_the_part_a_failed_one_left(tmp_path, registry, server, archives):
    archive = load_registry(registry).archive("voc2012")
    path = f"/site/{VOC_FILE}"
    server.behaviour.cut_after[path] = archive.size // 3
    with pytest.raises(EnvironmentNotReady, match="no source could be used"):
        fetch_one(archive, tmp_path / "dl", [], retry=RetryPolicy(attempts=1, backoff_s=0), stream=None)
    assert (tmp_path / "dl" / f"{VOC_FILE}.part").stat().st_size == archive.size // 3
    assert not (tmp_path / "dl" / VOC_FILE).exists()
    fetch_one(archive, tmp_path / "dl", [], retry=RetryPolicy(attempts=1, backoff_s=0), stream=None)
    assert server.behaviour.served[path] == archive.size
    assert md5(tmp_path / "dl" / VOC_FILE) == archive.md5 and not (tmp_path / "dl" / f"{VOC_FILE}.part").exists()


def test_server_without_range_support_starts_over(tmp_path, registry, server, archives):
    server.behaviour.ranges = False
    path = f"/site/{SBD_FILE}"
    size = archives["sbd"].stat().st_size
    server.behaviour.cut_after[path] = size // 2
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert server.behaviour.served[path] == size // 2 + size  # whole again: nothing was spliced
    assert md5(tmp_path / "dl" / SBD_FILE) == md5(archives["sbd"])


def test_checksum_mismatch_is_refused_in_one_line_and_nothing_kept(tmp_path, registry, server, archives):
    path = f"/site/{SBD_FILE}"
    good = server.behaviour.files[path]
    server.behaviour.files[path] = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and SBD_FILE in errors[0], done.stderr
    assert f"expected {md5(archives['sbd'])}" in errors[0]
    assert f"got {md5_bytes(server.behaviour.files[path])}" in errors[0]
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [".fetch.lock"]


def md5_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


def test_first_mirror_404s_the_second_works(tmp_path, registry, server, archives):
    server.behaviour.files[f"/mirror/{VOC_FILE}"] = archives["voc2012"].read_bytes()
    done = fetch_cli("fetch", "voc2012", "--registry", registry, "--cache", tmp_path / "dl",
                     "--mirror", server.url("/gone"), tmp_path=tmp_path,
                     env={"PSPNET_MIRRORS": server.url("/mirror")})
    assert done.returncode == 0, done.stderr
    assert [p for p, _ in server.behaviour.requests] == [f"/gone/{VOC_FILE}", f"/mirror/{VOC_FILE}"]
    assert "HTTP 404" in done.stderr


def test_local_folder_and_file_url_mirrors(tmp_path, registry, server, archives):
    done = fetch_cli("fetch", "--registry", registry, "--cache", tmp_path / "dl",
                     "--mirror", tmp_path / "nothing-here", "--mirror", archives["sbd"].parent.as_uri(),
                     tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert server.behaviour.requests == []  # both came from the file:// mirror
    assert md5(tmp_path / "dl" / VOC_FILE) == md5(archives["voc2012"])


def test_a_redirect_is_followed(tmp_path, archives, server):
    server.behaviour.redirects["/old/benchmark.tgz"] = server.url(f"/site/{SBD_FILE}")
    registry = write_registry(tmp_path / "r.yaml", archives, {"voc2012": [server.url(f"/site/{VOC_FILE}")],
                                                              "sbd": [server.url("/old/benchmark.tgz")]})
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [p for p, _ in server.behaviour.requests] == ["/old/benchmark.tgz", f"/site/{SBD_FILE}"]


def test_a_redirect_to_a_file_url_is_refused_and_no_source_is_exit_3(tmp_path, archives, server):
    server.behaviour.redirects["/old/benchmark.tgz"] = archives["sbd"].as_uri()
    registry = write_registry(tmp_path / "r.yaml", archives, {"voc2012": [server.url(f"/site/{VOC_FILE}")],
                                                              "sbd": [server.url("/old/benchmark.tgz"),
                                                                      "http://127.0.0.1:9/benchmark.tgz"]})
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "file scheme, not http(s) (refused)" in done.stderr and "Traceback" not in done.stderr
    assert len(error_lines(done.stderr)) <= 1 and not (tmp_path / "dl" / SBD_FILE).exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (the tests run as root in CI and here); skipped where mounting is not allowed."""
    mount = tmp_path / "small-disk"
    mount_tmpfs(mount, "size=1m")
    yield mount
    umount(mount)


def test_a_disk_that_fills_during_the_download_is_exit_3_and_nothing_under_the_final_name(
        tmp_path, registry, server, archives, small_disk):
    path = f"/site/{VOC_FILE}"

    part = small_disk / "dl" / f"{VOC_FILE}.part"

    def fill_the_disk():  # once the client has written some of the file (socket buffers run ahead)
        wait_for(lambda: part.is_file() and part.stat().st_size >= 64 * 1024, timeout=60, what="a part file")
        with open(small_disk / "filler", "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass

    server.behaviour.half_way[path] = fill_the_disk
    done = fetch_cli("fetch", "voc2012", "--registry", registry, "--cache", small_disk / "dl", tmp_path=tmp_path)
    assert done.returncode == 3, done.stderr
    errors = error_lines(done.stderr) or [line for line in done.stderr.splitlines() if "disk full" in line]
    assert len(errors) == 1 and "disk full" in errors[0] and "Traceback" not in done.stderr, done.stderr
    assert not (small_disk / "dl" / VOC_FILE).exists()
    assert part.stat().st_size >= 64 * 1024  # kept: resumed once there is room
    assert f"{part}: disk full after {part.stat().st_size} of " in errors[0]


def evil_tar(path: Path, name: str) -> Path:
    import io

    with tarfile.open(path, "w") as tar:
        for member, data in (("VOCdevkit/VOC2012/JPEGImages/a.jpg", b"x"), (name, b"owned\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("member", ["VOCdevkit/../../outside.txt", "/tmp/outside-absolute.txt"])
def test_an_archive_with_a_climbing_or_absolute_member_is_refused(tmp_path, archives, member):
    (tmp_path / "in").mkdir()
    evil = evil_tar(tmp_path / "in" / VOC_FILE, member)
    registry = write_registry(tmp_path / "r.yaml", {"voc2012": evil, "sbd": archives["sbd"]},
                              {"voc2012": ["http://127.0.0.1:9/x"], "sbd": ["http://127.0.0.1:9/y"]})
    devkit = tmp_path / "out" / "VOCdevkit"
    done = fetch_cli("prepare", "--archives", evil, archives["sbd"], "--registry", registry, "--voc", devkit,
                     tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "refused" in errors[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "out" / "outside.txt").exists()
    assert not Path("/tmp/outside-absolute.txt").exists()


def test_prepare_from_archives_is_restartable(tmp_path, archives, registry, monkeypatch):
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "pspnet-cache"))
    devkit = tmp_path / "VOCdevkit"
    cache = archives["sbd"].parent
    first = fetch_cli("prepare", "--archives", cache, "--registry", registry, "--voc", devkit, "--workers", "1",
                      tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    fingerprint = dataset_fingerprint(devkit)
    pngs = sorted((devkit / AUG_LABELS).glob("*.png"))
    pngs[0].unlink()
    pngs[1].write_bytes(pngs[1].read_bytes()[:20])  # cut short, as by a crash of something else
    jpeg = next((devkit / "VOC2012" / "JPEGImages").glob("*.jpg"))
    jpeg.unlink()
    kept = pngs[2].stat().st_mtime_ns
    again = fetch_cli("prepare", "--archives", cache, "--registry", registry, "--voc", devkit, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 files written" in again.stderr and "2 labels converted" in again.stderr, again.stderr
    assert pngs[2].stat().st_mtime_ns == kept
    assert dataset_fingerprint(devkit) == fingerprint


def test_prepare_from_archives_refuses_an_archive_that_is_not_the_registrys(tmp_path, archives, registry, sbd_source):
    (tmp_path / "other").mkdir()
    other = build_sbd_tgz(sbd_source, tmp_path / "other" / SBD_FILE)
    with open(other, "ab") as handle:  # the same members, other bytes: not the registry's archive
        handle.write(b"\0" * 10)
    done = fetch_cli("prepare", "--archives", archives["voc2012"], other, "--registry", registry,
                     "--voc", tmp_path / "VOCdevkit", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "md5 mismatch" in done.stderr and not (tmp_path / "VOCdevkit").exists()


def test_redirects_only_to_http_and_never_down_from_https():
    assert redirect_refused("https://a/x", "http://b/x") == "from https down to plain http"
    assert redirect_refused("https://a/x", "file:///etc/passwd") == "file scheme, not http(s)"
    assert redirect_refused("http://a/x", "ftp://b/x") == "ftp scheme, not http(s)"
    assert redirect_refused("http://a/x", "https://b/x") is None  # up to https is fine
    assert redirect_refused("https://a/x", "https://b/x") is None


def test_a_second_fetch_waits_for_the_first_on_the_same_cache(tmp_path, registry, server, archives):
    import fcntl
    import time

    cache = tmp_path / "dl"
    cache.mkdir()
    holder = os.open(cache / ".fetch.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running fetch holds it
    environment = {**os.environ, "PSPNET_FETCH_BACKOFF_S": "0", "PSPNET_CACHE": str(tmp_path / "c")}
    waiting = subprocess.Popen([sys.executable, "-m", "harness", "data", "fetch", "sbd", "--registry", str(registry),
                                "--cache", str(cache)], cwd=REPO, env=environment, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert waiting.poll() is None and server.behaviour.requests == [] and not list(cache.glob("*.part"))
    finally:
        os.close(holder)  # the first fetch ends
    _, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, stderr
    assert "waiting for another fetch" in stderr and md5(cache / SBD_FILE) == md5(archives["sbd"])


@pytest.mark.parametrize("text, fragment", [
    ("archives: {}\n", "archives.voc2012: missing"),
    ("archives: {voc2012: {file: a.tar, md5: nothex, size: 1, unpacked_bytes: 1, urls: [x]}}\n", "md5"),
    ("[unclosed\n", "not YAML"),
])
def test_a_bad_registry_is_one_line_exit_2(tmp_path, text, fragment):
    bad = tmp_path / "registry.yaml"
    bad.write_text(text)
    done = fetch_cli("fetch", "--dry-run", "--registry", bad, tmp_path=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and fragment in lines[0], done.stderr


def test_a_redirect_loop_stops_after_a_few_and_is_exit_3(tmp_path, archives, server):
    server.behaviour.redirects["/loop/benchmark.tgz"] = server.url("/loop/benchmark.tgz")
    registry = write_registry(tmp_path / "r.yaml", archives, {"voc2012": [server.url(f"/site/{VOC_FILE}")],
                                                              "sbd": [server.url("/loop/benchmark.tgz")]})
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 3 and "more than 5 redirects" in done.stderr, done.stderr
    assert len(server.behaviour.requests) == 6


def test_a_source_offering_more_bytes_than_the_registry_size_is_refused(tmp_path, registry, server, archives):
    path = f"/site/{SBD_FILE}"
    server.behaviour.files[path] += b"trailing junk"
    done = fetch_cli("fetch", "sbd", "--registry", registry, "--cache", tmp_path / "dl", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    size = archives["sbd"].stat().st_size
    assert f"offers {size + 13} bytes, expected {size}" in done.stderr
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [".fetch.lock"]  # not a byte written


def test_prepare_from_archives_removes_temp_files_a_killed_run_left(tmp_path, archives, registry):
    devkit = tmp_path / "VOCdevkit"
    images = devkit / "VOC2012" / "JPEGImages"
    images.mkdir(parents=True)
    dead = images / ".2008_000001.jpg.999999999.tmp"  # no such pid: its writer is gone
    dead.write_bytes(b"half a jpeg")
    done = fetch_cli("prepare", "--archives", archives["voc2012"], archives["sbd"], "--registry", registry,
                     "--voc", devkit, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not dead.exists() and not list(devkit.rglob("*.tmp"))
