"""Groups of repeats and `harness compare`, on run folders built from the committed example run
(fast); the real training of a group is in test_groups_e2e.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.results.groups import parse_seeds
from harness.store.records import GroupMember, GroupRecord, Metrics
from harness.store.runs import GroupStore, RunDir, RunStoreError
from support import REPO, run_cli

sys.path.insert(0, str(Path(__file__).parent))
from test_records import example_store  # noqa: E402

# (fps, mIoU) of each fixture run
VALUES = {"a0": (14.0, 68.0), "a1": (14.5, 68.6), "a2": (15.0, 69.2), "b0": (7.0, 60.0), "b1": (7.4, 61.0), "b2": (7.2, 60.4)}


def edit_result(run: RunDir, fps: float, miou: float) -> None:
    result = run.result()
    final = (result.final or Metrics()).model_copy(update={"mIoU": miou})
    run.write(result.model_copy(update={"fps": fps, "final": final, "best": final}))


def fixture_store(tmp_path: Path, failed: str | None = None) -> tuple[dict[str, RunDir], list[str]]:
    """Six finished runs (a0..a2 like the example, b0..b2 slower and worse) and two groups of
    three; ``failed``: that run is marked failed (in its status and in its group)."""
    runs = dict(zip(VALUES, example_store(tmp_path, *VALUES)))
    for name, run in runs.items():
        edit_result(run, *VALUES[name])
    store = GroupStore(tmp_path)
    group_ids = []
    for side in "ab":
        group = store.create("smoke_cpu")
        members = []
        for seed in range(3):
            run = runs[f"{side}{seed}"]
            state = "failed" if f"{side}{seed}" == failed else "succeeded"
            if state == "failed":
                run.set_status("failed", exit_code=-9, reason="killed (SIGKILL: out of memory or killed by someone)")
            members.append(GroupMember(seed=seed, run_id=run.run_id, state=state))
        group.write(GroupRecord(group_id=group.group_id, recipe="smoke_cpu", seeds=[0, 1, 2], members=members,
                                state="finished"))
        group_ids.append(group.group_id)
    return runs, group_ids


def test_seeds_from_repeat_and_list():
    assert parse_seeds(None, 3) == [0, 1, 2]
    assert parse_seeds("5,7", None) == [5, 7]
    for seeds, repeat in (("1,1", None), ("a", None), ("1,2", 3), (None, 0)):
        with pytest.raises(RunStoreError):
            parse_seeds(seeds, repeat)


def test_report_shows_group_stats_and_verdict(tmp_path):
    runs, (ga, gb) = fixture_store(tmp_path)
    proc = run_cli("report", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "README.md").read_text()
    assert "## Groups" in text and f"`{ga}`" in text
    # mIoU 68.0/68.6/69.2: mean 68.60, sd 0.60; judged by the mean against 50 with seed spread
    assert "68.60 ± 0.60 (68.00–69.20) PASS" in text
    assert "3 of 3 finished" in text and "seed_spread_points" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    group = next(g for g in summary["groups"] if g["group_id"] == ga)
    assert group["stats"]["mIoU"]["n"] == 3 and group["stats"]["mIoU"]["mean"] == pytest.approx(68.6)
    assert group["stats"]["fps"]["median"] == pytest.approx(14.5)
    verdict = next(v for v in group["verdicts"] if v["metric"] == "mIoU")
    assert verdict["status"] == "PASS" and "seed spread 1.00" in verdict["reason"]
    # plots are drawn by the commands that record runs and groups, never by the report: this
    # group was written by hand, so the report names the command that draws its plots
    assert not (tmp_path / "groups" / ga / "plots").exists()
    assert "`harness plots --missing`" in text
    assert run_cli("plots", "--missing", "--results", str(tmp_path)).returncode == 0
    assert (tmp_path / "groups" / ga / "plots" / "loss.png").stat().st_size > 0
    assert (tmp_path / "groups" / ga / "plots" / "miou.png").stat().st_size > 0
    run_cli("report", "--results", str(tmp_path))
    assert f"[loss](groups/{ga}/plots/loss.png)" in (tmp_path / "README.md").read_text()


def test_seed_spread_widens_the_accuracy_tolerance(tmp_path):
    runs, (ga, _) = fixture_store(tmp_path)

    def miou_verdict_after_editing_recipes(old: str, new: str) -> str:
        for name in ("a0", "a1", "a2"):
            runs[name].recipe_file.write_text(runs[name].recipe_file.read_text().replace(old, new))
        run_cli("report", "--results", str(tmp_path))
        group = next(g for g in json.loads((tmp_path / "summary.json").read_text())["groups"] if g["group_id"] == ga)
        return next(v for v in group["verdicts"] if v["metric"] == "mIoU")["status"]

    # reference 69.5, accuracy_points 0: the mean 68.6 is 0.9 below; with the spread of 1.0 it passes
    assert miou_verdict_after_editing_recipes("mIoU: 50.0", "mIoU: 69.5") == "PASS"
    assert miou_verdict_after_editing_recipes("warn_points: 10.0", "warn_points: 10.0\n    seed_spread_points: 0.5") == "WARN"


def test_a_group_with_a_failed_member_says_so(tmp_path):
    runs, (ga, _) = fixture_store(tmp_path, failed="a1")
    run_cli("report", "--results", str(tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert "2 of 3 finished; judged on those (seed 1: failed)" in text
    group = next(g for g in json.loads((tmp_path / "summary.json").read_text())["groups"] if g["group_id"] == ga)
    assert group["finished"] == 2 and group["stats"]["mIoU"]["mean"] == pytest.approx(68.6)
    assert group["stats"]["mIoU"]["min"] == 68.0 and group["stats"]["mIoU"]["max"] == pytest.approx(69.2)


def test_a_damaged_group_record_is_one_line_in_the_report(tmp_path):
    runs, (ga, _) = fixture_store(tmp_path)
    (tmp_path / "groups" / ga / "group.json").write_text("{broken")
    proc = run_cli("report", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "group.json: damaged record: not JSON" in (tmp_path / "README.md").read_text()


def _schema():
    return json.loads((REPO / "docs" / "schemas" / "compare.schema.json").read_text())


def test_compare_two_runs_tolerance_provenance_and_config_diff(tmp_path):
    runs, _ = fixture_store(tmp_path)
    a, b = runs["a0"], runs["b0"]
    b.write_text("resolved_config.py", a.resolved_config_text().replace("lr=0.05", "lr=0.01"))
    env = b.worker_env()
    b.write(env.model_copy(update={"packages": {**env.packages, "torch": "9.9.9"}}))
    proc = run_cli("compare", a.run_id, b.run_id, "--results", str(tmp_path), "--plot", str(tmp_path / "t.png"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # mIoU 68.00 -> 60.00: -8 points, beyond the recipe's accuracy_points (0)
    assert "| mIoU | 68.00 | 60.00 | -8.00 | YES |" in out
    assert "| fps | 14.000 | 7.000 | -7.000 | YES |" in out
    assert "| package torch |" in out and "9.9.9 | **yes** |" in out
    diff_lines = out.split("```diff", 1)[1].splitlines()
    assert any(line.startswith("-") and "lr=0.05" in line for line in diff_lines)
    assert any(line.startswith("+") and "lr=0.01" in line for line in diff_lines)
    assert (tmp_path / "t.png").stat().st_size > 0
    data = json.loads(run_cli("compare", a.run_id, b.run_id, "--results", str(tmp_path), "--json").stdout)
    jsonschema.validate(data, _schema())
    assert next(r for r in data["numbers"] if r["metric"] == "mIoU")["test"] == "tolerance"
    # the same run on both sides: no delta beyond noise, identical config
    same = run_cli("compare", a.run_id, a.run_id, "--results", str(tmp_path)).stdout
    assert "YES" not in same and "(identical)" in same


def test_compare_two_groups_uses_welch(tmp_path):
    runs, (ga, gb) = fixture_store(tmp_path)
    proc = run_cli("compare", ga, gb, "--results", str(tmp_path), "--json", "-o", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, _schema())
    miou = next(r for r in data["numbers"] if r["metric"] == "mIoU")
    assert miou["test"] == "welch" and miou["exceeds_noise"] and miou["p_value"] < 0.05
    assert miou["a_n"] == 3 and miou["b_n"] == 3 and miou["delta"] == pytest.approx(60.4666 - 68.6, abs=1e-3)
    assert (tmp_path / "cmp" / "throughput.png").stat().st_size > 0 and (tmp_path / "cmp" / "compare.md").is_file()
    # the same group twice: no difference beyond noise
    same = json.loads(run_cli("compare", ga, ga, "--results", str(tmp_path), "--json").stdout)
    assert not any(r["exceeds_noise"] for r in same["numbers"])


def test_compare_by_label_and_report_comparison_section(tmp_path):
    runs, _ = fixture_store(tmp_path)
    for name in ("b0", "b1", "b2"):  # the same reference label, run on another device kind
        runs[name].recipe_file.write_text(runs[name].recipe_file.read_text().replace("kind: cpu", "kind: gpu"))
    proc = run_cli("compare", "CPU smoke floor", "CPU smoke floor", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "(n=6)" in proc.stdout
    run_cli("report", "--results", str(tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert "## Comparisons" in text and "Compare: CPU smoke floor on CPU vs CPU smoke floor on GPU" in text


@pytest.mark.parametrize("side,expected", [
    ("20261125T210711Z-nope-000000", "no such run"),
    ("g20261125T210711Z-nope-000000", "no such group"),
    ("No Such Label", "reference label 'No Such Label': no finished run"),
])
def test_compare_of_an_unknown_side_is_one_line_exit_2(tmp_path, side, expected):
    runs, _ = fixture_store(tmp_path)
    proc = run_cli("compare", runs["a0"].run_id, side, "--results", str(tmp_path))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_compare_output_that_is_a_file_is_one_line_exit_2_and_the_file_is_kept(tmp_path):
    """M12: -o names a folder; an existing file there is bad input, checked before anything is drawn."""
    runs, _ = fixture_store(tmp_path)
    existing = tmp_path / "taken"
    existing.write_text("mine\n")
    proc = run_cli("compare", runs["a0"].run_id, runs["b0"].run_id, "--results", str(tmp_path), "-o", str(existing))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"harness: error: -o {existing}: expected a folder, found a file"]
    assert existing.read_text() == "mine\n" and proc.stdout == ""


# -- repeat counts and seeds are bounded, ASCII digits only (issue 17: M9, L2) ---------------------


@pytest.mark.parametrize("args, field", [
    (["--repeat", "1001"], "--repeat"), (["--repeat", "100000"], "--repeat"), (["--repeat", "\u0663"], "--repeat"),
    (["--seeds", "-1"], "--seeds"), (["--seeds", "99999999999999999999999"], "--seeds"),
    (["--seeds", "0,4294967296"], "--seeds"), (["--seeds", "\u0660,\u0661"], "--seeds"), (["--seeds", "+1,2"], "--seeds"),
    (["--set", "train.seed=-1"], "train.seed"), (["--set", "train.seed=4294967296"], "train.seed"),
    (["--set", "train.seed=\u0663"], "train.seed"),
])
def test_repeat_and_seeds_out_of_range_are_one_line_exit_2_before_any_work(tmp_path, capsys, args, field):
    from harness.cli import main

    try:
        code = main(["run", str(REPO / "recipes" / "smoke_cpu.yaml"), "--results", str(tmp_path / "results"), *args])
    except SystemExit as exit_:  # argparse's own refusal
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and field in err and "Traceback" not in err, err
    assert not (tmp_path / "results").exists()


def test_the_largest_seed_and_repeat_are_accepted():
    assert parse_seeds("0,4294967295", None) == [0, 4294967295]
    assert len(parse_seeds(None, 1000)) == 1000


# -- a group whose harness was killed is repaired on the next command (issue 17: M8) ---------------


def killed_group(tmp_path: Path) -> tuple[dict[str, RunDir], str]:
    """What SIGKILL of `run --repeat 3` during seed 1 left (as an earlier release recorded it): seed 0
    succeeded, seed 1's run exists and says running (nobody holds its lock), the group says running,
    seed 1 pending with no run id, seed 2 never started."""
    runs = dict(zip(("s0", "s1"), example_store(tmp_path, "s0", "s1")))
    runs["s1"].set_status("running", exit_code=None, reason=None, finished=None)
    recipe = yaml.safe_load(runs["s1"].recipe_file.read_text())
    recipe["train"]["seed"] = 1  # as `--set train.seed=1` records it
    runs["s1"].recipe_file.write_text(yaml.safe_dump(recipe))
    group = GroupStore(tmp_path).create("smoke_cpu")
    group.write(GroupRecord(group_id=group.group_id, recipe="smoke_cpu", seeds=[0, 1, 2], created="2026-11-25T21:07:00Z",
                            members=[GroupMember(seed=0, run_id=runs["s0"].run_id, state="succeeded", exit_code=0),
                                     GroupMember(seed=1), GroupMember(seed=2)]))
    return runs, group.group_id


def test_a_group_left_running_by_a_killed_harness_is_repaired_and_named(tmp_path):
    runs, group_id = killed_group(tmp_path)
    proc = run_cli("report", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    record = GroupStore(tmp_path).get(group_id).read()
    assert record.state == "interrupted"
    seed0, seed1, seed2 = record.members
    assert (seed0.state, seed0.run_id) == ("succeeded", runs["s0"].run_id)
    assert (seed1.state, seed1.run_id) == ("interrupted", runs["s1"].run_id)
    assert "stale" in seed1.reason and "killed" in seed1.reason
    assert (seed2.state, seed2.run_id) == ("pending", None) and "never started" in seed2.reason
    assert f"group {group_id}: its harness stopped while running it" in proc.stderr
    assert f"seed 1 interrupted (run {runs['s1'].run_id} is stale)" in proc.stderr and "seed 2 never started" in proc.stderr
    report = (tmp_path / "README.md").read_text()
    assert "1 of 3 finished; judged on those (seed 1: interrupted" in report
    again = run_cli("report", "--results", str(tmp_path))  # repaired once: nothing more to say
    assert again.returncode == 0 and "its harness stopped" not in again.stderr


def test_a_group_whose_harness_is_alive_is_left_alone(tmp_path):
    runs, group_id = killed_group(tmp_path)
    group = GroupStore(tmp_path).get(group_id)
    with group.lock():  # the group's harness, still running it
        proc = run_cli("report", "--results", str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert group.read().state == "running" and group.read().members[1].state == "pending"
