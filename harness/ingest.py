"""``harness ingest``: import runs made outside the harness into ``results/runs/``.

Two kinds of source are recognised, anywhere under the given path:

- the seed scripts' output folders, ``output/<Network>/<ASCEND_DEVICE_ID>/`` with
  ``train_<id>.log`` (the rank-0 training log) and ``<CaseName>.log`` (their ``Key = Value``
  result file, e.g. ``PSPNet_bs16_8p_acc.log``; ``_perf`` = performance mode, ``_eval`` = the
  evaluation script); the ``ckpt/`` folder under it is not read;
- plain mmsegmentation work_dirs: 1.x (``<work_dir>/<timestamp>/`` folders holding
  ``<timestamp>.log`` and ``vis_data/scalars.json``; each timestamp folder is one (re)start of
  the run, all of them make one run) or a single such timestamp folder; 0.x (``*.log`` /
  ``*.log.json`` in the folder).

Each source becomes one run folder, laid out like a run the harness made: the logs copied into
``work_dir/<attempt>/`` (so ``harness.result`` finds them), a ``recipe.yaml`` that describes
what the logs say was run (mode, device kind and count, batch, iterations) with the shipped
reference row it should be judged against, ``recipe_source.json``, ``provenance.json`` (where
it came from, the files and their sha256), ``status.json`` (``succeeded`` with ``ingested:
true``, or ``failed`` when the log stops early) and ``result.json``.

Everything is parsed before anything is written: bad input raises ``IngestError`` (one line,
naming the path) and leaves the results folder untouched. Importing the same files again is a
no-op: the sha256 of the source files is compared with those recorded by earlier imports.
"""
from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from harness.errors import BadInput
from harness.logs import LogParseError, LogResult, parse_logs
from harness.logs import seed_result
from harness.recipe import Recipe, RecipeError, load_recipe_data
from harness.records import DamagedRecord, ProvenanceRecord, RecipeSourceRecord
from harness.result import build_result
from harness.runs import RunDir, RunStore, utc_now
from harness.shipped import RECIPES_DIR

RECIPES_DIR = RECIPES_DIR
SEED_CONFIG = "configs/pspnet_r50-d8_voc12aug-512x512_npu-seed.py"
GPU_CONFIG = "configs/pspnet_r50-d8_voc12aug-512x512_gpu.py"
NAME_MAX = 64
MAX_DEPTH = 8
_TRAIN_LOG = re.compile(r"^train_(\d+)\.log$")
_TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")
_SNIFF_BYTES = 8192
_DEVICE_SNIFF_BYTES = 1 << 16


class IngestError(BadInput):
    """Input that cannot be imported; ``str()`` is one line naming the path."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class Source:
    """One run found on disk, before anything is written."""

    kind: str  # "seed" or "mmseg"
    origin: Path  # the folder (or file) it was found at, absolute
    name: str  # recipe name
    # attempt folder name -> [(source file, path relative to that attempt folder)]
    attempts: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)
    parse_files: list[Path] = field(default_factory=list)
    seed_fields: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """A parsed source and the recipe it will be stored with."""

    source: Source
    parsed: LogResult
    recipe_data: dict
    recipe: Recipe
    sha256: dict[str, str]


# --- finding sources ------------------------------------------------------------------------------


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    name = name[:NAME_MAX].rstrip("-.")
    if not name or not name[0].isalnum():
        name = ("x" + name)[:NAME_MAX]
    return name


def _head(path: Path, size: int = _SNIFF_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _is_seed_result(path: Path) -> bool:
    return path.is_file() and not _TRAIN_LOG.match(path.name) and seed_result.sniff(_head(path))


def _logs_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and (p.name.endswith(".log") or p.name.endswith(".log.json")))
    except OSError:
        return []


def _is_seed_folder(folder: Path) -> bool:
    return any(_TRAIN_LOG.match(p.name) or _is_seed_result(p) for p in _logs_in(folder) if p.name.endswith(".log"))


def _is_log_folder(folder: Path) -> bool:
    return bool(_logs_in(folder)) or (folder / "vis_data" / "scalars.json").is_file()


def _is_harness_run(folder: Path) -> bool:
    return RunDir(folder).looks_like_a_run()


def _seed_fields(path: Path) -> dict:
    fields = {}
    for line in _head(path, 1 << 16).splitlines():
        match = re.match(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def _seed_source(folder: Path) -> Source:
    logs = [p for p in _logs_in(folder) if p.name.endswith(".log")]
    trains = [p for p in logs if _TRAIN_LOG.match(p.name)]
    results = [p for p in logs if _is_seed_result(p)]
    if len(trains) > 1:
        raise IngestError(f"{folder}: several training logs ({', '.join(p.name for p in trains)}); "
                          "a seed output folder holds one train_<id>.log")
    train = trains[0] if trains else None
    result = _pick_seed_result(folder, train, results)
    fields = _seed_fields(result) if result else {}
    case = fields.get("CaseName")
    if case:
        name = f"ingested-seed-{case}"
    else:
        network = fields.get("Network") or folder.parent.name or "seed"
        device_id = _TRAIN_LOG.match(train.name).group(1) if train else folder.name
        name = f"ingested-seed-{network}-{device_id}"
    files = [p for p in (train, result) if p is not None]
    attempt = _safe_name(f"seed-{folder.name}")
    return Source(kind="seed", origin=folder, name=_safe_name(name),
                  attempts={attempt: [(p, p.name) for p in files]}, parse_files=files, seed_fields=fields)


def _pick_seed_result(folder: Path, train: Path | None, results: list[Path]) -> Path | None:
    """The result file that belongs to the training log (the scripts write every mode's result
    file into the same folder, but overwrite train_<id>.log)."""
    if len(results) <= 1:
        return results[0] if results else None
    if train is not None:
        try:
            loss = parse_logs([train]).final_loss
        except LogParseError as exc:
            raise IngestError(str(exc)) from None
        matching = [r for r in results if _same_loss(_seed_fields(r).get("ActualLoss"), loss)]
        if len(matching) == 1:
            return matching[0]
    raise IngestError(f"{folder}: several seed result files ({', '.join(p.name for p in results)}) and "
                      "none singled out by the training log's last loss; copy the pair to ingest into a folder of its own")


def _same_loss(text: str | None, loss: float | None) -> bool:
    try:
        return loss is not None and text is not None and abs(float(text) - loss) < 5e-5
    except ValueError:
        return False


def _mmseg_files(folder: Path) -> list[tuple[Path, str]]:
    """What the parsers read from one log folder (as ``harness.logs`` expands it), plus the
    1.x config dump for the record."""
    texts = [p for p in _logs_in(folder) if p.name.endswith(".log")]
    jsons = [p for p in _logs_in(folder) if p.name.endswith(".log.json")]
    files = [(p, p.name) for p in texts + jsons]
    for extra in ("scalars.json", "config.py"):
        path = folder / "vis_data" / extra
        if path.is_file():
            files.append((path, f"vis_data/{extra}"))
    return files


def _findable(files: list[tuple[Path, str]], parse_files: list[Path]) -> list[tuple[Path, str]]:
    """harness.result looks for attempt folders holding a ``*.log``: a folder of only 0.x
    ``.log.json`` or 1.x ``scalars.json`` stores those as ``<name>.log`` (same bytes; the
    parsers go by content, provenance.json keeps the original name)."""
    if any("/" not in rel and rel.endswith(".log") for _, rel in files):
        return files
    renamed = {p: f"{p.name}.log" for p in parse_files}
    return [(p, renamed.get(p, rel)) for p, rel in files]


def _mmseg_parse_files(files: list[tuple[Path, str]]) -> list[Path]:
    # The same choice harness.logs.detect.expand makes for a folder: text logs (+ scalars),
    # else the 0.x .log.json files.
    texts = [p for p, rel in files if rel.endswith(".log")]
    scalars = [p for p, rel in files if rel == "vis_data/scalars.json"]
    if texts or scalars:
        return texts + scalars
    return [p for p, rel in files if rel.endswith(".log.json")]


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Seed output folders and mmseg log folders under ``root`` (not following links)."""
    seeds, log_folders = [], []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if _is_harness_run(folder) and folder != root:
            continue  # already in a run store
        if _is_seed_folder(folder):
            seeds.append(folder)
            continue
        if _is_log_folder(folder):
            log_folders.append(folder)  # and look further down: a folder of logs can hold more
        if depth >= MAX_DEPTH:
            continue
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                              and not p.name.startswith(".") and p.name != "vis_data")
        except OSError:
            continue
        stack.extend((child, depth + 1) for child in reversed(children))
    return sorted(seeds), sorted(log_folders)


def discover(path: Path) -> list[Source]:
    """Every run under ``path``; raises ``IngestError`` when there is none."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file or directory")
    origin = path.resolve()
    if origin.is_file():
        return [_file_source(origin)]
    if not origin.is_dir():
        raise IngestError(f"{path}: not a file or directory")
    seeds, log_folders = _walk(origin)
    sources = [_seed_source(folder) for folder in seeds]
    # 1.x: <work_dir>/<timestamp>/ folders are restarts of one run, grouped under their work_dir
    # (unless the path given is the timestamp folder itself).
    groups: dict[Path, list[Path]] = {}
    for folder in log_folders:
        if _TIMESTAMP.match(folder.name) and folder != origin and not _is_log_folder(folder.parent):
            groups.setdefault(folder.parent, []).append(folder)
        else:
            groups.setdefault(folder, []).append(folder)
    for work_dir, folders in sorted(groups.items()):
        attempts = {}
        parse_files: list[Path] = []
        for folder in folders:
            files = _mmseg_files(folder)
            chosen = _mmseg_parse_files(files)
            attempts[_safe_name(folder.name)] = _findable(files, chosen)
            parse_files += chosen
        sources.append(Source(kind="mmseg", origin=work_dir, name=_safe_name(f"ingested-mmseg-{work_dir.name}"),
                              attempts=attempts, parse_files=parse_files))
    if not sources:
        raise IngestError(f"{path}: no recognisable logs: expected a seed output folder (output/<Network>/<id>/ "
                          "with train_<id>.log) or an mmseg work_dir (*.log, *.log.json, <timestamp>/vis_data/scalars.json)")
    return sources


def _file_source(path: Path) -> Source:
    """A single log file: its seed folder when it is one, else an mmseg log on its own."""
    if _TRAIN_LOG.match(path.name) or _is_seed_result(path):
        return _seed_source(path.parent)
    stem = path.name.removesuffix(".json").removesuffix(".log")
    return Source(kind="mmseg", origin=path, name=_safe_name(f"ingested-mmseg-{stem}"),
                  attempts={_safe_name(f"mmseg-{stem}"): _findable([(path, path.name)], [path])},
                  parse_files=[path])


# --- recipes --------------------------------------------------------------------------------------


def _shipped_reference(name: str) -> dict | None:
    try:
        data = load_recipe_data(RECIPES_DIR / f"{name}.yaml")
    except RecipeError:
        return None
    reference = data.get("reference")
    return dict(reference) if isinstance(reference, dict) else None


def _mmseg_reference(kind: str) -> dict:
    if kind != "cpu":
        try:
            data = load_recipe_data(RECIPES_DIR / "gpu_full_8p.yaml")
        except RecipeError:
            data = {}
        for row in data.get("published") or []:
            if isinstance(row, dict) and row.get("label") == "mmsegmentation":
                return {**row, "compare": "best"}
    return {"label": "none", "source": "ingested run: no published row for these conditions",
            "conditions": "no reference numbers; nothing is judged", "compare": "best"}


def _seed_mode(case: str | None, parsed: LogResult) -> str:
    if case:
        for suffix, mode in (("_acc", "accuracy"), ("_perf", "performance"), ("_eval", "eval")):
            if case.endswith(suffix):
                return mode
    return "accuracy" if parsed.evaluations_count else "performance"


def _seed_reference(mode: str, count: int) -> dict:
    if mode == "eval":
        names = ["eval_8p"]
    elif count == 1:
        names = ["full_1p" if mode == "accuracy" else "perf_1p", "full_1p"]
    else:
        names = ["full_8p" if mode == "accuracy" else "perf_8p", "full_8p"]
    for name in names:
        reference = _shipped_reference(name)
        if reference:
            return reference
    return {"label": "none", "source": "the shipped recipes were not found", "compare": "best"}


def _log_text_head(parse_files: list[Path]) -> str:
    return "\n".join(_head(p, _DEVICE_SNIFF_BYTES) for p in parse_files)


def _mmseg_device_kind(head: str) -> str:
    lower = head.lower()
    if any(mark in lower for mark in ("torch_npu", "+ascend", "'hccl'", "npu available: true", "device='npu'")):
        return "npu"
    if "cuda available: true" in lower or re.search(r"^\s*gpu \d+(,\d+)*:", lower, re.M):
        return "gpu"
    if "cuda available: false" in lower:
        return "cpu"
    return "gpu"  # no environment block: mmseg's usual device


def _interval(values: list[int], default: int) -> int:
    steps = sorted({b - a for a, b in zip(values, values[1:]) if b > a})
    return steps[0] if steps else default


def _recipe_data(source: Source, parsed: LogResult, batch: int, devices: int) -> dict:
    head = _log_text_head(source.parse_files)
    train_iters = [pt.iter for pt in parsed.train]
    eval_iters = [e.iteration for e in parsed.evaluations if e.iteration is not None]
    iterations = parsed.max_iters or parsed.iterations or 1
    train = {
        "batch_per_device": batch,
        "iterations": iterations,
        "log_interval": _interval(train_iters, train_iters[0] if train_iters else 50),
        "val_interval": _interval(eval_iters, eval_iters[0] if eval_iters else iterations),
    }
    if source.kind == "seed":
        case = source.seed_fields.get("CaseName")
        mode = _seed_mode(case, parsed)
        kind = "npu"  # the seed scripts run on Ascend; DeviceType (aarch64 / x86_64) is the host CPU
        train.update(norm="BN", amp=True)
        reference = _seed_reference(mode, devices)
        config = SEED_CONFIG
        what = f"seed scripts' output folder{f' (CaseName {case})' if case else ''}"
    else:
        mode = "accuracy" if parsed.evaluations_count else "performance"
        kind = _mmseg_device_kind(head)
        if kind != "cpu" and "SyncBN" in head:
            train["norm"] = "SyncBN"
        reference = _mmseg_reference(kind)
        config = next((f"work_dir/{attempt}/{rel}" for attempt, files in source.attempts.items()
                       for _, rel in files if rel == "vis_data/config.py"),
                      SEED_CONFIG if kind == "npu" else GPU_CONFIG)
        what = f"mmsegmentation work_dir ({parsed.format})"
    data = {
        "name": source.name,
        "description": f"Ingested from {source.origin}: {what}; not run by the harness",
        "mode": mode,
        "device": {"kind": kind, "count": devices},
        "model": {"config": config},
        "train": train,
        "dataset": {"root": str(source.origin)},
        "reference": reference,
    }
    if mode == "eval":
        data["eval"] = {"checkpoint": "ckpt/latest.pth"}  # what train_val_8p.sh evaluates
    return data


# --- parse, then write ----------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _prepare_source(source: Source, batch_per_device: int | None, devices: int | None) -> Prepared:
    if not source.parse_files:
        raise IngestError(f"{source.origin}: no log files to read")
    try:
        parsed = parse_logs(source.parse_files, batch_per_device=batch_per_device, devices=devices)
    except LogParseError as exc:
        raise IngestError(str(exc)) from None
    except (ValueError, OSError, UnicodeError) as exc:
        raise IngestError(f"{source.origin}: {exc}") from None
    batch = parsed.batch_per_device
    count = parsed.devices
    if batch is None:
        raise IngestError(f"{source.origin}: the logs do not say the batch per device; pass --batch-size")
    if count is None:
        raise IngestError(f"{source.origin}: the logs do not say over how many devices the run was "
                          "distributed; pass --devices")
    data = _recipe_data(source, parsed, batch, count)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise IngestError(f"{source.origin}: cannot describe the run as a recipe: {where}: {first['msg']}") from None
    sha = {}
    for attempt, files in source.attempts.items():
        for src, rel in files:
            try:
                sha[f"{attempt}/{rel}"] = _sha256(src)
            except OSError as exc:
                raise IngestError(f"{src}: {exc.strerror or exc}") from None
    return Prepared(source=source, parsed=parsed, recipe_data=data, recipe=recipe, sha256=sha)


def prepare(path: Path, *, batch_per_device: int | None = None, devices: int | None = None) -> list[Prepared]:
    """Find and parse every run under ``path``; writes nothing. Raises ``IngestError``."""
    return [_prepare_source(s, batch_per_device, devices) for s in discover(path)]


def _fingerprint(sha: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(sha.values()))


def find_existing(store: RunStore, prepared: Prepared) -> RunDir | None:
    """An earlier import of exactly these files (same sha256 set), if any."""
    wanted = _fingerprint(prepared.sha256)
    for run in store.all():
        try:
            provenance = run.provenance()
        except DamagedRecord:
            continue  # a damaged run is listed as such by `harness runs`; it is no earlier import
        if provenance is not None and provenance.ingested_from and provenance.sha256:
            if _fingerprint(provenance.sha256) == wanted:
                return run
    return None


def _ingester() -> dict:
    from harness.provenance import _git

    status = _git("status", "--porcelain")
    return {"harness_commit": _git("rev-parse", "HEAD"), "harness_dirty": bool(status) if status is not None else None}


def write(prepared: Prepared, results_dir: Path) -> RunDir:
    """Store one prepared source as a run folder (removed again if writing fails)."""
    source = prepared.source
    run = RunStore(results_dir).create(source.name)
    try:
        run.set_status("created", ingested=True, source=str(source.origin))
        files = []
        for attempt, entries in source.attempts.items():
            for src, rel in entries:
                dest = run.work_dir / attempt / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                files.append({"source": str(src), "stored": f"work_dir/{attempt}/{rel}"})
        run.write_text("recipe.yaml", yaml.safe_dump(prepared.recipe_data, sort_keys=False))
        run.write(RecipeSourceRecord(path=str(source.origin)))
        run.write(ProvenanceRecord(
            ingested_from=str(source.origin),
            ingested_at=utc_now(),
            kind=source.kind,
            files=files,
            sha256=prepared.sha256,
            seed_result=source.seed_fields or None,
            ingested_by=_ingester(),
        ))
        result = build_result(run, prepared.recipe, prepared.recipe.device.world_size, ingested_from=str(source.origin))
        run.write(result)
        details = {"ingested": True, "source": str(source.origin), "finished": utc_now()}
        if result.parse_error:
            run.set_status("failed", reason=f"ingested logs unreadable: {result.parse_error}", **details)
        elif result.partial:
            it, total = result.iterations, result.max_iters
            why = f"stopped at iteration {it} of {total}" if it is not None and total and it < total else "truncated log"
            run.set_status("failed", reason=f"partial log: {why}", **details)
        else:
            run.set_status("succeeded", **details)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


def ingest(path: Path, results_dir: Path, *, batch_per_device: int | None = None, devices: int | None = None,
           on_message: Callable[[str], None] | None = None) -> list[RunDir]:
    """Import every run under ``path`` into ``results_dir``; returns the runs created.

    Sources imported before (same files, by sha256) are skipped; ``on_message`` gets
    ``"already ingested as <run-id>"`` for each. Raises ``IngestError`` before writing anything.
    """
    prepared = prepare(path, batch_per_device=batch_per_device, devices=devices)
    return store_prepared(prepared, results_dir, on_message=on_message)


def store_prepared(prepared: list[Prepared], results_dir: Path, *,
                   on_message: Callable[[str], None] | None = None) -> list[RunDir]:
    store = RunStore(results_dir)
    created = []
    for item in prepared:
        existing = find_existing(store, item)
        if existing is not None:
            if on_message:
                on_message(f"{item.source.origin}: already ingested as {existing.run_id}")
            continue
        run = write(item, results_dir)
        created.append(run)
        if on_message:
            on_message(describe(run, item))
    return created


def describe(run: RunDir, item: Prepared) -> str:
    result = run.result()
    state = run.status().state
    best = result.compared_metrics().mIoU if result else None
    fps = result.fps if result else None
    iterations = result.iterations if result else None
    bits = [f"{item.recipe.device.kind}-{item.recipe.device.count}p", f"{iterations or '--'} iterations"]
    if fps is not None:
        bits.append(f"fps {fps:.3f}")
    if best is not None:
        bits.append(f"{result.compared} mIoU {best:.2f}")
    return f"{item.source.origin}: ingested as {run.run_id} ({state}; {', '.join(bits)})"
