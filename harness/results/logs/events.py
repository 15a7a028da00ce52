"""The worker's own event stream (``events.mllog``): MLPerf-logging ``:::MLLOG {...}`` lines.

Written by ``harness.worker.events_hook`` (rank 0, one line per event, flushed per event) with
``mlperf-logging``'s ``mllog``; every line is ``:::MLLOG `` and a JSON object with the keys
``namespace, time_ms, event_type, key, value, metadata``. The keys this harness writes:

- ``run_start`` / ``run_stop`` (``metadata.status``: ``success`` or ``aborted``)
- ``world_size``, ``global_batch_size`` (``metadata.batch_per_device``), ``opt_base_learning_rate``,
  ``train_samples``, ``seed``, ``max_iters``, ``start_iteration`` (> 0 after a resume)
- ``train_window``: one per logged training window; ``value`` is mmengine's processed log tag
  (``time``, ``data_time``, ``loss``, ``lr``, ``memory``, ...) exactly as the text log and
  ``vis_data/scalars.json`` got it; ``metadata.iteration`` is the scalars.json ``step``
- ``eval_accuracy``: one per evaluation; ``value`` is mIoU, ``metadata.scalars`` the whole tag
  (aAcc/mIoU/mAcc percent), ``metadata.iteration`` the training iteration (null in test mode)

Parsing needs only the standard library (no mllog): a host without the training stack reads it.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.store.event_stream import (EVAL_ACCURACY, FILE_NAME, GLOBAL_BATCH_SIZE, MAX_ITERS, OPT_BASE_LR, PREFIX,
                                         RUN_START, RUN_STOP, SEED, START_ITERATION, STATUS_ABORTED, STATUS_SUCCESS,
                                         TRAIN_SAMPLES, TRAIN_WINDOW, WORLD_SIZE)

from .common import POSITION_KEYS, number, train_point
from .errors import LogParseError
from .model import Evaluation, FileRecords, Located
from .reader import Lines

NAME = "harness-events"

_REQUIRED = ("namespace", "time_ms", "event_type", "key", "value", "metadata")
_SETTINGS = (WORLD_SIZE, GLOBAL_BATCH_SIZE, OPT_BASE_LR, TRAIN_SAMPLES, SEED, MAX_ITERS,
             START_ITERATION)


def sniff(head: str) -> bool:
    return head.lstrip().startswith(PREFIX)


def _event(text: str, path: Path, lineno: int) -> dict:
    if not text.startswith(PREFIX):
        raise LogParseError(path, lineno, f"not an event line (expected it to start with "
                                          f"{PREFIX.strip()!r})")
    try:
        event = json.loads(text[len(PREFIX):])
    except ValueError as exc:
        raise LogParseError(path, lineno,
                            f"invalid JSON in event ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(event, dict):
        raise LogParseError(path, lineno, "event is not a JSON object")
    missing = [k for k in _REQUIRED if k not in event]
    if missing:
        raise LogParseError(path, lineno, f"event lacks {', '.join(missing)} (expected the "
                                          f"keys {', '.join(_REQUIRED)})")
    if not isinstance(event["metadata"], dict):
        raise LogParseError(path, lineno, "event metadata is not a JSON object")
    return event


def read_events(path: Path) -> tuple[list[tuple[int, dict]], str | None]:
    """``[(lineno, event)]`` and a warning when a last line cut short (no line end) was dropped.

    Any other bad line is an error naming ``file:line``: the stream is written by this
    harness, one flushed line per event, so only the last line can be incomplete.
    """
    lines = Lines(path)
    events = [(lineno, _event(text, path, lineno)) for lineno, text in lines if text.strip()]
    if lines.truncated_tail:
        try:
            events.append((lines.tail_lineno, _event(lines.tail_text, path, lines.tail_lineno)))
        except LogParseError:
            return events, lines.truncation_warning()
    return events, None


def _iteration(event: dict, path: Path, lineno: int, *, required: bool) -> int | None:
    it = event["metadata"].get("iteration")
    if it is None and not required:
        return None
    if not isinstance(it, int) or isinstance(it, bool):
        raise LogParseError(path, lineno, f"{event['key']} event without an integer "
                                          "metadata.iteration")
    return it


def parse(path: Path) -> FileRecords:
    p = str(path)
    rec = FileRecords(path=p, fmt=NAME, files=[p])
    events, warning = read_events(path)
    settings: dict[str, object] = {}
    status: str | None = None
    reason = ""
    started = False
    for lineno, ev in events:
        key, value, meta = ev["key"], ev["value"], ev["metadata"]
        where = f"{p}:{lineno}"
        if key == TRAIN_WINDOW:
            if not isinstance(value, dict):
                raise LogParseError(path, lineno, "train_window value is not a JSON object")
            # the same split as the scalars.json parser, so that ``extra`` holds the same keys in both
            rec.train.append(train_point(_iteration(ev, path, lineno, required=True), value, where,
                                         not_extra=POSITION_KEYS))
        elif key == EVAL_ACCURACY:
            scalars = meta.get("scalars")
            if not isinstance(scalars, dict):
                raise LogParseError(path, lineno, "eval_accuracy event without a "
                                                  "metadata.scalars object")
            rec.evaluations.append(Evaluation(
                iteration=_iteration(ev, path, lineno, required=False),
                aAcc=number(scalars.get("aAcc")), mIoU=number(scalars.get("mIoU")),
                mAcc=number(scalars.get("mAcc")),
                extra={k: v for k, v in scalars.items()
                       if k not in ("aAcc", "mIoU", "mAcc") and number(v) is not None},
                source=where))
        elif key == RUN_START:
            started = True
        elif key == RUN_STOP:
            status = meta.get("status")
            reason = f" ({meta['reason']})" if meta.get("reason") else ""
        elif key in _SETTINGS:
            settings[key] = value
            if key == GLOBAL_BATCH_SIZE and isinstance(meta.get("batch_per_device"), int):
                rec.batch_per_device = Located(meta["batch_per_device"], where)
            elif key == WORLD_SIZE and isinstance(value, int):
                rec.devices = Located(value, where)
            elif key == MAX_ITERS and isinstance(value, int):
                rec.max_iters = Located(value, where)
    if warning:
        rec.truncated = True
        rec.warnings.append(warning)
    if not started:
        raise LogParseError(path, None, "no run_start event: not a harness event stream")
    if status is None:
        rec.warnings.append(f"{p}: no run_stop event: the run did not finish")
    elif status != STATUS_SUCCESS:
        rec.warnings.append(f"{p}: run_stop status is {status!r}{reason}")
    rec.metadata["events"] = {**settings, "run_status": status}
    return rec
