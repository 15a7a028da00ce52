"""The bounded archive reader and the bounded copier (harness.core.untrusted), on hostile archives and
folders built here: links, special files, `./` names, a file then a member under it, a 1 GB
long-name or PAX header in a 1 MB archive, truncated archives, FIFOs and /dev/zero."""
from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from harness.core.errors import BadInput
from harness.core.untrusted import (ArchiveLimits, ArchiveRefused, UntrustedInput, copy_tree_bounded, extract_archive,
                                     iter_archive, read_bounded)
from support import run_measured

MAX_PEAK_MIB = 512


def _tar(path: Path, entries: list[tuple[str, object]], mode: str = "w:gz") -> Path:
    """entries: (name, bytes) a file, (name, None) a folder, (name, TarInfo-tweak) anything else."""
    with tarfile.open(path, mode) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                content(info)
                tar.addfile(info)
    return path


def _symlink(info: tarfile.TarInfo) -> None:
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"


def _hardlink(info: tarfile.TarInfo) -> None:
    info.type, info.linkname = tarfile.LNKTYPE, "bundle.json"


def _fifo(info: tarfile.TarInfo) -> None:
    info.type = tarfile.FIFOTYPE


def _device(info: tarfile.TarInfo) -> None:
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 5


def _huge_header(path: Path, kind: bytes, claimed: int = 1 << 30, present: int = 1 << 20) -> Path:
    """A plain tar whose first header claims ``claimed`` bytes of long-name (b'L') or PAX (b'x')
    data, followed by only ``present`` bytes: what a hostile 1 MB archive looks like."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = kind, claimed
    header = info._create_header(info.get_info(), tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    with open(path, "wb") as out:
        out.write(header)
        out.write(b"a" * present)
    return path


def test_members_are_normalised_and_the_archive_root_is_skipped(tmp_path: Path):
    archive = _tar(tmp_path / "a.tar.gz", [("./", None), ("./bundle.json", b"{}"), ("./runs", None),
                                           ("./runs//x/./log", b"hello")])
    seen = [(m.name, m.is_dir, m.stream.read() if m.stream else None) for m in iter_archive(archive)]
    assert seen == [("bundle.json", False, b"{}"), ("runs", True, None), ("runs/x/log", False, b"hello")]
    assert extract_archive(archive, tmp_path / "out") == ["bundle.json", "runs/x/log"]
    assert (tmp_path / "out" / "runs" / "x" / "log").read_bytes() == b"hello"


@pytest.mark.parametrize("name, content, why", [
    ("/etc/passwd", b"x", "an absolute path"),
    ("runs/../../secret", b"x", "climbs out"),
    ("a\\b", b"x", "backslash"),
    ("train.log", _symlink, "a link (symbolic)"),
    ("train.log", _hardlink, "a link (hard)"),
    ("train.log", _fifo, "FIFO"),
    ("zero", _device, "device"),
])
def test_unsafe_members_are_refused_in_one_line_naming_archive_and_member(tmp_path: Path, name, content, why):
    archive = _tar(tmp_path / "a.tar.gz", [("bundle.json", b"{}"), (name, content)])
    with pytest.raises(ArchiveRefused) as refused:
        extract_archive(archive, tmp_path / "out")
    message = str(refused.value)
    assert str(archive) in message and why in message and "\n" not in message
    assert isinstance(refused.value, BadInput) and refused.value.exit_code == 2
    assert not list((tmp_path / "out").iterdir())  # what was written before the refusal is gone


def test_a_member_under_a_file_or_twice_is_one_line(tmp_path: Path):
    under = _tar(tmp_path / "under.tar", [("a", b"file"), ("a/b", b"under it")], mode="w")
    with pytest.raises(ArchiveRefused, match=r"member 'a/b' is under 'a', which is a file"):
        extract_archive(under, tmp_path / "out")
    twice = _tar(tmp_path / "twice.tar", [("a", b"one"), ("a", b"two")], mode="w")
    with pytest.raises(ArchiveRefused, match="appears twice"):
        list(iter_archive(twice))
    folder_then_file = _tar(tmp_path / "ff.tar", [("a/b", b"x"), ("a", b"file")], mode="w")
    with pytest.raises(ArchiveRefused, match="both a folder and a file"):
        list(iter_archive(folder_then_file))


@pytest.mark.parametrize("kind, label", [(tarfile.GNUTYPE_LONGNAME, "GNU long-name"), (tarfile.XHDTYPE, "PAX")])
def test_a_1gb_header_in_a_1mb_archive_is_refused_before_it_is_read(tmp_path: Path, kind, label):
    archive = _huge_header(tmp_path / "huge.tar", kind)
    with pytest.raises(ArchiveRefused, match=f"a {label} header of 1073741824 bytes"):
        list(iter_archive(archive))
    code = ("import sys; from harness.core.untrusted import iter_archive, ArchiveRefused\n"
            "try: list(iter_archive(sys.argv[1]))\nexcept ArchiveRefused as e: print(e); sys.exit(2)")
    done, peak_mib = run_measured("-c", code, str(archive), timeout=60)
    assert done.returncode == 2 and len(done.stdout) < 400, done.stdout + done.stderr
    assert peak_mib < MAX_PEAK_MIB


def test_truncated_or_corrupt_archives_are_one_line(tmp_path: Path):
    good = _tar(tmp_path / "good.tar.gz", [("bundle.json", b"{}"), ("big", os.urandom(200_000))])
    data = good.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveRefused, match="not a tar archive \\(not a readable archive"):
        extract_archive(cut, tmp_path / "out")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b" + os.urandom(4000))
    with pytest.raises(ArchiveRefused, match="not a tar archive \\(not a readable archive"):
        list(iter_archive(junk))
    with pytest.raises(ArchiveRefused, match="no such file"):
        list(iter_archive(tmp_path / "absent.tar"))


def test_counts_and_sizes_are_bounded_before_reading(tmp_path: Path):
    archive = _tar(tmp_path / "a.tar", [(f"f{i}", b"12345") for i in range(5)], mode="w")
    with pytest.raises(ArchiveRefused, match="more than 3 members"):
        list(iter_archive(archive, ArchiveLimits(max_members=3)))
    with pytest.raises(ArchiveRefused, match="holds 5 bytes"):
        list(iter_archive(archive, ArchiveLimits(max_member_bytes=4)))
    with pytest.raises(ArchiveRefused, match="more than 12 bytes"):
        list(iter_archive(archive, ArchiveLimits(max_total_bytes=12)))
    with pytest.raises(ArchiveRefused, match="a name of 2 characters"):
        list(iter_archive(archive, ArchiveLimits(max_name_chars=1)))


def test_extract_select_writes_only_the_chosen_files(tmp_path: Path):
    archive = _tar(tmp_path / "a.tar.gz", [("keep/x", b"1"), ("drop/y", b"2")])
    assert extract_archive(archive, tmp_path / "out", select=lambda name: name.startswith("keep/")) == ["keep/x"]
    assert not (tmp_path / "out" / "drop" / "y").exists()


def test_read_bounded_reads_regular_files_only_and_never_blocks(tmp_path: Path):
    regular = tmp_path / "r"
    regular.write_bytes(b"abc")
    assert read_bounded(regular, 3) == b"abc"
    with pytest.raises(UntrustedInput, match="3 bytes \\(at most 2\\)"):
        read_bounded(regular, 2)
    link = tmp_path / "link"
    link.symlink_to(regular)
    with pytest.raises(UntrustedInput, match="a symbolic link"):
        read_bounded(link, 10)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UntrustedInput, match="a FIFO"):
        read_bounded(fifo, 10)
    with pytest.raises(UntrustedInput, match="a device"):
        read_bounded(Path("/dev/zero"), 10)


def _run_folder(root: Path) -> Path:
    (root / "work_dir" / "a").mkdir(parents=True)
    (root / "train.log").write_text("log\n")
    (root / "work_dir" / "a" / "x.log").write_text("x\n")
    return root


@pytest.mark.parametrize("hostile", ["file_link", "dir_link", "fifo", "dev_zero"])
def test_copy_tree_refuses_links_and_special_files_and_leaves_nothing(tmp_path: Path, hostile):
    src = _run_folder(tmp_path / "src")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY\n")
    (src / "train.log").unlink()
    if hostile == "file_link":
        (src / "train.log").symlink_to(secret / "id_rsa")
    elif hostile == "dir_link":
        (src / "train.log").write_text("log\n")
        (src / "work_dir" / "keys").symlink_to(secret)
    elif hostile == "fifo":
        os.mkfifo(src / "train.log")
    else:
        (src / "train.log").symlink_to("/dev/zero")
    with pytest.raises(UntrustedInput) as refused:
        copy_tree_bounded(src, tmp_path / "dst")
    assert "refused" in str(refused.value) and str(src) in str(refused.value)
    assert not (tmp_path / "dst").exists()


def test_copy_tree_copies_regular_files_and_bounds_sizes(tmp_path: Path):
    src = _run_folder(tmp_path / "src")
    assert sorted(copy_tree_bounded(src, tmp_path / "dst")) == ["train.log", "work_dir/a/x.log"]
    assert (tmp_path / "dst" / "work_dir" / "a" / "x.log").read_text() == "x\n"
    with pytest.raises(UntrustedInput, match="4 bytes \\(at most 3\\)"):
        copy_tree_bounded(src, tmp_path / "small", ArchiveLimits(max_member_bytes=3))
    assert not (tmp_path / "small").exists()
    sparse = src / "work_dir" / "a" / "x.log"
    with open(sparse, "r+b") as handle:
        handle.truncate(3 << 30)  # 3 GB, sparse: no real bytes on disk
    with pytest.raises(UntrustedInput, match="3221225472 bytes"):
        copy_tree_bounded(src, tmp_path / "sparse")
    assert not (tmp_path / "sparse").exists()


def test_l5_compare_of_a_run_whose_result_is_truncated_names_the_damaged_file(tmp_path: Path):
    import shutil

    from support import REPO, run_cli

    run_id = "20261125T210711Z-smoke_cpu-206fec"
    run = tmp_path / "runs" / run_id
    shutil.copytree(REPO / "tests" / "fixtures" / "runs" / run_id, run)
    result = run / "result.json"
    result.write_bytes(result.read_bytes()[:200])  # cut short, as a full disk leaves it
    done = run_cli("compare", run_id, run_id, "--results", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{result}: " in done.stderr and "not JSON" in done.stderr, done.stderr


def test_sigterm_and_sighup_raise_keyboard_interrupt_while_ingest_writes():
    """What lets `harness ingest` remove a half-written run on SIGTERM or SIGHUP (exit 130)."""
    import signal

    from harness.core.scratch import signals_interrupt

    # As in a fresh `harness ingest` process: an earlier test in this worker may have left a run's
    # handlers installed (those are kept by signals_interrupt, as they should be in a run).
    saved = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with pytest.raises(KeyboardInterrupt):
                with signals_interrupt():
                    os.kill(os.getpid(), sig)
                    time.sleep(5)  # the handler raises here, at once
            assert signal.getsignal(sig) is signal.SIG_DFL
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_gnu_sparse_member_is_refused_unread(tmp_path: Path):
    """A GNU sparse 1.0 map is read by tarfile in a loop bounded only by the archive: refused."""
    info = tarfile.TarInfo("data.bin")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "data.bin",
                        "GNU.sparse.realsize": "10"}
    body = b"999999999\n" + b"1\n" * 100_000
    info.size = len(body)
    archive = tmp_path / "sparse.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(ArchiveRefused, match="sparse files are not read"):
        list(iter_archive(archive))
