"""Per-run PNG plots from a ``result.json`` dict: loss, accuracy and throughput vs iteration.

``write_run_plots(result, out_dir)`` writes ``loss.png``, ``miou.png`` and ``throughput.png``
(each only when its data is there) and returns the paths written. A stamp beside them holds a
digest of the result they were drawn from, so an unchanged result (a resumed run that ended
where it was, ``harness plots`` of a run that has them) returns its existing plots without drawing
(drawing is ~0.3 s per run). Called by the commands that record a run (``harness.report.plotting``),
never by ``harness report``. Every value may be missing,
``None`` or NaN: such points are left out, and a plot with nothing left to draw is skipped.
Files are written atomically (a temp file in ``out_dir`` renamed over the target).

matplotlib is used through its object API with the Agg canvas (no pyplot, no display, no global
figure state), so it is safe from any thread and on a headless machine.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.core.fileio import atomic_output, write_json_atomic

FIGSIZE = (7.0, 4.0)  # inches
DPI = 110
PLOTS_VERSION = 1  # raise when the drawing changes, so existing plots are redrawn
STAMP = ".plots.json"
METRIC_STYLE = (("aAcc", "tab:green", "s"), ("mIoU", "tab:blue", "o"), ("mAcc", "tab:orange", "^"))


def _number(value: Any) -> float | None:
    """A finite float, or None for anything missing, NaN, infinite or not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _points(rows: Any, xkey: str, ykey: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        x, y = _number(row.get(xkey)), _number(row.get(ykey))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _ensure_mpl_config_dir() -> None:
    # matplotlib wants a writable config/cache dir; a read-only HOME (containers, CI) gets a temp one.
    if os.environ.get("MPLCONFIGDIR"):
        return
    home_cfg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
    try:
        home_cfg.mkdir(parents=True, exist_ok=True)
        if os.access(home_cfg, os.W_OK):
            return
    except OSError:
        pass
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="pspnet-mpl-")


def _figure():
    _ensure_mpl_config_dir()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.title.set_fontsize(11)
    ax.grid(True, which="major", linestyle="-", linewidth=0.5, alpha=0.5)
    return fig, ax


def _title(result: dict, what: str) -> str:
    device = result.get("device") or {}
    kind = str(device.get("kind") or "").upper()
    count = device.get("count")
    where = f"{kind}-{count}p" if kind and count else ""
    name = result.get("recipe") or ""
    head = " ".join(p for p in (name, where) if p)
    if not head:
        return what
    if len(head) > 62:
        head = f"{head[:30]}...{head[-29:]}"
    # A long recipe name (an ingested folder's) goes on its own line rather than off the edge.
    return f"{what}: {head}" if len(what) + len(head) <= 60 else f"{what}\n{head}"


def _subtitle(result: dict) -> str | None:
    run_id = result.get("run_id")
    return f"run {run_id}" if run_id else None


def _save(fig, ax, result: dict, path: Path, legend: bool) -> Path:
    sub = _subtitle(result)
    if sub:
        fig.text(0.99, 0.01, sub, ha="right", va="bottom", fontsize=7, color="0.4")
    if legend:
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.tight_layout(rect=(0, 0.03, 1, 1) if sub else None)
    with atomic_output(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return path


def _xlim(ax, result: dict, xs: list[float]) -> None:
    end = _number(result.get("max_iters")) or (max(xs) if xs else None)
    if end and end > 0:
        ax.set_xlim(0, end * 1.02)


def plot_loss(result: dict, path: Path) -> Path | None:
    xs, ys = _points(result.get("train"), "iter", "loss")
    if not xs:
        return None
    fig, ax = _figure()
    ax.plot(xs, ys, color="tab:red", linewidth=1.2, marker="." if len(xs) <= 60 else None,
            markersize=4, label="total loss (per logged window)")
    ax.set_title(_title(result, "Training loss"))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("total loss (decode + aux, dimensionless)")
    _xlim(ax, result, xs)
    ax.set_ylim(bottom=0)
    return _save(fig, ax, result, path, legend=False)


def plot_accuracy(result: dict, path: Path) -> Path | None:
    evals = [e for e in result.get("evaluations") or [] if isinstance(e, dict)]
    series = []
    for metric, colour, marker in METRIC_STYLE:
        xs, ys = _points(evals, "iteration", metric)
        if xs:
            series.append((metric, colour, marker, xs, ys))
    if not series:
        return None
    fig, ax = _figure()
    for metric, colour, marker, xs, ys in series:
        ax.plot(xs, ys, color=colour, marker=marker, markersize=5, linewidth=1.3, label=metric)
    reference = result.get("reference") or {}
    ref_miou = _number(reference.get("mIoU")) if isinstance(reference, dict) else None
    n_series = len(series)
    if ref_miou is not None:
        label = reference.get("label") or "reference"
        ax.axhline(ref_miou, color="tab:blue", linestyle="--", linewidth=1.1,
                   label=f"{label} reference mIoU {ref_miou:.2f}")
        n_series += 1
    all_x = [x for s in series for x in s[3]]
    ax.set_title(_title(result, "Evaluation accuracy"))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("accuracy (%)")
    _xlim(ax, result, all_x)
    all_y = [y for s in series for y in s[4]] + ([ref_miou] if ref_miou is not None else [])
    low, high = min(all_y), max(all_y)
    pad = max(3.0, (high - low) * 0.1)
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad) if high + pad > low else 100.0)
    return _save(fig, ax, result, path, legend=n_series > 1)


def _world(result: dict) -> tuple[float | None, float | None]:
    batch = _number(result.get("batch_per_device"))
    device = result.get("device") if isinstance(result.get("device"), dict) else {}
    count = _number(device.get("count")) or _number(result.get("devices"))
    return batch, count


def plot_throughput(result: dict, path: Path) -> Path | None:
    batch, count = _world(result)
    if not batch or not count:
        return None
    xs, ys = [], []
    for x, t in zip(*_points(result.get("train"), "iter", "time")):
        if t > 0:
            xs.append(x)
            ys.append(batch * count / t)
    if not xs:
        return None
    fig, ax = _figure()
    ax.plot(xs, ys, color="tab:purple", linewidth=1.1, marker="." if len(xs) <= 60 else None,
            markersize=4, label=f"per logged window ({batch:g} img/device x {count:g} / time)")
    n_series = 1
    fps = _number(result.get("fps"))
    if fps is not None:
        ax.axhline(fps, color="black", linestyle="--", linewidth=1.1,
                   label=f"mean fps {fps:.2f} (first window excluded)")
        n_series += 1
    seed = _number(result.get("fps_seed_definition"))
    if seed is not None:
        ax.axhline(seed, color="tab:gray", linestyle=":", linewidth=1.6,
                   label=f"seed definition {seed:.2f} (peak window)")
        n_series += 1
    ax.set_title(_title(result, "Training throughput"))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("throughput (images/s, all devices)")
    _xlim(ax, result, xs)
    top = max(ys + [v for v in (fps, seed) if v is not None])
    ax.set_ylim(0, top * 1.12)
    return _save(fig, ax, result, path, legend=n_series > 1)


PLOTS = (("loss.png", plot_loss), ("miou.png", plot_accuracy), ("throughput.png", plot_throughput))


def write_run_plots(result, out_dir: Path) -> list[Path]:
    """Write the plots one run's result (a ``RunResult``, or its JSON form) has data for into
    ``out_dir``; return their paths."""
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    if not isinstance(result, dict):
        return []
    out_dir = Path(out_dir)
    digest = _digest(result)
    drawn = _up_to_date(out_dir, digest)
    if drawn is not None:
        return drawn
    written = []
    for name, plot in PLOTS:
        path = plot(result, out_dir / name)
        if path is not None:
            written.append(path)
        else:
            # A plot from an earlier version of this result must not outlive its data.
            (out_dir / name).unlink(missing_ok=True)
    if out_dir.is_dir():
        write_json_atomic(out_dir / STAMP, {"digest": digest, "plots": [p.name for p in written]})
    return written


def _digest(result: dict) -> str:
    text = json.dumps([PLOTS_VERSION, result], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _up_to_date(out_dir: Path, digest: str) -> list[Path] | None:
    """The plots drawn from a result with this digest, when all of them are still there."""
    try:
        stamp = json.loads((out_dir / STAMP).read_text())
        if stamp.get("digest") != digest:
            return None
        paths = [out_dir / name for name in stamp["plots"] if name in {n for n, _ in PLOTS}]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return paths if len(paths) == len(stamp["plots"]) and all(p.is_file() for p in paths) else None
