"""``parse_logs``: find the files, detect each format, parse, stitch, compute the numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from . import (
    events,
    metrics,
    mmseg0x_json,
    mmseg0x_text,
    mmseg1x_scalars,
    mmseg1x_text,
    seed_result,
)
from .detect import detect, expand
from .errors import LogParseError
from .merge import overlay_events, overlay_scalars, stitch
from .model import FileRecords, LogResult
from .reader import check_readable

_MODULES = (mmseg0x_text, mmseg0x_json, mmseg1x_text, mmseg1x_scalars, seed_result, events)
FORMATS: dict[str, str] = {m.NAME: (m.__doc__ or "").strip().splitlines()[0] for m in _MODULES}
_PARSERS = {m.NAME: m.parse for m in _MODULES}


def parse_logs(paths: Sequence[Path] | Path | str, *, fmt: str | None = None,
               batch_per_device: int | None = None, devices: int | None = None) -> LogResult:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("parse_logs needs at least one path")
    if fmt is not None and fmt not in _PARSERS:
        raise ValueError(f"unknown log format {fmt!r}; known: {', '.join(FORMATS)}")
    for name, value in (("batch_per_device", batch_per_device), ("devices", devices)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    files = [f for p in paths for f in expand(Path(p))]
    by_fmt: dict[str, list[FileRecords]] = {}
    for f in files:
        if fmt is None:
            name = detect(f)
        else:
            check_readable(f)
            name = fmt
        by_fmt.setdefault(name, []).append(check_train_windows(_PARSERS[name](f)))
    return _result(_combine(by_fmt, files), batch_per_device, devices)


def _where(source: str, fallback: str) -> tuple[str, int | None]:
    path, _, line = source.rpartition(":")
    return (path, int(line)) if line.isdigit() else (source or fallback, None)


def check_train_windows(rec: FileRecords) -> FileRecords:
    """Within one file the iteration counter only grows and times are positive. A counter that
    goes back is a second run appended to the file (``>>``): stitched, the runs replaced each
    other's windows silently; a time <= 0 gave a negative fps. Both are errors naming the line."""
    previous = None
    for pt in rec.train:
        path, line = _where(pt.source, rec.path)
        if pt.time is not None and math.isfinite(pt.time) and pt.time <= 0:
            raise LogParseError(path, line, f"iteration {pt.iter}: time {pt.time:g} s/iter is not positive")
        if previous is not None and pt.iter <= previous.iter:
            raise LogParseError(path, line, f"the iteration counter restarts ({previous.iter} at {previous.source}, "
                                            f"then {pt.iter}): two runs in one file; split it at this line and "
                                            "parse each run on its own")
        previous = pt
    return rec


def _combine(by_fmt: dict[str, list[FileRecords]], files: list[Path]) -> FileRecords:
    seeds = by_fmt.get(seed_result.NAME, [])
    if len(seeds) > 1:
        raise LogParseError(seeds[1].path, None, "several seed result files (" +
                            ", ".join(s.path for s in seeds) + "): they are separate runs, "
                            "pass one at a time")
    seed = by_fmt.pop(seed_result.NAME)[0] if seeds and len(by_fmt) > 1 else None
    kinds = set(by_fmt)
    if events.NAME in kinds and kinds <= {events.NAME, mmseg1x_text.NAME, mmseg1x_scalars.NAME}:
        # The worker's own stream carries the numbers; scalars.json holds the same ones.
        by_fmt.pop(mmseg1x_scalars.NAME, None)
        text = by_fmt.get(mmseg1x_text.NAME)
        rec = overlay_events(stitch(by_fmt[events.NAME]), stitch(text) if text else None)
    elif len(kinds) == 1:
        rec = stitch(by_fmt.popitem()[1])
    elif kinds == {mmseg1x_text.NAME, mmseg1x_scalars.NAME}:
        rec = overlay_scalars(stitch(by_fmt[mmseg1x_text.NAME]),
                              stitch(by_fmt[mmseg1x_scalars.NAME]))
    else:
        raise LogParseError(files[0], None, "mixed log formats in one run: " +
                            ", ".join(f"{k} ({len(v)} file(s))" for k, v in by_fmt.items()))
    if seed:
        # The seed output folder holds both train_<id>.log and the result file; the training
        # log is the evidence, the result file's numbers are kept beside it for comparison.
        rec.metadata["seed_result"] = seed.metadata.get("seed_fields", {})
        rec.files.extend(seed.files)
        rec.warnings.append(f"{seed.path}: seed result file read for comparison only "
                            "(metadata.seed_result); numbers come from the training log")
        if rec.devices is None and seed.devices is not None:
            # 0.10 logs do not record the world size; the scripts' RankSize does.
            rec.devices, rec.devices_unknown = seed.devices, None
    return rec


def _result(rec: FileRecords, batch_arg: int | None, devices_arg: int | None) -> LogResult:
    # Which kind of record every number below comes from: the harness worker's own event stream
    # ("events") or mmengine/mmseg logs scraped as text or JSON ("logs").
    sources: dict[str, str] = {"numbers": "events" if rec.fmt.startswith(events.NAME) else "logs"}
    warnings = list(rec.warnings)
    train = rec.train

    batch, sources["batch_per_device"] = _pick(batch_arg, rec.batch_per_device, None)
    devices, sources["devices"] = _pick(devices_arg, rec.devices, 1)
    if devices_arg is None and rec.devices is None and rec.devices_unknown:
        devices, sources["devices"] = None, "unknown"
        warnings.append(rec.devices_unknown)
    if batch is None and train:
        warnings.append("batch per device not in the log: fps needs --batch-size")

    iterations = train[-1].iter if train else None
    if train:
        sources["iterations"] = train[-1].source
    max_iters = rec.max_iters.value if rec.max_iters else None
    if rec.max_iters:
        sources["max_iters"] = rec.max_iters.source

    mean_time, used = metrics.mean_iter_time(train)
    if used:
        sources["mean_iter_time_s"] = (f"{used[0].source} .. {used[-1].source} "
                                       f"({len(used)} windows; first window {train[0].source} "
                                       "excluded)")
    elif train:
        warnings.append("fewer than two timed train windows: no steady-state mean time")
    fps = metrics.global_fps(batch, devices, mean_time)
    if fps is not None:
        sources["fps"] = "batch_per_device x devices / mean_iter_time_s"
    seed_fps, peak = metrics.seed_fps(train, batch, devices)
    if peak is not None:
        sources["fps_seed_definition"] = peak.source
    elif "fps_seed_definition" in rec.reported:
        got = rec.reported["fps_seed_definition"]
        seed_fps, sources["fps_seed_definition"] = got.value, got.source

    evals = rec.evaluations
    final_ev, best_ev = metrics.final_and_best(evals)
    final, best = metrics.scores(final_ev), metrics.scores(best_ev)
    if final_ev is not None:
        sources["final"] = final_ev.source
    if best_ev is not None:
        sources["best"] = best_ev.source
    if "best_mIoU" in rec.reported and best_ev is None:
        got = rec.reported["best_mIoU"]
        best["mIoU"], sources["best"] = got.value, got.source

    final_loss = train[-1].loss if train else None
    if train and final_loss is not None:
        sources["final_loss"] = train[-1].source
    elif "final_loss" in rec.reported:
        final_loss, sources["final_loss"] = (rec.reported["final_loss"].value,
                                             rec.reported["final_loss"].source)

    nan_loss = [pt.iter for pt in train if pt.loss is not None and math.isnan(pt.loss)]
    if nan_loss:
        warnings.append(f"loss is NaN in {len(nan_loss)} window(s), first at iteration "
                        f"{nan_loss[0]}")
    if train and not evals:
        warnings.append("no evaluation in the log: aAcc/mIoU/mAcc are null")
    unfinished = iterations is not None and max_iters is not None and iterations < max_iters
    if unfinished:
        warnings.append(f"run stopped at iteration {iterations} of {max_iters}")

    return LogResult(
        format=rec.fmt, files=rec.files, iterations=iterations, max_iters=max_iters,
        train=train, evaluations=evals, batch_per_device=batch, devices=devices,
        mean_iter_time_s=mean_time, fps=fps, fps_seed_definition=seed_fps, final=final,
        best=best, per_class=final_ev.per_class if final_ev else {},
        evaluations_count=len(evals), final_loss=final_loss,
        definitions=dict(metrics.DEFINITIONS), sources=sources, warnings=warnings,
        partial=bool(rec.truncated or unfinished), metadata=rec.metadata)


def _pick(arg, found, default):
    if arg is not None:
        return arg, "argument"
    if found is not None:
        return found.value, found.source
    if default is not None:
        return default, "default: the log does not say"
    return None, "unknown"
