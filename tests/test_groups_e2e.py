"""A real group of three short smoke trainings (``harness run --repeat 3``) whose second member's
worker is killed: the group records it, goes on, and the report and `harness compare` say so.

Measured on the 2-core CI machine: about 2-5 minutes (three 20-iteration trainings)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from harness.store.runs import GroupStore, RunStore
from support import REPO, wait_for

pytestmark = pytest.mark.slow
SHORT = ("--set", "train.iterations=20", "--set", "train.val_interval=20", "--set", "train.log_interval=5",
         "--set", "train.checkpoint_interval=20")


def worker_pids(run_path: Path) -> list[int]:
    """The worker processes training this run (their command line names its job.json)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"harness.worker" in cmdline and any(str(run_path).encode() in part for part in cmdline):
            pids.append(int(proc.name))
    return pids


def test_group_of_three_with_a_killed_member_then_compare(tmp_path, cache_env):
    results = tmp_path / "results"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "recipes/smoke_cpu.yaml", "--repeat", "3", *SHORT,
                             "--results", str(results), "--quiet"], cwd=REPO, env=cache_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = RunStore(results)
        wait_for(lambda: len(store.all()) >= 2 and store.all()[1].trainer_alive() and worker_pids(store.all()[1].path),
                 timeout=600, what="member 2's worker")
        # the group names member 2's run while it trains (a SIGKILL now leaves it findable: M8)
        running = GroupStore(results).all()[0].read().members[1]
        assert (running.run_id, running.state) == (store.all()[1].run_id, "running")
        for pid in worker_pids(store.all()[1].path):
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"group of three took {time.monotonic() - started:.0f} s")
    assert proc.returncode == 1, err  # a member failed: the group's exit says so
    (group,) = GroupStore(results).all()
    record = group.read()
    assert [m.state for m in record.members] == ["succeeded", "failed", "succeeded"], err
    assert record.seeds == [0, 1, 2] and record.state == "finished" and "killed" in record.members[1].reason
    runs = [store.get(m.run_id) for m in record.members]
    assert [r.job().train.seed for r in runs] == [0, 1, 2]

    readme = (results / "README.md").read_text()
    assert "## Groups" in readme and "2 of 3 finished; judged on those (seed 1: failed" in readme
    summary = next(g for g in json.loads((results / "summary.json").read_text())["groups"])
    miou = summary["stats"]["mIoU"]
    assert miou["n"] == 2 and miou["sd"] is not None and f"{miou['mean']:.2f} ± {miou['sd']:.2f}" in readme
    assert {v["metric"]: v["status"] for v in summary["verdicts"]}["mIoU"] in ("PASS", "WARN", "FAIL")
    assert (group.path / "plots" / "loss.png").is_file() and (group.path / "plots" / "miou.png").is_file()

    # two real runs: deltas, noise verdict (tolerance), provenance and the config diff (the seed)
    first, third = runs[0].run_id, runs[2].run_id
    cmp = subprocess.run([sys.executable, "-m", "harness", "compare", first, third, "--results", str(results),
                          "-o", str(tmp_path / "cmp")], cwd=REPO, env=cache_env, capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stderr
    assert "| mIoU |" in cmp.stdout and "accuracy_points" in cmp.stdout and "dataset_fingerprint" in cmp.stdout
    diff = cmp.stdout.split("```diff", 1)[1]
    assert any(line.startswith("-") and "seed=0" in line for line in diff.splitlines())
    assert any(line.startswith("+") and "seed=2" in line for line in diff.splitlines())
    assert (tmp_path / "cmp" / "throughput.png").stat().st_size > 0
    # two groups (the same one twice, Welch's t on its two finished members), as JSON against the schema
    as_json = subprocess.run([sys.executable, "-m", "harness", "compare", group.group_id, group.group_id, "--json",
                              "--results", str(results)], cwd=REPO, env=cache_env, capture_output=True, text=True)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    jsonschema.validate(data, json.loads((REPO / "docs" / "schemas" / "compare.schema.json").read_text()))
    assert {r["test"] for r in data["numbers"] if r["a_n"] == 2} == {"welch"}
    assert not any(r["exceeds_noise"] for r in data["numbers"]) and data["config_diff"] == ""

    # M10 (issue 17): the real group bundles with its two finished members and its record,
    # verifies (plan, job and group record rebuilt and checked), and ingests whole elsewhere.
    bundle = tmp_path / "group.tar.gz"
    made = subprocess.run([sys.executable, "-m", "harness", "bundle", group.group_id, "--results", str(results),
                           "-o", str(bundle)], cwd=REPO, env=cache_env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    checked = subprocess.run([sys.executable, "-m", "harness", "verify", str(bundle)], cwd=REPO, env=cache_env,
                             capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.startswith("PASS") and "2 runs" in checked.stdout, checked.stdout
    elsewhere = tmp_path / "elsewhere"
    ingested = subprocess.run([sys.executable, "-m", "harness", "ingest", str(bundle), "--results", str(elsewhere)],
                              cwd=REPO, env=cache_env, capture_output=True, text=True)
    assert ingested.returncode == 0 and f"imported group {group.group_id} (2 of 3 finished)" in ingested.stdout, ingested.stderr
    assert [g.group_id for g in GroupStore(elsewhere).all()] == [group.group_id]
    assert sorted(r.run_id for r in RunStore(elsewhere).all()) == sorted([first, third])
