"""Bundles that verify themselves (issue 12 item 4): `harness bundle`, `harness verify`, and
`harness ingest BUNDLE`, on a real run folder (the committed smoke_cpu run)."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.evidence.bundles.tarball import write_tarball
from harness.store.records import BundleRecord
from harness.store.runs import RunStore
from support import REPO, run_cli

RUN_ID = "20261125T210711Z-smoke_cpu-206fec"
FIXTURE_RUN = REPO / "tests" / "fixtures" / "runs" / RUN_ID
ATTEMPT = "work_dir/20261125_210714"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    shutil.copytree(FIXTURE_RUN, results / "runs" / RUN_ID)
    out = tmp_path / "claim.tar.gz"
    made = run_cli("bundle", RUN_ID, "--results", str(results), "-o", str(out))
    assert made.returncode == 0, made.stderr
    return out


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def repack(members_: dict[str, bytes], out: Path, *, refresh_manifest: bool = False) -> Path:
    """The bundle with its files changed; ``refresh_manifest``: bundle.json's checksums rewritten
    to match, as a forger would."""
    if refresh_manifest:
        import hashlib

        record = BundleRecord.model_validate_json(members_[BundleRecord.FILE])
        for entry in record.files:
            data = members_[entry.path]
            entry.size, entry.sha256 = len(data), hashlib.sha256(data).hexdigest()
        members_[BundleRecord.FILE] = record.model_dump_json(indent=2).encode()
    write_tarball(out, list(members_.items()))
    return out


def verify(path: Path, cwd: Path | None = None, env: dict | None = None):
    return run_cli("verify", str(path), cwd=cwd, env=env)


def test_bundle_is_deterministic_complete_and_has_no_checkpoints(bundle: Path, tmp_path: Path):
    again = tmp_path / "again.tar.gz"
    assert run_cli("bundle", RUN_ID, "--results", str(tmp_path / "results"), "-o", str(again)).returncode == 0
    assert again.read_bytes() == bundle.read_bytes()
    files = members(bundle)
    record = BundleRecord.model_validate_json(files[BundleRecord.FILE])
    run = f"runs/{RUN_ID}"
    for name in ("recipe.yaml", "resolved_config.py", "train.log", "result.json", "provenance.json", "worker_env.json",
                 "plan.json", "job.json", "dataset.json", "status.json", f"{ATTEMPT}/vis_data/scalars.json",
                 f"{ATTEMPT}/20261125_210714.log", "configs/pspnet_r18-d8_synthvoc_cpu-smoke.py"):
        assert f"{run}/{name}" in files, name
    assert not [n for n in files if n.endswith(".pth") or "/plots/" in n]
    assert any("checkpoints" in line for line in record.left_out)
    assert {f.path for f in record.files} == set(files) - {BundleRecord.FILE}
    assert record.runs == [RUN_ID] and record.made_by["harness_version"]
    assert record.image_locks[RUN_ID].kind == "cpu" and record.image_locks[RUN_ID].digest.startswith("sha256:")
    with tarfile.open(bundle) as tar:
        assert all(m.mtime == 0 and m.uid == 0 and m.isfile() for m in tar)


def test_bundle_verifies_in_a_fresh_copy_of_the_harness_without_the_store(bundle: Path, tmp_path: Path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # The clone has the committed harness; the code under test is copied over it (uncommitted edits too).
    shutil.rmtree(clone / "harness")
    shutil.copytree(REPO / "harness", clone / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "reader"
    elsewhere.mkdir()
    moved = elsewhere / "claim.tar.gz"
    shutil.move(bundle, moved)
    shutil.rmtree(tmp_path / "results")  # no run store anywhere
    env = {**os.environ, "PYTHONPATH": str(clone)}
    checked = subprocess.run([sys.executable, "-m", "harness", "verify", "claim.tar.gz"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("PASS claim.tar.gz")
    assert "181 numbers recomputed" in checked.stdout and "4 verdicts re-judged" in checked.stdout
    assert not (elsewhere / "results").exists()


def _edited_result(files: dict[str, bytes]) -> None:
    name = f"runs/{RUN_ID}/result.json"
    data = json.loads(files[name])
    data["final"]["mIoU"] = 71.5
    files[name] = json.dumps(data, indent=2).encode()


def test_a_number_edited_in_result_json_fails_naming_the_file(bundle: Path, tmp_path: Path):
    files = members(bundle)
    _edited_result(files)
    checked = verify(repack(files, tmp_path / "edited.tar.gz"))
    assert checked.returncode == 1 and checked.stdout.startswith("FAIL")
    assert f"runs/{RUN_ID}/result.json: sha256 differs" in checked.stdout
    # Even with bundle.json rewritten to match, the recomputation catches the number by name.
    files = members(bundle)
    _edited_result(files)
    checked = verify(repack(files, tmp_path / "forged.tar.gz", refresh_manifest=True))
    assert checked.returncode == 1, checked.stdout
    assert "sha256" not in checked.stdout
    assert f"runs/{RUN_ID}/result.json: final.mIoU: reported 71.5, recomputed from the logs 68.62000274658203" in checked.stdout
    # A verdict edited alone is judged again against the bundled recipe's reference.
    files = members(bundle)
    name = f"runs/{RUN_ID}/result.json"
    data = json.loads(files[name])
    data["verdicts"] = [{**v, "status": "PASS"} if v["metric"] == "fps" else v for v in data["verdicts"]]
    files[name] = json.dumps(data).encode()
    checked = verify(repack(files, tmp_path / "verdict.tar.gz", refresh_manifest=True))
    assert checked.returncode == 1
    assert f"{name}: verdicts.fps: reported PASS (14.81476950443788 vs None), re-judged NONE" in checked.stdout


def test_one_log_line_changed_fails_naming_the_log(bundle: Path, tmp_path: Path):
    log = f"runs/{RUN_ID}/{ATTEMPT}/20261125_210714.log"
    files = members(bundle)
    lines = files[log].decode().splitlines(keepends=True)
    lines[-1] = lines[-1].replace("0", "1", 1)
    assert "".join(lines).encode() != files[log]
    files[log] = "".join(lines).encode()
    checked = verify(repack(files, tmp_path / "log.tar.gz"))
    assert checked.returncode == 1
    assert f"{log}: sha256 differs from bundle.json" in checked.stdout
    # The final evaluation's line in scalars.json changed, bundle.json rewritten to match:
    # the number read from it no longer agrees with result.json.
    scalars = f"runs/{RUN_ID}/{ATTEMPT}/vis_data/scalars.json"
    files = members(bundle)
    lines = files[scalars].decode().splitlines(keepends=True)
    index = max(i for i, line in enumerate(lines) if '"mIoU"' in line)
    lines[index] = lines[index].replace('"mIoU": 68.62', '"mIoU": 66.62')
    assert "".join(lines).encode() != files[scalars]
    files[scalars] = "".join(lines).encode()
    checked = verify(repack(files, tmp_path / "forged-log.tar.gz", refresh_manifest=True))
    assert checked.returncode == 1
    assert f"runs/{RUN_ID}/result.json: final.mIoU: reported 68.62000274658203, recomputed from the logs 66.62" in checked.stdout


def test_a_changed_image_lock_no_longer_matches_its_digest(bundle: Path, tmp_path: Path):
    files = members(bundle)
    [lock] = [n for n in files if n.startswith(f"context/{RUN_ID}/locks/")]
    files[lock] = files[lock].replace(b"torch==", b"torch>=", 1)
    checked = verify(repack(files, tmp_path / "lock.tar.gz", refresh_manifest=True))
    assert checked.returncode == 1
    assert f"context/{RUN_ID}/locks: digest recomputed sha256:" in checked.stdout


def test_unsafe_or_foreign_tarballs_are_refused_with_exit_2(bundle: Path, tmp_path: Path):
    def tar_with(name: str, **kind) -> Path:
        out = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.tar.gz"
        with tarfile.open(out, "w:gz") as tar:
            for member_name, data in members(bundle).items():
                info = tarfile.TarInfo(member_name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(name)
            for key, value in kind.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(b"x" * info.size))
        return out

    for bad, why in ((tar_with("../escape.txt", size=1), "climbs out"),
                     (tar_with("/etc/evil", size=1), "absolute"),
                     (tar_with("runs/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "a link"),
                     (tar_with("runs/dev", type=tarfile.CHRTYPE), "special file")):
        checked = verify(bad)
        assert checked.returncode == 2, checked.stdout + checked.stderr
        assert why in checked.stderr and checked.stderr.count("\n") == 1 and "Traceback" not in checked.stderr
    assert not (tmp_path / "escape.txt").exists()
    text = tmp_path / "notes.tar.gz"
    text.write_text("not a tarball\n")
    plain = tmp_path / "plain.tar.gz"
    repack({"readme.txt": b"hello"}, plain)
    for path, expected in ((text, "not a bundle"), (plain, "no bundle.json"), (tmp_path / "absent.tar.gz", "no such file")):
        checked = verify(path)
        assert checked.returncode == 2 and expected in checked.stderr, checked.stderr


def test_ingest_verifies_a_bundle_refuses_a_failing_one_and_never_duplicates(bundle: Path, tmp_path: Path):
    store = tmp_path / "elsewhere"
    files = members(bundle)
    _edited_result(files)
    forged = repack(files, tmp_path / "forged.tar.gz", refresh_manifest=True)
    refused = run_cli("ingest", str(forged), "--results", str(store))
    assert refused.returncode == 2 and "fails verification" in refused.stderr and "result.json: final.mIoU" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert not (store / "runs").exists() or not list((store / "runs").iterdir())

    first = run_cli("ingest", str(bundle), "--results", str(store))
    assert first.returncode == 0, first.stderr
    runs = RunStore(store).all()
    assert [r.run_id for r in runs] == [RUN_ID]
    assert runs[0].result_file.read_bytes() == (FIXTURE_RUN / "result.json").read_bytes()
    assert runs[0].result().run_id == RUN_ID and runs[0].damage() is None
    again = run_cli("ingest", str(bundle), "--results", str(store))
    assert again.returncode == 0 and "already in" in again.stdout
    assert [r.run_id for r in RunStore(store).all()] == [RUN_ID]
    assert sorted(p.name for p in (store / "runs").iterdir()) == [RUN_ID]  # no leftovers either
    # The imported run bundles to the same bytes.
    rebundled = tmp_path / "rebundled.tar.gz"
    assert run_cli("bundle", RUN_ID, "--results", str(store), "-o", str(rebundled)).returncode == 0
    assert rebundled.read_bytes() == bundle.read_bytes()


def test_bundle_of_an_unknown_run_is_one_line_exit_2(tmp_path: Path):
    made = run_cli("bundle", "20261125T210711Z-smoke_cpu-000000", "--results", str(tmp_path), "-o", str(tmp_path / "x.tar.gz"))
    assert made.returncode == 2 and "no such run" in made.stderr and made.stderr.count("\n") == 1
    assert not (tmp_path / "x.tar.gz").exists()


def test_an_ingested_run_bundles_and_verifies(tmp_path: Path):
    """No plan.json (ingested): batch and world size come from its recipe."""
    results = tmp_path / "results"
    source = REPO / "tests" / "fixtures" / "logs" / "own_events_smoke_cpu_1p"
    assert run_cli("ingest", str(source), "--results", str(results)).returncode == 0
    [run] = RunStore(results).all()
    out = tmp_path / "ingested.tar.gz"
    assert run_cli("bundle", run.run_id, "--results", str(results), "-o", str(out)).returncode == 0
    checked = verify(out, cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.startswith("PASS"), checked.stdout
    files = members(out)
    [scalars] = [n for n in files if n.endswith("/vis_data/scalars.json")]
    forged = files[scalars].replace(b'"loss": 2.982379376888275', b'"loss": 2.5', 1)
    assert forged != files[scalars]
    files[scalars] = forged
    checked = verify(repack(files, tmp_path / "forged.tar.gz", refresh_manifest=True), cwd=tmp_path)
    assert checked.returncode == 1
    assert f"runs/{run.run_id}/result.json: train[10].loss: reported 2.982379376888275, recomputed from the logs 2.5" in checked.stdout
