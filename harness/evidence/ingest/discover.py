"""Finding runs on disk for ``harness ingest``: seed output folders and mmseg work_dirs (or
single log files), each one ``Source`` listing the files to store and the files to parse. Reads
only; writes nothing."""
from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from harness.evidence.ingest.errors import IngestError
from harness.results.logs import LogParseError, parse_logs
from harness.results.logs import seed_result
from harness.store.runs import MAX_TEXT_FILE_BYTES, RunDir

NAME_MAX = 64
MAX_DEPTH = 8
_TRAIN_LOG = re.compile(r"^train_(\d+)\.log$")
_TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")
_SNIFF_BYTES = 8192


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


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    name = name[:NAME_MAX].rstrip("-.")
    if not name or not name[0].isalnum():
        name = ("x" + name)[:NAME_MAX]
    return name


def read_head(path: Path, size: int = _SNIFF_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _is_seed_result(path: Path) -> bool:
    return path.is_file() and not _TRAIN_LOG.match(path.name) and seed_result.sniff(read_head(path))


def _checked(path: Path) -> bool:
    """Whether ``path`` is a file to read; a link (followed nowhere) or a text file larger than
    any log is refused in one line rather than skipped: the run would come in without it."""
    try:
        info = path.lstat()
    except OSError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise IngestError(f"{path}: a symbolic link; refused (links out of a folder being ingested are not followed)")
    if not stat.S_ISREG(info.st_mode):
        return False
    if info.st_size > MAX_TEXT_FILE_BYTES:
        raise IngestError(f"{path}: {info.st_size} bytes, more than a log holds ({MAX_TEXT_FILE_BYTES}); refused")
    return True


def _logs_in(folder: Path) -> list[Path]:
    try:
        named = sorted(p for p in folder.iterdir() if p.name.endswith(".log") or p.name.endswith(".log.json"))
    except OSError:
        return []
    return [p for p in named if _checked(p)]


def _is_seed_folder(folder: Path) -> bool:
    return any(_TRAIN_LOG.match(p.name) or _is_seed_result(p) for p in _logs_in(folder) if p.name.endswith(".log"))


def _is_log_folder(folder: Path) -> bool:
    return bool(_logs_in(folder)) or _checked(folder / "vis_data" / "scalars.json")


def _is_harness_run(folder: Path) -> bool:
    return RunDir(folder).looks_like_a_run()


def _seed_fields(path: Path) -> dict:
    fields = {}
    for line in read_head(path, 1 << 16).splitlines():
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
    """What the parsers read from one log folder (as ``harness.results.logs`` expands it), plus the
    1.x config dump for the record."""
    texts = [p for p in _logs_in(folder) if p.name.endswith(".log")]
    jsons = [p for p in _logs_in(folder) if p.name.endswith(".log.json")]
    files = [(p, p.name) for p in texts + jsons]
    for extra in ("scalars.json", "config.py"):
        path = folder / "vis_data" / extra
        if _checked(path):
            files.append((path, f"vis_data/{extra}"))
    return files


def _mmseg_parse_files(files: list[tuple[Path, str]]) -> list[Path]:
    # The same choice harness.results.logs.detect.expand makes for a folder: text logs (+ scalars),
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
            attempts[_safe_name(folder.name)] = files
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
                  attempts={_safe_name(f"mmseg-{stem}"): [(path, path.name)]},
                  parse_files=[path])
