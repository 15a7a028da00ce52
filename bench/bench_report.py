"""``harness report`` over a store of 3,000 stored runs whose plots exist: under 3 s, and again
under 3 s after one run is added. There is no report cache: every call reads every run.

The store is made through the run store API (``RunStore.create`` + ``RunDir.write``) from the
committed example run's records (a real 400-iteration smoke training: its result holds 40 logged
windows and 2 evaluations), each run with its three plot files, so no training and no drawing is
needed to build it. Plots are drawn by the commands that record a run (``run``, ``ingest``), never
by ``report``; a report that drew them took 775 s on such a store (issue 17).

The baseline, measured in the same run: reading the 3,000 ``result.json`` records alone through
the run store (what any report must at least do). Printed: both in seconds and their ratio.

    python bench/bench_report.py [--runs 3000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.store.records import RECORDS, GroupRecord, BundleRecord  # noqa: E402
from harness.store.runs import RunDir, RunStore  # noqa: E402

EXAMPLE = REPO / "tests" / "fixtures" / "runs" / "20261125T210711Z-smoke_cpu-206fec"
GOAL_S = 3.0


def add_run(store: RunStore, template: dict, plots: list[Path], seed: int) -> RunDir:
    """One stored run: the example's records under a new run id, its own seed (so that no two
    recipe.yaml texts are alike: the report parses each distinct recipe once), and its plot files."""
    run = store.create("smoke_cpu")
    run.write_text("recipe.yaml", template["recipe.yaml"].replace("    seed: 0\n", f"    seed: {seed}\n", 1))
    for record in template["records"]:
        run.write(record.model_copy(update={"run_id": run.run_id}) if "run_id" in type(record).model_fields else record)
    (run.path / "plots").mkdir()
    for plot in plots:
        shutil.copyfile(plot, run.path / "plots" / plot.name)
    return run


def template_from_example() -> dict:
    example = RunDir(EXAMPLE)
    records = [example.read(model) for model in RECORDS.values() if model not in (GroupRecord, BundleRecord)]
    return {"recipe.yaml": example.recipe_text(), "records": [r for r in records if r is not None]}


def timed_report(results: Path) -> tuple[float, int]:
    """Seconds of one ``harness report``, and how many plot files it wrote (must be none)."""
    before = {p: p.stat().st_mtime_ns for p in results.glob("runs/*/plots/*.png")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "report", "--results", str(results)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = {p: p.stat().st_mtime_ns for p in results.glob("runs/*/plots/*.png")}
    return elapsed, sum(1 for p, mtime in after.items() if before.get(p) != mtime)


def read_results_alone(results: Path) -> float:
    start = time.perf_counter()
    results_read = [run.result() for run in RunStore(results).all()]
    elapsed = time.perf_counter() - start
    assert all(r is not None for r in results_read)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--keep", type=Path, help="build the store here and keep it (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = args.keep or Path(tmp) / "results"
        store = RunStore(results)
        template = template_from_example()
        plots = sorted((EXAMPLE / "plots").glob("*.png"))
        start = time.perf_counter()
        for seed in range(args.runs):
            add_run(store, template, plots, seed)
        print(f"store: {args.runs} runs with {len(plots)} plots each, built in {time.perf_counter() - start:.1f} s")
        baseline = read_results_alone(results)
        first, drawn_first = timed_report(results)
        add_run(store, template, plots, args.runs)
        again, drawn_again = timed_report(results)
        print(f"reading the {args.runs} result records alone (baseline): {baseline:.2f} s")
        print(f"harness report, first call (no report cache): {first:.2f} s = {first / baseline:.1f}x the baseline "
              f"({'under' if first < GOAL_S else 'OVER'} the {GOAL_S:.0f} s goal)")
        print(f"harness report, one run added: {again:.2f} s = {again / baseline:.1f}x the baseline "
              f"({'under' if again < GOAL_S else 'OVER'} the {GOAL_S:.0f} s goal)")
        print(f"plot files written by the reports: {drawn_first + drawn_again} (must be 0)")
        return 0 if first < GOAL_S and again < GOAL_S and not drawn_first + drawn_again else 1


if __name__ == "__main__":
    raise SystemExit(main())
