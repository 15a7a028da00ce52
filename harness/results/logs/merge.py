"""Putting records from several files together: resumed runs, and 1.x text + scalars."""
from __future__ import annotations

from .model import Evaluation, FileRecords, TrainPoint


def stitch(records: list[FileRecords]) -> FileRecords:
    """Join the files of one (resumed) run in iteration order.

    A later file (one that starts later; by name when they start at the same iteration)
    replaces an earlier file's window or evaluation for the same iteration, so iterations
    repeated after a resume from a checkpoint are counted once, with the values of the rerun.
    """
    if len(records) == 1:
        return records[0]
    order = sorted(records, key=lambda r: (r.first_iter(), r.path))
    out = FileRecords(path=order[0].path, fmt=order[0].fmt)
    train: dict[int, TrainPoint] = {}
    evals: dict[int, Evaluation] = {}
    unplaced: list[Evaluation] = []
    replaced = 0
    for rec in order:
        for pt in rec.train:
            replaced += pt.iter in train
            train[pt.iter] = pt
        for ev in rec.evaluations:
            if ev.iteration is None:
                unplaced.append(ev)
            else:
                evals[ev.iteration] = ev
        _first(out, rec, "batch_per_device")
        _first(out, rec, "devices")
        if rec.max_iters is not None:
            out.max_iters = rec.max_iters
        out.devices_unknown = out.devices_unknown or rec.devices_unknown
        out.reported.update(rec.reported)
        out.metadata.update(rec.metadata)
        out.warnings.extend(rec.warnings)
        out.truncated |= rec.truncated
        out.files.extend(rec.files)
    out.train = [train[k] for k in sorted(train)]
    out.evaluations = [evals[k] for k in sorted(evals)] + unplaced
    if replaced:
        out.warnings.append(f"{replaced} train window(s) logged again by a later file (resumed "
                            "run); the later values are used, each iteration counted once")
    return out


def _first(out: FileRecords, rec: FileRecords, attr: str) -> None:
    mine, theirs = getattr(out, attr), getattr(rec, attr)
    if theirs is None:
        return
    if mine is None:
        setattr(out, attr, theirs)
    elif mine.value != theirs.value:
        out.warnings.append(f"{attr}: {theirs.source} says {theirs.value}, {mine.source} says "
                            f"{mine.value}; using {mine.value}")


def overlay_scalars(text: FileRecords, scalars: FileRecords) -> FileRecords:
    """1.x: numbers from scalars.json (full precision), per-class tables and config from text."""
    out = FileRecords(path=scalars.path, fmt=f"{scalars.fmt}+{text.fmt}")
    train = {pt.iter: pt for pt in text.train}
    train.update({pt.iter: pt for pt in scalars.train})
    out.train = [train[k] for k in sorted(train)]
    text_evals = {ev.iteration: ev for ev in text.evaluations}
    evals: dict[int | None, Evaluation] = dict(text_evals)
    for ev in scalars.evaluations:
        twin = text_evals.get(ev.iteration)
        if twin is not None and not ev.per_class:
            ev.per_class = twin.per_class
        evals[ev.iteration] = ev
    out.evaluations = sorted(evals.values(),
                             key=lambda e: (e.iteration is None, e.iteration or 0))
    for attr in ("batch_per_device", "devices", "max_iters"):
        setattr(out, attr, getattr(text, attr) or getattr(scalars, attr))
    out.devices_unknown = text.devices_unknown
    out.metadata = {**scalars.metadata, **text.metadata}
    out.warnings = text.warnings + scalars.warnings
    out.truncated = text.truncated or scalars.truncated
    out.files = text.files + scalars.files
    return out


def overlay_events(stream: FileRecords, text: FileRecords | None) -> FileRecords:
    """The worker's events give every number; the text log adds only the per-class tables of the
    evaluation at the same iteration (mmseg prints them, it does not hand them to hooks)."""
    if text is None:
        return stream
    by_iter = {ev.iteration: ev for ev in text.evaluations}
    for ev in stream.evaluations:
        twin = by_iter.get(ev.iteration)
        if twin is not None and not ev.per_class:
            ev.per_class = twin.per_class
    stream.fmt = f"{stream.fmt}+{text.fmt}"
    stream.files = stream.files + text.files
    stream.metadata = {**text.metadata, **stream.metadata}
    return stream
