"""``harness check``: prove on the CPU that a recipe's real config builds and trains.

The worker's config is built exactly as the run builds it (plan -> job -> ``build_config``); then
only what the CPU cannot do is substituted (SyncBN -> BN, AMP -> fp32, hccl/nccl -> gloo, N ranks
-> 1 process, a download -> random init), each substitution listed. The model stays the recipe's
model; crop and batch may be shrunk for time (``--crop``/``--batch``), and that is listed too.
Then the Runner trains two iterations and validates one batch.

Refused as bad input (exit 2, one line): overrides naming keys the config does not have, a train
pipeline whose crop is larger than every image it produces, and a config that fails to build or to
produce a batch (the exception's first line).
"""
from __future__ import annotations

import copy
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import BadInput

if TYPE_CHECKING:  # the CLI imports this module's defaults at start; the recipe models load when used
    from harness.planning.recipe import LoadedRecipe

CHECK_ITERATIONS = 2
PIPELINE_SAMPLES = 8  # train samples drawn to decide whether the crop fits any image
# The default of ``harness check`` and ``harness run --check``: the recipe's model at a crop and
# batch a CPU does in seconds and a laptop holds (R50-D8 at the recipes' 512x512 crop and batch 16
# needs ~21 GB and ~5 min; ``--full-size`` runs that, after saying how much memory it needs).
QUICK_CROP = 64
QUICK_BATCH = 2
# The synthetic stand-in, when the recipe's dataset is not on this machine: few, VOC-shaped images.
STAND_IN_COUNTS = dict(n_train=4, n_aug=4, n_val=2)


class CheckFailed(BadInput):
    """The recipe's config does not build or train; ``str()`` is the one line."""


@dataclass
class CheckReport:
    recipe: str
    config: str
    model: str
    parameters: int = 0
    crop: tuple[int, int] = (0, 0)
    recipe_crop: tuple[int, int] = (0, 0)
    batch: int = 0
    recipe_batch: int = 0
    dataset: str = ""
    substitutions: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_images: int = 0
    memory_format: str = ""
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


# ---------------------------------------------------------------------------------------------
# Config helpers (plain mappings, so they are testable without mmengine)


def missing_override_key(cfg: MutableMapping, dotted: str) -> str | None:
    """The first part of ``dotted`` that ``cfg`` does not have (``a.b`` or ``a.list.3``), else None."""
    node: Any = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg  # an mmengine Config is no Mapping
    walked = []
    for key in dotted.split("."):
        walked.append(key)
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return ".".join(walked)
            node = node[int(key)]
        elif isinstance(node, MutableMapping):
            if key not in node:
                return ".".join(walked)
            node = node[key]
        else:
            return ".".join(walked)
    return None


def pipelines(loader: MutableMapping) -> list[list]:
    from harness.planning.mmseg_config import dataset_configs

    return [leaf["pipeline"] for leaf in dataset_configs(loader) if "pipeline" in leaf]


def train_crop(cfg: MutableMapping) -> tuple[int, int]:
    for pipeline in pipelines(cfg["train_dataloader"]):
        for step in pipeline:
            if step.get("type") == "RandomCrop":
                size = step["crop_size"]
                h, w = (size, size) if isinstance(size, int) else size
                return int(h), int(w)
    raise CheckFailed("train pipeline has no RandomCrop step; cannot tell the crop size")


def _scaled(size, factor: float) -> tuple[int, int]:
    return tuple(max(1, round(v * factor)) for v in size)  # type: ignore[return-value]


def shrink(cfg: MutableMapping, crop: int) -> float:
    """Square crop ``crop``; every resize scale shrinks by the same factor, so images and crop keep
    their proportions (what the pipeline does stays the same, only smaller). Returns the factor."""
    h, w = train_crop(cfg)
    factor = crop / max(h, w)
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if not cfg.get(name):
            continue
        for pipeline in pipelines(cfg[name]):
            for step in pipeline:
                if step.get("type") == "RandomCrop":
                    step["crop_size"] = (crop, crop)
                elif step.get("type") in ("RandomResize", "Resize") and step.get("scale"):
                    step["scale"] = _scaled(step["scale"], factor)
                elif step.get("type") == "Pad" and step.get("size"):
                    step["size"] = _scaled(step["size"], factor)
    preprocessor = cfg["model"].get("data_preprocessor") or {}
    if preprocessor.get("size"):
        preprocessor["size"] = (crop, crop)
    return factor


def cpu_substitutions(cfg: MutableMapping, world_size: int, pretrained_ok: bool) -> list[str]:
    """Make the built config runnable in one CPU process; return what was changed, one line each."""
    from harness.planning.backends.base import replace_norm

    notes = []
    syncbn = _count_norm(cfg["model"], "SyncBN")
    if syncbn:
        replace_norm(cfg["model"], "BN")
        notes.append(f"SyncBN -> BN ({syncbn} norm configs)")
    wrapper = cfg["optim_wrapper"]
    if wrapper.get("type") == "AmpOptimWrapper":
        dtype = wrapper.pop("dtype", None) or "float16"
        scale = wrapper.pop("loss_scale", None)
        wrapper["type"] = "OptimWrapper"
        notes.append(f"AMP ({dtype}, loss scale {scale}) -> fp32")
    backend = cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend")
    if backend and backend != "gloo":
        cfg["env_cfg"]["dist_cfg"]["backend"] = "gloo"
        notes.append(f"{backend} -> gloo")
    if cfg.get("env_cfg", {}).get("cudnn_benchmark"):
        cfg["env_cfg"]["cudnn_benchmark"] = False
        notes.append("cudnn_benchmark -> off (no cuDNN)")
    if world_size > 1:
        notes.append(f"{world_size} ranks -> 1 process (launcher {cfg.get('launcher')} -> none)")
    cfg["launcher"] = "none"
    cfg.pop("model_wrapper_cfg", None)
    pretrained = cfg["model"].get("pretrained")
    if pretrained and not pretrained_ok:
        cfg["model"]["pretrained"] = None
        backbone = cfg["model"].get("backbone") or {}
        if backbone.get("init_cfg") and backbone["init_cfg"].get("type") == "Pretrained":
            backbone["init_cfg"] = None
        notes.append(f"pretrained {pretrained} -> random init (not on this machine)")
    return notes


def _count_norm(node: Any, kind: str) -> int:
    if isinstance(node, MutableMapping):
        own = 1 if isinstance(node.get("norm_cfg"), MutableMapping) and node["norm_cfg"].get("type") == kind else 0
        return own + sum(_count_norm(v, kind) for k, v in node.items() if k != "norm_cfg")
    if isinstance(node, (list, tuple)):
        return sum(_count_norm(item, kind) for item in node)
    return 0


def limit_run(cfg: MutableMapping, batch: int | None, work_dir: str) -> None:
    """Two iterations, validation on one batch at the end, loaders in-process, nothing saved."""
    cfg["train_cfg"]["max_iters"] = CHECK_ITERATIONS
    cfg["train_cfg"]["val_interval"] = CHECK_ITERATIONS
    for scheduler in cfg.get("param_scheduler") or []:
        if not scheduler.get("by_epoch", True):
            scheduler["end"] = CHECK_ITERATIONS
    if batch:
        cfg["train_dataloader"]["batch_size"] = batch
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(name):
            cfg[name]["num_workers"] = 0
            cfg[name]["persistent_workers"] = False
    from harness.planning.mmseg_config import dataset_configs

    for leaf in dataset_configs(cfg["val_dataloader"]):
        leaf["indices"] = cfg["val_dataloader"].get("batch_size", 1)
    hooks = cfg["default_hooks"]
    hooks["checkpoint"] = dict(type="CheckpointHook", interval=10**9, save_last=False)
    hooks["logger"]["interval"] = 1
    cfg["work_dir"] = work_dir
    cfg["log_level"] = "ERROR"
    # mmengine keeps loggers and visualizers as named singletons: a second check in one process
    # would otherwise write into the first one's (deleted) work_dir.
    unique = f"harness-check-{uuid.uuid4().hex[:12]}"
    cfg["experiment_name"] = unique
    if cfg.get("visualizer"):
        cfg["visualizer"]["name"] = unique
    cfg.pop("resume", None)
    cfg.pop("load_from", None)


# ---------------------------------------------------------------------------------------------
# The check


def _stand_in_dataset(crop: tuple[int, int]) -> Path:
    """A small synthetic VOC set whose images are VOC-shaped (4:3) and at least the crop."""
    from harness.data.layout import cache_dir
    from harness.data.synth import SynthSpec, write_synthetic_voc

    h, w = crop
    height = max(h, 64)
    width = max(w, round(height * 4 / 3))
    spec = SynthSpec(width=width, height=height, **STAND_IN_COUNTS)
    return write_synthetic_voc(cache_dir() / f"check-voc-{width}x{height}", spec)


def _dataset_for(loaded: LoadedRecipe, crop: tuple[int, int]) -> tuple[Path, str, bool]:
    """The dataset's folder, what it is in words, and whether it is a stand-in made for ``crop``."""
    from harness.data.resolve import resolve_dataset

    dataset = loaded.recipe.dataset
    if dataset.synthetic is not None:
        return resolve_dataset(loaded), "the recipe's synthetic set", False
    root = loaded.dataset_root()
    if (root / "VOC2012" / "JPEGImages").is_dir():
        return root, f"{root}", False
    return _stand_in_dataset(crop), f"synthetic stand-in at {crop[1]}x{crop[0]} ({root} is not here)", True


def _job_for(loaded: LoadedRecipe, dataset_dir: Path, work_dir: str):
    from harness.commands.execute import plan_inputs
    from harness.planning.plan import build_plan

    plan = build_plan(loaded.recipe, plan_inputs(loaded, Path(work_dir), dataset_dir), "local")
    return replace(plan.job, config=str(loaded.config_path), checkpoint=None, resume=False)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text[:300]}" if text else exc.__class__.__name__


def _check_crop_fits(cfg, crop: tuple[int, int], where: str) -> None:
    """mmseg pads a crop larger than the image instead of failing (and VOC configs pad to the crop
    anyway), so a crop larger than *every* image trains on padding. Run the train pipeline up to
    its RandomCrop on a few samples and refuse when no crop reaches the crop size."""
    from mmseg.registry import DATASETS

    dataset_cfg = copy.deepcopy(cfg["train_dataloader"]["dataset"])
    for pipeline in pipelines({"dataset": dataset_cfg}):
        cut = next(i for i, step in enumerate(pipeline) if step.get("type") == "RandomCrop")
        del pipeline[cut + 1:]
    dataset = DATASETS.build(dataset_cfg)
    shapes = [tuple(dataset[i]["img"].shape[:2]) for i in range(min(PIPELINE_SAMPLES, len(dataset)))]
    if shapes and all(h < crop[0] or w < crop[1] for h, w in shapes):
        largest = max(shapes, key=lambda s: s[0] * s[1])
        raise CheckFailed(
            f"{where}: train pipeline: crop {crop[1]}x{crop[0]} is larger than every image it produced "
            f"(largest {largest[1]}x{largest[0]} of {len(shapes)}); the batches would be padding"
        )


def _unformatted(cfg):
    """The same config, but its text is not yapf-formatted: the Runner formats the whole config
    twice (log and dump), which takes longer than the check's training itself on a small CPU."""
    from mmengine.config import Config

    class UnformattedConfig(Config):
        @property
        def pretty_text(self) -> str:
            return repr(self.to_dict())

    plain = UnformattedConfig.__new__(UnformattedConfig)
    for key, value in cfg.__dict__.items():  # what Config.__deepcopy__ does, into the subclass
        object.__setattr__(plain, key, copy.deepcopy(value))
    return plain


def check_recipe(loaded: LoadedRecipe, *, crop: int | None = None, batch: int | None = None,
                 full_size: bool = False, announce: Callable[[str], None] | None = None) -> CheckReport:
    """``crop``/``batch`` None: ``QUICK_CROP``/``QUICK_BATCH`` where the recipe's are larger, or the
    recipe's own with ``full_size``; then ``announce`` is first told the memory it will need."""
    import warnings

    # mmcv-lite/mmseg deprecation chatter would bury the summary and the one error line.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _check_recipe(loaded, crop=crop, batch=batch, full_size=full_size, announce=announce)


def quick_size(recipe_crop: tuple[int, int], recipe_batch: int, crop: int | None, batch: int | None) -> tuple[int | None, int | None]:
    """The check's default crop and batch: the quick ones, never larger than the recipe's."""
    if crop is None and QUICK_CROP < max(recipe_crop):
        crop = QUICK_CROP
    if batch is None and QUICK_BATCH < recipe_batch:
        batch = QUICK_BATCH
    return crop, batch


def _check_recipe(loaded: LoadedRecipe, *, crop: int | None, batch: int | None, full_size: bool,
                  announce: Callable[[str], None] | None) -> CheckReport:
    started = time.perf_counter()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from harness.worker import mmcv_shim

    mmcv_shim.install()
    from mmengine.config import Config
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    from mmengine.runner import Runner

    from harness.planning.mmseg_config import adapt, import_custom_modules

    where = str(loaded.path)
    recipe = loaded.recipe
    raw = Config.fromfile(str(loaded.config_path))
    with tempfile.TemporaryDirectory(prefix="harness-check-") as work_dir:
        # The overrides are checked against the config as the run has it just before they apply
        # (after the harness's own settings); the crop is read once they have applied.
        probe_job = _job_for(loaded, Path(work_dir) / "VOCdevkit", work_dir)
        before = copy.deepcopy(raw)
        adapt(before, replace(probe_job, overrides={}))
        for key in probe_job.overrides:
            missing = missing_override_key(before, key)
            if missing is not None:
                raise CheckFailed(f"{where}: model.overrides: {key!r}: the config has no key {missing!r}")
        adapt(before, probe_job)
        recipe_crop = train_crop(before)
        if not full_size:
            crop, batch = quick_size(recipe_crop, recipe.train.batch_per_device, crop, batch)
        effective_crop = (crop, crop) if crop else recipe_crop
        dataset_dir, dataset_text, stand_in = _dataset_for(loaded, effective_crop)
        job = _job_for(loaded, dataset_dir, work_dir)
        cfg = raw
        adapt(cfg, job)
        import_custom_modules(cfg)
        pretrained = cfg["model"].get("pretrained")
        pretrained_ok = bool(pretrained) and "://" not in pretrained and Path(pretrained).is_file()
        notes = cpu_substitutions(cfg, job.world_size, pretrained_ok)
        # Whether the crop fits the images is the recipe's property: asked at the recipe's size on
        # the recipe's own images; a stand-in is made for the check's crop, so it is asked there.
        fit_cfg, fit_crop = (cfg, effective_crop) if stand_in else (copy.deepcopy(cfg), recipe_crop)
        if crop and (crop, crop) != recipe_crop:
            factor = shrink(cfg, crop)
            notes.append(f"crop {recipe_crop[1]}x{recipe_crop[0]} -> {crop}x{crop} (resize scales x{factor:.3g})")
        if batch and batch != recipe.train.batch_per_device:
            notes.append(f"batch {recipe.train.batch_per_device} -> {batch}")
        if recipe.train.workers_per_device:
            notes.append(f"loader workers {recipe.train.workers_per_device} -> 0 (in-process)")
        if recipe.mode == "eval":
            notes.append("eval checkpoint not loaded (the check trains from the recipe's initialisation)")
        limit_run(cfg, batch, work_dir)
        report = CheckReport(
            recipe=recipe.name, config=str(loaded.config_path), model=_model_name(cfg), crop=effective_crop,
            recipe_crop=recipe_crop, batch=cfg["train_dataloader"]["batch_size"],
            recipe_batch=recipe.train.batch_per_device, dataset=dataset_text, substitutions=notes,
        )
        try:
            _check_crop_fits(fit_cfg, fit_crop, where)
            runner = Runner.from_cfg(_unformatted(cfg))
            report.parameters = sum(p.numel() for p in runner.model.parameters())
            if full_size and announce is not None:
                from harness.commands.check_memory import estimate

                # On a copy: the probe's forward would move the trained model's BN statistics.
                announce(estimate(copy.deepcopy(runner.model), effective_crop, report.batch).line())
            runner.train()
        except CheckFailed:
            raise
        except Exception as exc:  # anything mmengine/mmseg raise: the config does not train
            raise CheckFailed(f"{where}: the config does not train on the CPU: {_one_line(exc)}") from None
        hub = runner.message_hub
        loss = hub.get_scalar("train/loss")
        report.losses = [float(v) for v in loss.data[0]] if loss is not None else []
        report.val_images = len(runner.val_dataloader.dataset)
        report.memory_format = _memory_format(runner.model)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _memory_format(model) -> str:
    import torch

    weight = next(p for p in model.parameters() if p.dim() == 4)
    return "channels_last" if weight.is_contiguous(memory_format=torch.channels_last) else "contiguous (NCHW)"


def _model_name(cfg) -> str:
    model = cfg["model"]
    backbone = model.get("backbone", {})
    head = model.get("decode_head", {}).get("type", "?")
    return f"{model.get('type')} {backbone.get('type')}-{backbone.get('depth', '?')} + {head}"


def render(report: CheckReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"harness check {report.recipe}: passed", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("config", report.config)
    table.add_row("model", report.model)
    table.add_row("parameters", f"{report.parameters:,} ({report.parameters / 1e6:.1f} M)")
    recipe_crop = f" (recipe {report.recipe_crop[1]}x{report.recipe_crop[0]})" if report.recipe_crop != report.crop else ""
    table.add_row("crop", f"{report.crop[1]}x{report.crop[0]}{recipe_crop}")
    recipe_batch = f" (recipe {report.recipe_batch})" if report.recipe_batch != report.batch else ""
    table.add_row("batch", f"{report.batch}{recipe_batch}")
    table.add_row("dataset", report.dataset)
    table.add_row("trained", f"{CHECK_ITERATIONS} iterations, losses {', '.join(f'{v:.3f}' for v in report.losses)}")
    table.add_row("memory format", report.memory_format)
    table.add_row("validated", f"{report.val_images} image(s)")
    table.add_row("CPU substitutions", "\n".join(report.substitutions) or "none")
    table.add_row("peak memory", f"{report.peak_rss_mb:,.0f} MB (max RSS)")
    table.add_row("time", f"{report.seconds:.1f} s")
    Console(soft_wrap=False, width=120).print(table)
