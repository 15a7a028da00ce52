"""Make mmseg importable on mmcv-lite, which has no compiled ops.

Four mmseg modules import ``mmcv.ops`` unguarded, and ``mmcv/ops/__init__.py`` loads the C
extension eagerly. This registers a stand-in ``mmcv.ops``: the real pure-Python ``point_sample``
(loaded from mmcv's own file), placeholders that fail when used, and ``ModuleNotFoundError`` for
anything else, which mmseg's optional imports catch. PSPNet uses no mmcv op. With a full mmcv
(``mmcv._ext`` present, as in the GPU and NPU images) it does nothing.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def _has_compiled_ops() -> bool:
    return importlib.util.find_spec("mmcv._ext") is not None


def _unavailable(name: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"mmcv.ops.{name} needs mmcv's compiled ops, which mmcv-lite does not have")

    return fail


class _UnavailableSyncBatchNorm:
    def __init__(self, *args, **kwargs):
        _unavailable("SyncBatchNorm")()


def install() -> bool:
    """Install the stand-in if needed; return True when it was installed."""
    if "mmcv.ops" in sys.modules or _has_compiled_ops():
        return False
    import mmcv

    source = Path(mmcv.__file__).parent / "ops" / "point_sample.py"
    spec = importlib.util.spec_from_file_location("mmcv._lite_point_sample", source)
    point_sample_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(point_sample_module)

    ops = types.ModuleType("mmcv.ops")
    ops.__file__ = __file__
    ops.point_sample = point_sample_module.point_sample
    ops.bilinear_grid_sample = point_sample_module.bilinear_grid_sample
    ops.sigmoid_focal_loss = _unavailable("sigmoid_focal_loss")
    ops.SyncBatchNorm = _UnavailableSyncBatchNorm

    def __getattr__(name: str):
        if name.startswith("__"):
            # The import system probes dunders such as __path__; those must stay plain misses.
            raise AttributeError(name)
        raise ModuleNotFoundError(f"mmcv.ops.{name} is not available in mmcv-lite")

    ops.__getattr__ = __getattr__
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops
    return True
