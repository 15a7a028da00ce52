"""The worker's structured event stream: an mmengine hook writing MLPerf-logging events.

Rank 0 writes ``<work_dir>/<timestamp>/events.mllog`` (beside mmengine's text log and
``vis_data/scalars.json``) with ``mlperf-logging``'s ``mllog``, one flushed line per event. The
schema (event keys, what each carries) is documented and parsed in ``harness.results.logs.events``.

Per-window and per-evaluation numbers are not recomputed here: the hook takes the very dict
(``tag``) that mmengine's ``LogProcessor`` hands to ``LoggerHook``, which prints it to the text log
and writes it to ``scalars.json``. So the three agree to the last digit by construction.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from harness.store import event_stream as ev

HOOK_TYPE = "HarnessEventsHook"
HOOK_MODULE = __name__
# mllog stamps every line's ``metadata.file`` with the calling source file; a bundle carries the
# stream to whoever verifies it, so the path is made relative to the directory holding the
# ``harness`` package (``harness/worker/events_hook.py``), not this machine's absolute path.
# mllog puts ``root_dir`` into a regular expression unescaped, hence ``re.escape``.
SOURCE_ROOT = re.escape(str(Path(__file__).parents[2]))


def add_events_hook(cfg: MutableMapping) -> None:
    """Register the hook in the config, so that the resolved config shows it (and what imports it)."""
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == HOOK_TYPE for h in hooks):
        hooks.append(dict(type=HOOK_TYPE))
    cfg["custom_hooks"] = hooks
    imports = dict(cfg.get("custom_imports") or {})
    names = list(imports.get("imports") or [])
    if HOOK_MODULE not in names:
        names.append(HOOK_MODULE)
    cfg["custom_imports"] = {**imports, "imports": names,
                             "allow_failed_imports": imports.get("allow_failed_imports", False)}


@contextmanager
def events_on_failure(runner) -> Iterator[None]:
    """``run_stop`` with status aborted when training or testing raises (mmengine has no hook
    for that; ``after_run`` only runs on success)."""
    try:
        yield
    except BaseException as exc:
        for hook in runner.hooks:
            if isinstance(hook, HarnessEventsHook):
                hook.stop(ev.STATUS_ABORTED, reason=f"{type(exc).__name__}: {exc}"[:500])
        raise


@HOOKS.register_module(name=HOOK_TYPE)
class HarnessEventsHook(Hook):
    # After LoggerHook (BELOW_NORMAL): the window's tag has been made when this hook runs.
    priority = "LOW"

    def __init__(self) -> None:
        self._mllog = None
        self._handler: logging.Handler | None = None
        self._captured: dict[str, dict] = {}
        self._stopped = False

    # --- writing ---------------------------------------------------------------------------

    def _open(self, runner) -> None:
        self.open_stream(Path(runner.log_dir) / ev.FILE_NAME)

    def open_stream(self, path: Path) -> None:
        logger = logging.getLogger(f"harness.events.{id(self)}")
        logger.propagate = False  # not into the text log / stdout: the file is the stream
        logger.setLevel(logging.INFO)
        # FileHandler flushes after every record: a killed run keeps every event up to the kill.
        self._handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(self._handler)
        self._mllog = MLLogger(logger=logger, root_dir=SOURCE_ROOT)

    def _event(self, key: str, value: Any = None, **metadata: Any) -> None:
        if self._mllog is not None:
            self._mllog.event(key=key, value=value, metadata=metadata or None)

    def stop(self, status: str, **metadata: Any) -> None:
        if self._mllog is None or self._stopped:
            return
        self._stopped = True
        self._mllog.end(key=ev.RUN_STOP, value=None, metadata={"status": status, **metadata})
        if self._handler is not None:
            self._handler.close()

    # --- capturing mmengine's processed tags ----------------------------------------------

    def _capture(self, runner) -> None:
        """Keep the last tag ``LogProcessor`` made per mode: the one ``LoggerHook`` logged."""
        processor = runner.log_processor
        after_iter, after_epoch = processor.get_log_after_iter, processor.get_log_after_epoch
        captured = self._captured

        def get_log_after_iter(runner, batch_idx, mode):
            tag, log_str = after_iter(runner, batch_idx, mode)
            captured[mode] = tag
            return tag, log_str

        def get_log_after_epoch(runner, batch_idx, mode, *args, **kwargs):
            tag, log_str = after_epoch(runner, batch_idx, mode, *args, **kwargs)
            captured[f"{mode}_epoch"] = tag
            return tag, log_str

        processor.get_log_after_iter = get_log_after_iter
        processor.get_log_after_epoch = get_log_after_epoch

    # --- mmengine hook points -------------------------------------------------------------

    def before_run(self, runner) -> None:
        if not is_main_process():
            return
        self._open(runner)
        self._capture(runner)
        mode = "train" if runner._train_loop is not None and not isinstance(runner._train_loop, dict) else "test"
        self._mllog.start(key=ev.RUN_START, value=None, metadata={"mode": mode})
        self._event(ev.WORLD_SIZE, runner.world_size)
        self._event(ev.SEED, runner.seed)

    def before_train(self, runner) -> None:
        if self._mllog is None:
            return
        batch = runner.cfg.train_dataloader.batch_size
        self._event(ev.GLOBAL_BATCH_SIZE, batch * runner.world_size, batch_per_device=batch,
                    world_size=runner.world_size)
        self._event(ev.OPT_BASE_LR, _base_lr(runner))
        self._event(ev.TRAIN_SAMPLES, len(runner.train_dataloader.dataset))
        self._event(ev.MAX_ITERS, runner.max_iters)
        self._event(ev.START_ITERATION, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        tag = self._captured.pop("train", None)
        # The tag is this iteration's only if LoggerHook logged a window at this iteration.
        if self._mllog is None or tag is None or tag.get("iter") != runner.iter + 1:
            return
        self._event(ev.TRAIN_WINDOW, dict(tag), iteration=runner.iter + 1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._evaluation(runner, "val", runner.iter)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._evaluation(runner, "test", None)

    def after_run(self, runner) -> None:
        self.stop(ev.STATUS_SUCCESS)

    def _evaluation(self, runner, mode: str, iteration: int | None) -> None:
        tag = self._captured.pop(f"{mode}_epoch", None)
        if self._mllog is None or tag is None:
            return
        scalars = {k: v for k, v in tag.items() if isinstance(v, (int, float))}
        self._event(ev.EVAL_ACCURACY, scalars.get("mIoU"), iteration=iteration, mode=mode,
                    scalars=scalars)


def _base_lr(runner) -> float | None:
    """The optimizer's starting lr (``initial_lr`` once a scheduler is attached)."""
    try:
        group = runner.optim_wrapper.optimizer.param_groups[0]
    except (AttributeError, IndexError, TypeError):
        return runner.cfg.get("optim_wrapper", {}).get("optimizer", {}).get("lr")
    return group.get("initial_lr", group.get("lr"))
