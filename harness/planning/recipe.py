"""Recipes: one YAML file binds a training run to the published numbers it must reproduce.

Loading validates everything up front and turns every problem into one ``BadInput`` line that
names the file, the field and what was expected.
"""
from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.core.dotted import DottedKeyError, set_dotted
from harness.core.errors import BadInput  # re-exported: the recipe's error type

Mode = Literal["accuracy", "performance", "eval"]
DeviceKind = Literal["npu", "gpu", "cpu"]
METRICS = ("aAcc", "mIoU", "mAcc")


class _Strict(BaseModel):
    # No NaN or infinity anywhere: a timer, a count or a tolerance of infinity has no meaning, and NaN compares false.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_SEED = 2**32 - 1
MAX_DEVICE_ID = 1023  # far above any host's accelerator count; a range like "0-99999999999" would fill memory
MAX_RECIPE_BYTES = 1 << 20  # recipes are a few kilobytes
MAX_YAML_VALUES = 100_000  # values after alias expansion ("billion laughs" stays small on disk)


def parse_device_ids(text: str) -> tuple[int, ...]:
    """``"0-7"``, ``"4,5"`` or ``"0-3,6"`` -> sorted unique ids, each within 0..MAX_DEVICE_ID."""
    ids: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"device ids must look like '0-7' or '4,5', got {text!r}")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise ValueError(f"device id range {part!r} runs backwards")
        if high > MAX_DEVICE_ID:
            raise ValueError(f"device id {high} in {part!r} is out of range (ids are 0..{MAX_DEVICE_ID})")
        ids.update(range(low, high + 1))
    return tuple(sorted(ids))


class Hccl(_Strict):
    """HCCL's host-socket interface on multi-node NPU runs (CANN's HCCL_IF_IP / HCCL_SOCKET_IFNAME)."""

    if_ip: list[str] | None = Field(
        default=None, description="HCCL_IF_IP per node: node i's IP for HCCL's host sockets (one entry per node)"
    )
    socket_ifname: str | None = Field(
        default=None, description="HCCL_SOCKET_IFNAME: interface name(s) on every node, e.g. 'eth0' or '=eth0,enp'"
    )

    def environment(self, node_rank: int) -> dict[str, str]:
        env = {}
        if self.if_ip is not None:
            env["HCCL_IF_IP"] = self.if_ip[node_rank]
        if self.socket_ifname is not None:
            env["HCCL_SOCKET_IFNAME"] = self.socket_ifname
        return env


class Device(_Strict):
    kind: DeviceKind
    count: int = Field(ge=1, le=64)
    ids: str | None = Field(default=None, description="host device ids, e.g. '0-7' or '4,5'; default 0..count-1")
    runtime: Literal["plain", "ascend"] = Field(
        default="plain", description="npu only: 'plain' mounts the device nodes and driver; 'ascend' uses the Ascend Docker Runtime"
    )
    nodes: int = Field(default=1, ge=1, le=1024, description="machines (nodes); count is devices per node, world size = nodes x count")
    hccl: Hccl | None = Field(default=None, description="npu multi-node only: which interface HCCL's host sockets use")
    rank_table: str | None = Field(
        default=None,
        description="npu only: a v1.0 rank table (RANK_TABLE_FILE), relative to the recipe file; default: TCPStore negotiation",
    )
    chip: Literal["910", "910b"] | None = Field(
        default=None,
        description="npu only: the Ascend chip the recipe expects (910: Atlas A1, the seed's; 910b: Atlas A2); "
        "picks the image's CANN base (`harness image build npu --chip`); worker_env.json records the real one",
    )
    master_port: int | None = Field(
        default=None, ge=1024, le=65535,
        description="multi-rank rendezvous port; default: a free port picked per run (recorded in the plan)",
    )

    @field_validator("ids", mode="before")
    @classmethod
    def _ids_parse(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `ids: 3` in YAML or --set device.ids=3
        if isinstance(value, str):
            parse_device_ids(value)
        return value

    @field_validator("chip", mode="before")
    @classmethod
    def _chip_text(cls, value):
        # `chip: 910` in YAML or --set device.chip=910 arrives as a number.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> "Device":
        if self.ids is not None and len(parse_device_ids(self.ids)) != self.count:
            raise ValueError(f"ids {self.ids!r} name {len(parse_device_ids(self.ids))} devices but count is {self.count}")
        if self.runtime == "ascend" and self.kind != "npu":
            raise ValueError("runtime 'ascend' is only for device.kind 'npu'")
        if (self.hccl is not None or self.rank_table is not None) and self.kind != "npu":
            raise ValueError("hccl and rank_table are only for device.kind 'npu'")
        if self.hccl is not None and self.hccl.if_ip is not None and len(self.hccl.if_ip) != self.nodes:
            raise ValueError(f"hccl.if_ip names {len(self.hccl.if_ip)} IPs but nodes is {self.nodes} (one IP per node)")
        if self.chip is not None and self.kind != "npu":
            raise ValueError("chip is only for device.kind 'npu'")
        return self

    @property
    def label(self) -> str:
        """The seed's device column, counting every rank: NPU-8p; over nodes, NPU-16p (2 nodes)."""
        text = f"{self.kind.upper()}-{self.world_size}p"
        return text if self.nodes == 1 else f"{text} ({self.nodes} nodes)"

    @property
    def device_ids(self) -> tuple[int, ...]:
        return parse_device_ids(self.ids) if self.ids is not None else tuple(range(self.count))

    @property
    def world_size(self) -> int:
        """Ranks over all nodes: every node runs ``count`` processes."""
        return self.nodes * self.count


class Model(_Strict):
    config: str = Field(description="mmseg config file, relative to the recipe file")
    pretrained: str | None = Field(default=None, description="local checkpoint path or URL for the backbone; null trains from scratch")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted mmengine config keys -> values")


class Train(_Strict):
    batch_per_device: int = Field(ge=1)
    iterations: int = Field(ge=1)
    log_interval: int = Field(default=50, ge=1)
    val_interval: int = Field(default=1000, ge=1)
    checkpoint_interval: int = Field(default=1000, ge=1)
    workers_per_device: int = Field(default=2, ge=0)
    lr: float | None = Field(default=None, gt=0)
    norm: Literal["BN", "SyncBN"] = "BN"
    amp: bool = False
    # 0..2^32-1: what numpy's and torch's seeding accept; a seed outside it failed in the worker.
    seed: int | None = Field(default=0, ge=0, le=MAX_SEED)
    # Speed knobs (the "fast" GPU variant is these set on a stock recipe, not a config fork).
    amp_dtype: Literal["float16", "bfloat16"] | None = Field(
        default=None, description="with amp: the autocast dtype; null keeps the backend's (float16)"
    )
    channels_last: bool = Field(default=False, description="train with the model in channels_last memory format")
    cudnn_benchmark: bool | None = Field(default=None, description="env_cfg.cudnn_benchmark; null keeps the config's")

    @model_validator(mode="after")
    def _amp_dtype_needs_amp(self) -> "Train":
        if self.amp_dtype is not None and not self.amp:
            raise ValueError("amp_dtype needs amp: true")
        return self


class Synthetic(_Strict):
    n_train: int = Field(default=64, ge=1)
    n_aug: int = Field(default=64, ge=0)
    n_val: int = Field(default=24, ge=1)
    seed: int = 0


# dataset.root's value for "wherever this machine keeps the dataset": the shipped recipes use it,
# so no recipe points into the installed package's own folder.
DATA_HOME = "@data-home"
DATA_HOME_VARIABLE = "PSPNET_DATA"  # where @data-home points
DEFAULT_DATA_HOME = "data/VOCdevkit"  # under the working directory: compose's PSPNET_DATA default too


def data_home() -> Path:
    """Where the dataset lives unless a command or recipe names a folder: ``$PSPNET_DATA``, else
    ``./data/VOCdevkit``; absolute, so a message or a recorded run says exactly where."""
    return Path(os.environ.get(DATA_HOME_VARIABLE) or DEFAULT_DATA_HOME).expanduser().absolute()


class Dataset(_Strict):
    root: str | None = Field(default=None, description=f"the VOCdevkit folder (holding VOC2012/), relative to the "
                             f"recipe file; or {DATA_HOME!r}: the data home ($PSPNET_DATA, default ./data/VOCdevkit "
                             "under the working directory)")
    synthetic: Synthetic | None = Field(default=None, description="generate the synthetic VOC-format set into the cache instead")

    @model_validator(mode="after")
    def _one_source(self) -> "Dataset":
        if (self.root is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'root' (a VOCdevkit folder) or 'synthetic'")
        return self


class Tolerance(_Strict):
    fps_ratio: float = Field(default=0.9, gt=0, le=1, description="PASS when fps >= fps_ratio x reference fps")
    accuracy_points: float = Field(default=1.0, ge=0, description="PASS when a metric >= reference - points")
    warn_points: float = Field(default=1.0, ge=0, description="WARN (not FAIL) within this many further points")
    seed_spread_points: float = Field(
        default=1.0, ge=0,
        description="a group of repeats (harness run --repeat) is judged by its mean accuracy with accuracy_points "
                    "widened by this many points: how far runs that differ only in the seed are known to move "
                    "(mmsegmentation#1208: more than a point for PSPNet on VOC)",
    )


class PublishedRow(_Strict):
    """A published table row: label, where it comes from, under which conditions, its numbers."""

    label: str = Field(description="the row's device label, e.g. 'NPU-8p'")
    source: str
    conditions: str = ""
    fps: float | None = Field(default=None, gt=0)
    aAcc: float | None = Field(default=None, ge=0, le=100)
    mIoU: float | None = Field(default=None, ge=0, le=100)
    mAcc: float | None = Field(default=None, ge=0, le=100)


class Reference(PublishedRow):
    """The row this recipe must reproduce, with its tolerances."""

    compare: Literal["best", "final"] = Field(
        default="best", description="judge the best evaluation (the seed scripts' definition) or the final one"
    )
    tolerance: Tolerance = Tolerance()


class Eval(_Strict):
    checkpoint: str = Field(description="checkpoint to evaluate (path, relative to the recipe file)")


TrackingBackend = Literal["tensorboard", "mlflow"]
# MLflow stores that are a path on the worker's machine, and how an absolute one starts after "scheme:".
LOCAL_STORE_PREFIXES = {"sqlite": "////", "file": "///"}


class Tracking(_Strict):
    """Experiment tracking: mmengine vis backends that stream the curves live (harness.evidence.tracking)."""

    backends: list[TrackingBackend] = Field(
        min_length=1, description="where the worker streams scalars besides its own vis_data: tensorboard, mlflow"
    )
    mlflow_uri: str | None = Field(
        default=None, description="with mlflow: the tracking URI, e.g. http://127.0.0.1:5000 or sqlite:////abs/mlflow.db"
    )
    experiment: str | None = Field(default=None, max_length=200, description="MLflow experiment name; default: the recipe's name")

    @model_validator(mode="after")
    def _consistent(self) -> "Tracking":
        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"backends {self.backends} names a backend twice")
        if "mlflow" in self.backends and not self.mlflow_uri:
            raise ValueError("mlflow_uri is required with backend mlflow (e.g. http://127.0.0.1:5000 or "
                             "sqlite:////abs/path/mlflow.db)")
        if self.mlflow_uri is not None:
            if "mlflow" not in self.backends:
                raise ValueError("mlflow_uri goes with backend mlflow")
            scheme, sep, rest = self.mlflow_uri.partition(":")
            if not sep or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
                raise ValueError(f"mlflow_uri {self.mlflow_uri!r}: expected a URI with a scheme (http://, https://, sqlite:///)")
            prefix = LOCAL_STORE_PREFIXES.get(scheme)
            if prefix and not rest.startswith(prefix):
                # relative to whichever folder the worker runs in: never where the user looks
                raise ValueError(f"mlflow_uri {self.mlflow_uri!r}: a {scheme} store needs an absolute path "
                                 f"({scheme}:{prefix}abs/path)")
        return self


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    mode: Mode
    image: str | None = Field(default=None, description="container image; the docker executor is the default when set")
    device: Device
    model: Model
    train: Train
    dataset: Dataset
    reference: Reference
    published: list[PublishedRow] = Field(default_factory=list, description="further published rows shown for context, not judged")
    eval: Eval | None = None
    tracking: Tracking | None = Field(default=None, description="stream the run's curves to TensorBoard and/or MLflow")
    timeout_minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _mode_rules(self) -> "Recipe":
        if self.mode == "eval" and self.eval is None:
            raise ValueError("mode 'eval' needs an 'eval' block with the checkpoint to evaluate")
        if self.train.norm == "SyncBN" and self.device.kind == "cpu":
            raise ValueError("train.norm 'SyncBN' does not work on the CPU (gloo DDP); use 'BN'")
        return self

    @model_validator(mode="after")
    def _speed_knobs_fit_device(self) -> "Recipe":
        if self.train.cudnn_benchmark and self.device.kind != "gpu":
            raise ValueError(f"train.cudnn_benchmark is for device.kind 'gpu' (cuDNN), not {self.device.kind!r}")
        return self


def _loc(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _format_validation(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = _loc(first)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (not a recipe field)"
    elif first["type"] == "missing":
        message = "required field is missing"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {field}: {message}{more}"


class _SafeLoader(yaml.SafeLoader):
    """Safe loading only: ``!!python/...`` tags are rejected, never constructed."""


def _expanded_values(node: Any, where: str) -> int:
    """How many values ``node`` holds once YAML aliases are expanded (pydantic, error messages and
    ``yaml.safe_dump`` all expand them), counted without expanding; BadInput past the bound."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def count(value: Any) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise BadInput(f"{where}: YAML aliases refer to themselves (a recursive structure)")
        in_progress.add(key)
        children = value.values() if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += count(child)
            if total > MAX_YAML_VALUES:
                raise BadInput(f"{where}: YAML aliases expand to more than {MAX_YAML_VALUES} values; a recipe is small")
        in_progress.discard(key)
        sizes[key] = total
        return total

    return count(node)


def load_recipe_data(path: Path) -> dict:
    try:
        if path.is_file() and path.stat().st_size > MAX_RECIPE_BYTES:
            raise BadInput(f"{path}: the recipe is larger than {MAX_RECIPE_BYTES} bytes; a recipe is a few kilobytes")
        text = path.read_text()
    except FileNotFoundError:
        raise BadInput(f"{path}: recipe file does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read recipe ({exc.__class__.__name__})") from None
    try:
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{path}: {where}invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: (top level): expected a mapping of recipe fields, got {type(data).__name__}")
    _expanded_values(data, str(path))
    return data


def parse_set_arguments(items: list[str]) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` strings from ``--set``; values are YAML scalars (``3``, ``true``, ``[1,2]``)."""
    pairs = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise BadInput(f"--set {item!r}: expected KEY=VALUE with a dotted recipe key, e.g. train.iterations=20")
        try:
            value = yaml.load(raw, Loader=_SafeLoader) if raw else ""
        except yaml.YAMLError:
            raise BadInput(f"--set {key}: the value is not valid YAML") from None
        _expanded_values(value, f"--set {key}")
        pairs.append((key, value))
    return pairs


def load_recipe(path: Path, sets: list[str] | tuple[str, ...] = (), *, for_run: bool = False) -> "LoadedRecipe":
    """Read, apply ``--set`` overrides, validate, and check the paths the recipe names exist.

    The mmseg config must always exist; the data, weights and checkpoint only when the recipe is
    about to run here (a plan for an NPU cluster is printable on a laptop without its dataset).
    """
    path = Path(path)
    if not path.exists():
        from harness.planning.shipped import shipped_recipe

        path = shipped_recipe(str(path)) or path  # `harness run smoke_cpu`: a shipped recipe by name
    data = load_recipe_data(path)
    for key, value in parse_set_arguments(list(sets)):
        try:
            set_dotted(data, key, value)
        except DottedKeyError as exc:
            raise BadInput(f"--set {exc}") from None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise BadInput(_format_validation(path, exc)) from None
    loaded = LoadedRecipe(path=path.resolve(), recipe=recipe, data=data)
    loaded.check_paths(for_run=for_run)
    return loaded


class LoadedRecipe:
    """A validated recipe and where it came from (relative paths resolve against its folder)."""

    def __init__(self, path: Path, recipe: Recipe, data: dict):
        self.path = path
        self.recipe = recipe
        self.data = data

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()

    def dataset_root(self) -> Path | None:
        """The VOCdevkit ``dataset.root`` names (the data home for ``@data-home``); None when synthetic."""
        root = self.recipe.dataset.root
        if root is None:
            return None
        return data_home() if root == DATA_HOME else self.resolve(root)

    @property
    def config_path(self) -> Path:
        return self.resolve(self.recipe.model.config)

    def config_files(self) -> list[tuple[Path, Path]]:
        """The config and its local ``_base_`` files, checked (Python, inside the recipe's folder)."""
        from harness.planning.configs import collect_config_files

        try:
            return collect_config_files(self.config_path, self.path.parent)
        except BadInput as exc:
            raise BadInput(f"{self.path}: model.config: {exc}") from None

    def check_overrides(self) -> None:
        """Every ``model.overrides`` key must exist in the loaded mmengine config with a value of
        the same shape; checked here because the worker only meets them after the run folder exists."""
        overrides = self.recipe.model.overrides
        if not overrides:
            return
        from harness.planning.mmseg_config import OverrideError, check_overrides

        try:
            with warnings.catch_warnings():  # mmengine's import warns (pkg_resources); one line only
                warnings.simplefilter("ignore")
                from mmengine.config import Config

                cfg = Config.fromfile(str(self.config_path))
        except (ImportError, ModuleNotFoundError):
            # No training stack on this host (plans for a cluster): the worker checks them when it
            # loads the config, but the user must know this plan did not.
            print(f"note: {self.path}: model.overrides were not checked: mmengine (the 'train' extra) "
                  "is not installed here; the worker checks them", file=sys.stderr)
            return
        except Exception as exc:  # a config mmengine cannot load is bad input, whatever the reason
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise BadInput(f"{self.path}: model.config: mmengine cannot load {self.config_path} ({exc.__class__.__name__}: {detail})") from None
        try:
            check_overrides(cfg, overrides)
        except OverrideError as exc:
            raise BadInput(f"{self.path}: model.overrides: {exc}") from None

    def check_paths(self, *, for_run: bool) -> None:
        recipe = self.recipe
        if not self.config_path.is_file():
            raise BadInput(f"{self.path}: model.config: file {self.config_path} does not exist")
        self.config_files()
        self.check_overrides()
        if not for_run:
            return
        if recipe.eval is not None and not self.resolve(recipe.eval.checkpoint).is_file():
            raise BadInput(f"{self.path}: eval.checkpoint: file {self.resolve(recipe.eval.checkpoint)} does not exist")
        if recipe.device.rank_table is not None:
            from harness.planning.ranktable import load_rank_table

            load_rank_table(self.resolve(recipe.device.rank_table), recipe.device, where=f"{self.path}: device.rank_table")
        pretrained = recipe.model.pretrained
        if pretrained and "://" not in pretrained and not self.resolve(pretrained).is_file():
            raise BadInput(f"{self.path}: model.pretrained: file {self.resolve(pretrained)} does not exist")
        if recipe.dataset.root is not None and not self.dataset_root().is_dir():
            raise BadInput(
                f"{self.path}: dataset.root: folder {self.dataset_root()} does not exist "
                "(expected a VOCdevkit folder holding VOC2012/: `harness data fetch --prepare` makes one in the "
                "data home; or override with --set dataset.root=PATH)"
            )
