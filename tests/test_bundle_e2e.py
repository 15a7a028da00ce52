"""A bundle of a real smoke training (worker event stream, dataset manifest and all) verifies
somewhere else (its event stream passing the ruleset under MLCommons' checker); a forged event line
with bundle.json rewritten to match is still caught, and so is an event that breaks the ruleset."""
from __future__ import annotations

import json
import shutil

import pytest

from harness.evidence.bundles.tarball import extract_safely
from harness.store.records import BundleRecord
from harness.store.runs import RunStore
from support import RECIPES, run_cli, require_extra
from test_bundle import members, repack

pytestmark = pytest.mark.slow
require_extra("mmseg", reason="the training stack (pip install -e '.[train]') is not installed")

ITERS = 20


def test_a_real_run_bundles_verifies_elsewhere_and_a_forged_event_is_caught(tmp_path, cache_env):
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--quiet", "--no-report",
                   "--set", f"train.iterations={ITERS}", "--set", f"train.val_interval={ITERS}",
                   "--set", f"train.checkpoint_interval={ITERS}", env=cache_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = RunStore(results).all()
    out = tmp_path / "claim.tar.gz"
    made = run_cli("bundle", run.run_id, "--results", str(results), "-o", str(out), env=cache_env)
    assert made.returncode == 0, made.stderr
    record = BundleRecord.model_validate_json(members(out)[BundleRecord.FILE])
    assert record.dataset_manifests == {run.run_id: f"context/{run.run_id}/dataset-manifest.json"}
    names = set(members(out))
    assert any(n.endswith("/events.mllog") for n in names) and not any(n.endswith(".pth") for n in names)
    assert list(run.work_dir.rglob("*.pth"))  # the run had checkpoints; the bundle left them out

    reader = tmp_path / "reader"
    reader.mkdir()
    shutil.move(out, reader / "claim.tar.gz")
    shutil.rmtree(results)
    checked = run_cli("verify", "claim.tar.gz", cwd=reader)
    assert checked.returncode == 0 and checked.stdout.startswith("PASS"), checked.stdout + checked.stderr

    files = members(reader / "claim.tar.gz")
    [stream] = [n for n in files if n.endswith("/events.mllog")]
    lines = files[stream].decode().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"key": "train_window"' in line)
    event = json.loads(lines[index].split(":::MLLOG ", 1)[1])
    event["value"]["loss"] += 0.5
    lines[index] = ":::MLLOG " + json.dumps(event) + "\n"
    files[stream] = "".join(lines).encode()
    forged = repack(files, tmp_path / "forged.tar.gz", refresh_manifest=True)
    checked = run_cli("verify", str(forged), cwd=reader)
    iteration = event["value"]["iter"]
    assert checked.returncode == 1, checked.stdout
    assert f"runs/{run.run_id}/result.json: train[{iteration}].loss: reported" in checked.stdout

    # an event that breaks the ruleset but no number (the eval's value, mIoU, is read from its
    # scalars): only MLCommons' checker, run by verify, catches it, naming the line and the rule
    files = members(reader / "claim.tar.gz")
    lines = files[stream].decode().splitlines(keepends=True)
    index = max(i for i, line in enumerate(lines) if '"key": "eval_accuracy"' in line)
    event = json.loads(lines[index].split(":::MLLOG ", 1)[1])
    event["value"] = 150.0
    lines[index] = ":::MLLOG " + json.dumps(event) + "\n"
    files[stream] = "".join(lines).encode()
    checked = run_cli("verify", str(repack(files, tmp_path / "off-rules.tar.gz", refresh_manifest=True)), cwd=reader)
    assert checked.returncode == 1, checked.stdout
    assert f"  {stream}:{index + 1}: eval_accuracy: rule accuracy-range failed" in checked.stdout
    assert "result.json" not in checked.stdout, checked.stdout

    # the dataset manifest (every file's sha256, not the data) travels with the bundle
    extract_safely(reader / "claim.tar.gz", tmp_path / "x")
    manifest = json.loads((tmp_path / "x" / record.dataset_manifests[run.run_id]).read_text())
    assert manifest["file_count"] > 0
