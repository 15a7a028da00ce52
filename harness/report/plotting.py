"""Drawing the plots of stored runs and groups: done by the commands that record them (``run``,
``run --repeat``, ``ingest``) and by ``harness plots``, never by ``report``, which only links them
(a report over 3,000 runs that drew them took 775 s).

Drawing one run's three plots takes ~0.3 s of one core (matplotlib draws in one thread), so
several runs are drawn in parallel, one process per core this process may use.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from harness.store.records import DamagedRecord
from harness.store.runs import GroupDir, RunDir, RunStore


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def draw_run(path: Path) -> list[Path]:
    """The plots of the run folder at ``path`` from its result.json; none when it has no result."""
    from harness.report.plots import write_run_plots

    run = RunDir(Path(path))
    result = run.result()
    return write_run_plots(result, run.plots_dir) if result is not None else []


def draw_runs(runs: list[RunDir]) -> dict[str, list[Path]]:
    """Draw every run's plots (unchanged ones are kept, see ``harness.report.plots``); run id -> paths."""
    workers = min(len(runs), usable_cores())
    if workers <= 1:
        drawn = [draw_run(run.path) for run in runs]
    else:
        # spawn, not fork: the recording command may have threads (log followers) whose locks a
        # forked child would inherit held.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            drawn = list(pool.map(draw_run, [run.path for run in runs]))
    return {run.run_id: paths for run, paths in zip(runs, drawn)}


def draw_runs_quietly(runs: list[RunDir]) -> str | None:
    """What recording commands call: a run is recorded whether or not its plots could be drawn;
    returns one line saying why they were not, else None."""
    return _quietly(draw_runs, runs)


def draw_group_quietly(results_dir: Path, group: GroupDir) -> str | None:
    return _quietly(draw_group, results_dir, group)


def _quietly(draw, *args) -> str | None:
    try:
        draw(*args)
    except (OSError, ValueError, RuntimeError, DamagedRecord) as exc:
        return f"plots not drawn: {exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"
    return None


def draw_group(results_dir: Path, group: GroupDir) -> list[Path]:
    """The plots of a group of repeats, from its members' stored results."""
    from harness.report.readme import collect_run
    from harness.report.groups import summarize_group, write_group_plots

    record = group.read()
    store = RunStore(results_dir)
    rows = {m.run_id: collect_run(store.get(m.run_id)) for m in record.members
            if m.run_id and (store.runs_dir / m.run_id).is_dir()}
    return write_group_plots(results_dir, summarize_group(record, rows))
