"""The event hook's place in the worker's config (the stream itself: test_events_e2e.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import require_extra  # noqa: E402

require_extra("mmengine", reason="the training stack (pip install -e '.[train]') is not installed")
require_extra("mlperf_logging", reason="mlperf-logging (a project dependency) is not installed")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402

from harness.worker.events_hook import HOOK_MODULE, HOOK_TYPE, HarnessEventsHook, add_events_hook  # noqa: E402
from support import RECIPES  # noqa: E402


def test_hook_added_once_after_the_logger_hook_and_importable_from_the_resolved_config(tmp_path):
    cfg = Config.fromfile(str(RECIPES / "configs" / "pspnet_r18-d8_synthvoc_cpu-smoke.py"))
    cfg.custom_hooks = [dict(type="EMAHook")]
    add_events_hook(cfg)
    add_events_hook(cfg)
    assert [h["type"] for h in cfg.custom_hooks] == ["EMAHook", HOOK_TYPE]
    assert cfg.custom_imports == {"imports": [HOOK_MODULE], "allow_failed_imports": False}
    # the resolved config the run folder keeps names the hook and the module that registers it
    cfg.dump(str(tmp_path / "resolved.py"))
    again = Config.fromfile(str(tmp_path / "resolved.py"))
    assert again.custom_imports["imports"] == [HOOK_MODULE]
    hook = HOOKS.build(again.custom_hooks[-1])
    assert isinstance(hook, HarnessEventsHook)
    # after LoggerHook (BELOW_NORMAL = 60), so the logged window's tag exists when it runs
    from mmengine.runner.priority import get_priority

    assert get_priority(hook.priority) > get_priority("BELOW_NORMAL")


def test_event_lines_name_the_source_relative_to_the_package_and_keep_their_metadata(tmp_path):
    """A bundle carries the stream to whoever verifies it: no absolute path of the machine that ran
    it, but every line keeps the ``metadata`` object (file and line) the MLPerf checker reads."""
    import json

    hook = HarnessEventsHook()
    stream = tmp_path / "events.mllog"
    hook.open_stream(stream)
    hook._event("seed", 7)
    hook.stop("success")
    lines = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in stream.read_text().splitlines()]
    assert [e["key"] for e in lines] == ["seed", "run_stop"]
    for event in lines:
        assert event["metadata"]["file"] == "harness/worker/events_hook.py", event
        assert isinstance(event["metadata"]["lineno"], int)
    assert str(Path(__file__).resolve().parents[1]) not in stream.read_text()
