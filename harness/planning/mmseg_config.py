"""Job -> mmengine config: the recipe's training settings, the dataset, the backend's adaptations,
then the recipe's own overrides (last, so a recipe can always win). Works on the loaded config
object only; the checked-in config file is never touched.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any

from harness.core.dotted import set_dotted
from harness.planning.backends import get_backend
from harness.store.job import Job


def dataset_configs(loader_cfg: MutableMapping) -> list[MutableMapping]:
    """The leaf dataset dicts of a dataloader (ConcatDataset/RepeatDataset unwrapped)."""
    leaves = []
    stack = [loader_cfg["dataset"]]
    while stack:
        node = stack.pop()
        if "datasets" in node:
            stack.extend(node["datasets"])
        elif "dataset" in node:
            stack.append(node["dataset"])
        else:
            leaves.append(node)
    return leaves


def set_data_root(cfg: MutableMapping, data_root: str) -> None:
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if loader in cfg and cfg[loader] is not None:
            for dataset in dataset_configs(cfg[loader]):
                dataset["data_root"] = data_root
    cfg["data_root"] = data_root


def apply_train_settings(cfg: MutableMapping, job: Job) -> None:
    train = job.train
    loader = cfg["train_dataloader"]
    loader["batch_size"] = train.batch_per_device
    loader["num_workers"] = train.workers_per_device
    loader["persistent_workers"] = train.workers_per_device > 0
    for name in ("val_dataloader", "test_dataloader"):
        if cfg.get(name):
            cfg[name]["num_workers"] = min(train.workers_per_device, 2)
            cfg[name]["persistent_workers"] = False
    cfg["train_cfg"]["max_iters"] = train.iterations
    cfg["train_cfg"]["val_interval"] = train.val_interval
    for scheduler in cfg.get("param_scheduler") or []:
        if not scheduler.get("by_epoch", True) and "end" in scheduler:
            scheduler["end"] = train.iterations
    hooks = cfg["default_hooks"]
    hooks["logger"]["interval"] = train.log_interval
    hooks["checkpoint"]["interval"] = train.checkpoint_interval
    if train.lr is not None:
        cfg["optim_wrapper"]["optimizer"]["lr"] = train.lr
    if train.seed is not None:
        cfg["randomness"] = dict(seed=train.seed)


CHANNELS_LAST_HOOK = "ChannelsLastHook"
HOOKS_MODULE = "harness.worker.hooks"


def apply_speed_knobs(cfg: MutableMapping, job: Job) -> list[str]:
    """The recipe's speed knobs (``train.amp_dtype``, ``channels_last``, ``cudnn_benchmark``),
    applied after the backend so that they refine what it chose; returns notes."""
    train = job.train
    notes = []
    if train.amp and train.amp_dtype:
        cfg["optim_wrapper"]["dtype"] = train.amp_dtype
        notes.append(f"AMP dtype {train.amp_dtype}")
    if train.cudnn_benchmark is not None:
        cfg.setdefault("env_cfg", {})["cudnn_benchmark"] = train.cudnn_benchmark
        notes.append(f"cudnn_benchmark {'on' if train.cudnn_benchmark else 'off'}")
    if train.channels_last:
        hooks = [hook for hook in (cfg.get("custom_hooks") or []) if hook.get("type") != CHANNELS_LAST_HOOK]
        cfg["custom_hooks"] = [*hooks, {"type": CHANNELS_LAST_HOOK}]
        add_custom_import(cfg, HOOKS_MODULE)
        notes.append("channels_last model")
    return notes


def add_custom_import(cfg: MutableMapping, module: str) -> None:
    """A harness module that registers what the config names (a hook, a vis backend)."""
    imports = dict(cfg.get("custom_imports") or {})
    modules = list(imports.get("imports") or [])
    cfg["custom_imports"] = {**imports, "imports": [*modules, module] if module not in modules else modules,
                             "allow_failed_imports": False}


def apply_tracking(cfg: MutableMapping, job: Job) -> list[str]:
    """The recipe's tracking backends after the config's own (mmseg's LocalVisBackend writes the
    vis_data/scalars.json the harness parses, so it stays); returns notes."""
    if not job.tracking:
        return []
    from harness.planning.tracking import HARNESS_VIS_BACKENDS_MODULE, vis_backends

    visualizer = cfg.setdefault("visualizer", {"type": "SegLocalVisualizer", "name": "visualizer"})
    visualizer["vis_backends"] = [*(visualizer.get("vis_backends") or []), *vis_backends(job.tracking.model_dump())]
    if "mlflow" in job.tracking.backends:
        add_custom_import(cfg, HARNESS_VIS_BACKENDS_MODULE)
    return [f"streams to {', '.join(job.tracking.backends)}"]


# Top-level keys the harness itself sets (``adapt``), so overrides may name them even where the
# stock config has none.
HARNESS_SET_KEYS = frozenset({"randomness", "work_dir", "launcher", "resume", "load_from", "data_root"})
DELETE_KEY = "_delete_"  # mmengine's marker: this mapping replaces the old one instead of merging


class OverrideError(ValueError):
    """An override the config cannot take; ``str()`` starts with the dotted key."""


def flatten_overrides(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values. ``--set model.overrides.model.decode_head.dropout_ratio=0.2``
    arrives nested; applied as is it replaced the whole ``model``. Nested mappings merge key by key
    (as mmengine's ``merge_from_dict``) unless they carry ``_delete_: true``, which replaces."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not value.get(DELETE_KEY):
            flat.update(flatten_overrides(value, f"{dotted}."))
        elif isinstance(value, Mapping) and value.get(DELETE_KEY):
            flat[dotted] = {k: v for k, v in value.items() if k != DELETE_KEY}
        else:
            flat[dotted] = value
    return flat


def _shape(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item) for item in value)
    return False


def check_override(cfg: Mapping, dotted: str, value: Any) -> None:
    """Raise ``OverrideError`` unless ``dotted`` names a key the config has (or the harness sets)
    and ``value`` has the shape of the value it replaces (None on either side fits anything)."""
    if _non_finite(value):
        raise OverrideError(f"{dotted}: value {value!r} is not a finite number")
    node: Any = cfg if isinstance(cfg, Mapping) else cfg.to_dict()  # an mmengine Config is no Mapping
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, Mapping):
            if part not in node:
                if depth == 0 and part in HARNESS_SET_KEYS:
                    return
                raise OverrideError(f"{where}: the config has no such key")
            node = node[part]
        elif isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise OverrideError(f"{where}: the config's list there has {len(node)} items (indexes 0-{len(node) - 1})")
            node = node[int(part)]
        else:
            raise OverrideError(f"{where}: '{'.'.join(parts[:depth])}' is {_shape(node) or 'None'} in the config, not a mapping")
    old, new = _shape(node), _shape(value)
    if old is not None and new is not None and old != new:
        raise OverrideError(f"{dotted}: expected {old} like the config's {node!r}, got {value!r}")
    if isinstance(node, tuple) and isinstance(value, (list, tuple)) and len(value) != len(node):
        raise OverrideError(f"{dotted}: expected {len(node)} items like the config's {node!r}, got {value!r}")


def check_overrides(cfg: Mapping, overrides: Mapping[str, Any]) -> None:
    for dotted, value in flatten_overrides(overrides).items():
        check_override(cfg, dotted, value)


def adapt(cfg: MutableMapping, job: Job) -> list[str]:
    """Everything but loading and saving; returns notes on what the backend changed."""
    apply_train_settings(cfg, job)
    set_data_root(cfg, job.data_root)
    if job.pretrained:
        cfg["model"]["pretrained"] = job.pretrained
    notes = get_backend(job.device_kind).adapt_config(
        cfg, world_size=job.world_size, norm=job.train.norm, amp=job.train.amp
    )
    notes += apply_speed_knobs(cfg, job)
    notes += apply_tracking(cfg, job)
    for key, value in flatten_overrides(job.overrides).items():
        set_dotted(cfg, key, value)
    cfg["work_dir"] = job.work_dir
    cfg["launcher"] = "pytorch" if job.world_size > 1 else "none"
    if job.resume:
        cfg["resume"] = True
    if job.checkpoint:
        cfg["load_from"] = job.checkpoint
    return notes


def build_config(job: Job):
    from mmengine.config import Config

    cfg = Config.fromfile(job.config)
    notes = adapt(cfg, job)
    import_custom_modules(cfg)
    return cfg, notes


def import_custom_modules(cfg) -> None:
    """Config.fromfile imports a file's ``custom_imports``; the ones ``adapt`` added (the
    ChannelsLastHook) must be imported here, before the Runner looks the hooks up."""
    if cfg.get("custom_imports"):
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg["custom_imports"])


STOCK = "<stock>"


def _skeleton() -> dict:
    """The shape of the stock PSPNet config with every value the harness may set left as
    ``<stock>``, so that ``adapt`` on it shows what the harness sets, without mmengine."""
    norm = {"type": "SyncBN", "requires_grad": True}
    dataset = {"type": "PascalVOCDataset", "data_root": STOCK}
    loader = {"batch_size": STOCK, "num_workers": STOCK, "persistent_workers": STOCK}
    return {
        "model": {
            "backbone": {"norm_cfg": dict(norm)},
            "decode_head": {"norm_cfg": dict(norm)},
            "auxiliary_head": {"norm_cfg": dict(norm)},
        },
        "train_dataloader": {**loader, "dataset": {"type": "ConcatDataset", "datasets": [dict(dataset), dict(dataset)]}},
        "val_dataloader": {**loader, "dataset": dict(dataset)},
        "test_dataloader": {**loader, "dataset": dict(dataset)},
        "train_cfg": {"max_iters": STOCK, "val_interval": STOCK},
        "param_scheduler": [{"type": "PolyLR", "by_epoch": False, "end": STOCK}],
        "default_hooks": {"logger": {"interval": STOCK}, "checkpoint": {"interval": STOCK}},
        "optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": STOCK}},
        "env_cfg": {"cudnn_benchmark": STOCK, "dist_cfg": {"backend": STOCK}},
        "visualizer": {"type": "SegLocalVisualizer", "vis_backends": [{"type": "LocalVisBackend"}], "name": "visualizer"},
    }


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, MutableMapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list) and node and all(isinstance(item, MutableMapping) for item in node):
        out = {}
        for index, value in enumerate(node):
            out.update(_flatten(value, f"{prefix}{index}."))
        return out
    return {prefix[:-1]: node}


def config_changes(job: Job) -> dict[str, Any]:
    """Dotted keys -> values that the worker will set on the stock config (for ``harness plan``)."""
    import copy

    before = _skeleton()
    after = copy.deepcopy(before)
    adapt(after, job)
    old, new = _flatten(before), _flatten(after)
    # The norm layer is shown even where it stays as stock (SyncBN on GPUs): it is a key setting.
    return {key: value for key, value in new.items() if old.get(key, object()) != value or key.endswith("norm_cfg.type")}
