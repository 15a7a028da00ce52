"""Plots of a group of repeats and of a comparison, drawn like ``harness.report.plots`` (object API, Agg).

- ``loss.png`` / ``miou.png`` of a group: every member's curve, thin, and their mean at the
  iterations every member logged, thick;
- ``throughput.png`` of a comparison: each run's images/s per logged window over the iteration,
  both sides on one figure (one colour per side).
"""
from __future__ import annotations

import statistics
from pathlib import Path

from harness.report.plots import _figure, _points, _save, _world

SIDE_COLOURS = ("tab:blue", "tab:red")


def _overlay(curves: dict[str, tuple[list[float], list[float]]], path: Path, *, title: str, ylabel: str,
             subtitle: str) -> Path | None:
    curves = {name: xy for name, xy in curves.items() if xy[0]}
    if not curves:
        return None
    fig, ax = _figure()
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, linewidth=0.8, alpha=0.55, label=name)
    common = sorted(set.intersection(*(set(xs) for xs, _ in curves.values())))
    if common:
        lookup = [dict(zip(xs, ys)) for xs, ys in curves.values()]
        ax.plot(common, [statistics.fmean(d[x] for d in lookup) for x in common], color="black", linewidth=2.0,
                marker="." if len(common) <= 60 else None, label=f"mean of {len(curves)}")
    ax.set_title(title)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(ylabel)
    fig.text(0.99, 0.01, subtitle, ha="right", va="bottom", fontsize=7, color="0.4")
    return _save(fig, ax, {}, path, legend=True)


def write_group_plots(summary, out_dir: Path) -> list[Path]:
    """``summary``: a ``harness.results.groups.GroupSummary``; plots of its finished members."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {rid: r.model_dump(mode="json") for rid, r in summary.results.items()}
    seeds = {m.run_id: m.seed for m in summary.members}
    label = {rid: f"seed {seeds.get(rid)}" for rid in results}
    written = [
        _overlay({label[rid]: _points(r["train"], "iter", "loss") for rid, r in results.items()}, out_dir / "loss.png",
                 title=f"Training loss: {summary.recipe}, {len(results)} seeds", ylabel="total loss",
                 subtitle=f"group {summary.group_id}"),
        _overlay({label[rid]: _points(r["evaluations"], "iteration", "mIoU") for rid, r in results.items()},
                 out_dir / "miou.png", title=f"Evaluation mIoU: {summary.recipe}, {len(results)} seeds",
                 ylabel="mIoU (%)", subtitle=f"group {summary.group_id}"),
    ]
    return [p for p in written if p is not None]


def throughput_points(result: dict) -> tuple[list[float], list[float]]:
    batch, count = _world(result)
    if not batch or not count:
        return [], []
    pairs = [(x, batch * count / t) for x, t in zip(*_points(result.get("train"), "iter", "time")) if t > 0]
    return [x for x, _ in pairs], [y for _, y in pairs]


def plot_compare_throughput(sides: list[tuple[str, list[dict]]], path: Path) -> Path | None:
    """``sides``: (name, [result dicts]) for A and B."""
    fig, ax = _figure()
    drawn = False
    for (name, results), colour in zip(sides, SIDE_COLOURS):
        for i, result in enumerate(results):
            xs, ys = throughput_points(result)
            if xs:
                ax.plot(xs, ys, color=colour, linewidth=1.0, alpha=0.8, marker="." if len(xs) <= 60 else None,
                        label=name if i == 0 else None)
                drawn = True
    if not drawn:
        return None
    ax.set_title("Training throughput: " + " vs ".join(name for name, _ in sides))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("throughput (images/s, all devices)")
    ax.set_ylim(bottom=0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, ax, {}, Path(path), legend=True)
