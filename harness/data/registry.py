"""The archive registry (``registry.yaml`` beside this module, or ``--registry FILE``): name ->
file name, md5, byte size, URLs. Read once, validated, and identified by its sha256 so the dataset
manifest can say which registry verified the archives."""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.core.errors import BadInput, first_problem

DEFAULT_REGISTRY = Path(__file__).with_name("registry.yaml")
MAX_REGISTRY_BYTES = 1 << 20
ARCHIVE_NAMES = ("voc2012", "sbd")


class Archive(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="the file name in the cache")
    md5: str = Field(pattern=r"^[0-9a-f]{32}$")
    size: int = Field(gt=0, description="exact byte size: caps the download and sizes the disk check")
    unpacked_bytes: int = Field(ge=0, description="upper bound of what preparing writes from it")
    urls: list[str] = Field(min_length=1)


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    archives: dict[str, Archive]


class LoadedRegistry:
    def __init__(self, path: Path, registry: Registry, sha256: str):
        self.path, self.registry, self.sha256 = path, registry, sha256

    def archive(self, name: str) -> Archive:
        try:
            return self.registry.archives[name]
        except KeyError:
            raise BadInput(f"{self.path}: archives: no entry {name!r} (has {', '.join(self.registry.archives)})") from None

    def identity(self) -> dict:
        return {"path": str(self.path.resolve()), "sha256": self.sha256}


def load_registry(path: Path | None = None) -> LoadedRegistry:
    path = Path(path) if path is not None else DEFAULT_REGISTRY
    try:
        if path.stat().st_size > MAX_REGISTRY_BYTES:
            raise BadInput(f"{path}: {path.stat().st_size} bytes, more than a registry may have ({MAX_REGISTRY_BYTES})")
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the archive registry ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not YAML ({' '.join(str(exc).split())})") from None
    try:
        registry = Registry.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"{path}: {first_problem(exc)}") from None
    for name in ARCHIVE_NAMES:
        if name not in registry.archives:
            raise BadInput(f"{path}: archives.{name}: missing (the registry lists {', '.join(ARCHIVE_NAMES)})")
    return LoadedRegistry(path, registry, hashlib.sha256(raw).hexdigest())
