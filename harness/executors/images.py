"""The project's container images: content tags, build contexts and a thin docker-py build.

An image's tag is a hash of what goes into it (its ``docker/<kind>/`` folder, the harness source,
pyproject.toml, recipes/, the base image's name and the names/sizes of bundled wheels), e.g.
``pspnet-repro/cpu:3f2a9c0d41be``. So a run records exactly which build it used, and an unchanged
tree never rebuilds. Extra CA certificates are a build input but not part of the tag: they vary
per site and do not change what is trained.

Everything but ``build_image`` is pure (files in, strings out) and tested without Docker.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import SOURCE_TREE
from harness.core.errors import EnvironmentNotReady
from harness.executors.image_locks import checkout

KINDS = ("cpu", "gpu", "npu")
REPOSITORY = "pspnet-repro"
LOCAL_BASE = "pspnet-repro/base:bookworm"  # made by .ci/base-image.sh
HOST_CERT_DIR = Path("/usr/local/share/ca-certificates")
TORCH_VERSION = "2.13.0"
REPO_ROOT = SOURCE_TREE

# What the build context holds besides docker/<kind>/ (paths relative to the repo root).
PROJECT_PATHS = ("pyproject.toml", "harness")  # the recipes ship inside harness/
_SKIP_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


class ImageError(EnvironmentNotReady):
    """A build or lookup problem; ``str()`` is one line for the user (exit 3)."""


# Labels every image built here carries: what its harness sources were, and which harness built it.
SOURCE_LABEL = "org.pspnet-repro.source"
VERSION_LABEL = "org.pspnet-repro.harness-version"
BUILD_INFO_MODULE = "harness/_build_info.py"  # written into the build context only, never the repo


# ---------------------------------------------------------------------------------------------
# Pure helpers


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ImageError(f"unknown image kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def dockerfile_path(kind: str, repo_root: Path = REPO_ROOT) -> Path:
    return checkout(repo_root) / "docker" / check_kind(kind) / "Dockerfile"


def default_base(kind: str, repo_root: Path = REPO_ROOT) -> str:
    """The Dockerfile's own ``ARG BASE_IMAGE=...`` default (one source of truth)."""
    text = dockerfile_path(kind, repo_root).read_text()
    match = re.search(r"^ARG\s+BASE_IMAGE=(\S+)", text, re.MULTILINE)
    if not match:
        raise ImageError(f"{dockerfile_path(kind, repo_root)} has no 'ARG BASE_IMAGE=<default>'")
    return match.group(1)


NPU_CHIPS = ("910", "910b")


def npu_base_for_chip(chip: str, repo_root: Path = REPO_ROOT) -> str:
    """The NPU Dockerfile's default CANN base with its chip part set: CANN 8 tags are
    ``<cann>-<chip>-<os>-py<ver>``, ``-910-`` for Atlas A1 (the seed's), ``-910b-`` for Atlas A2."""
    if chip not in NPU_CHIPS:
        raise ImageError(f"--chip {chip!r}: expected one of {', '.join(NPU_CHIPS)}")
    default = default_base("npu", repo_root)
    based, count = re.subn(r"-(910b?)-", f"-{chip}-", default, count=1)
    if not count:
        raise ImageError(f"{dockerfile_path('npu', repo_root)}: base {default!r} names no -910-/-910b- chip part")
    return based


def build_command(kind: str, base: str | None = None) -> str:
    base = base or (LOCAL_BASE if kind == "cpu" else default_base(kind))
    return f"harness image build {kind} --base {base}"


def missing_image_message(tag: str) -> str:
    """One line naming the command that builds the missing image."""
    match = re.fullmatch(rf"{REPOSITORY}/({'|'.join(KINDS)}):.*", tag)
    how = f"build it with `{build_command(match.group(1))}`" if match else "build or load it first"
    return f"Docker image {tag} is not present on this engine: {how}"


def lock_digest(kind: str, repo_root: Path = REPO_ROOT) -> str | None:
    """``sha256:...`` over the kind's package locks (docker/<kind>/requirements-*.lock), or None
    if one is missing: provenance records it with each run (same digest, same packages)."""
    from harness.executors.image_locks import lock_digest as _digest

    return _digest(check_kind(kind), repo_root)


def _walk(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
        return
    for child in sorted(path.iterdir()):
        if child.name in _SKIP_NAMES or child.name.endswith(_SKIP_SUFFIXES) or child.name.endswith(".egg-info"):
            continue
        yield from _walk(child)


def context_files(kind: str, repo_root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """(path inside the context, source) for every project file of a kind's build context."""
    roots = [f"docker/{check_kind(kind)}", *PROJECT_PATHS]
    checkout(repo_root)
    files = []
    for rel in roots:
        top = repo_root / rel
        if not top.exists():
            continue
        files += [(src.relative_to(repo_root).as_posix(), src) for src in _walk(top)]
    return sorted(files)


def content_tag(kind: str, base_image: str, *, repo_root: Path = REPO_ROOT, wheels: Iterable[Path] = ()) -> str:
    """``pspnet-repro/<kind>:<12 hex>`` from the context's content, the base and the wheels."""
    digest = hashlib.sha256()
    digest.update(f"base={base_image}\n".encode())
    for rel, src in context_files(kind, repo_root):
        digest.update(f"{rel}\0{hashlib.sha256(src.read_bytes()).hexdigest()}\n".encode())
    # Wheels by name and size: hashing a 180 MB wheel on every `harness run` would be slow, and a
    # wheel's file name already carries its version and build.
    for wheel in sorted(Path(w) for w in wheels):
        digest.update(f"wheel={wheel.name}\0{wheel.stat().st_size}\n".encode())
    return f"{REPOSITORY}/{kind}:{digest.hexdigest()[:12]}"


def source_digest(kind: str, repo_root: Path = REPO_ROOT) -> str:
    """A hash of the project files that go into ``kind``'s image (not the base or wheels): an
    image whose source label equals this runs exactly the harness of this checkout."""
    digest = hashlib.sha256()
    for rel, src in context_files(kind, repo_root):
        digest.update(f"{rel}\0{hashlib.sha256(src.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def build_info(kind: str, repo_root: Path = REPO_ROOT) -> dict[str, object]:
    """What an image records about the harness inside it (baked in as ``harness._build_info``)."""
    from harness.store.provenance import harness_identity

    identity = harness_identity()
    return {**identity, "source": source_digest(kind, repo_root), "kind": kind}


def find_links_from_pip_config(text: str) -> list[str]:
    """The find-links folders in ``pip config list`` output (``key='value'`` lines)."""
    links: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("find-links"):
            links += [v for v in value.strip().strip("'\"").split() if v not in links]
    return links


def find_torch_wheel(dirs: Iterable[str], version: str = TORCH_VERSION, python_tag: str = "cp311") -> Path | None:
    """A local CPU torch wheel for the image's Python (Debian bookworm: 3.11)."""
    for folder in dirs:
        folder = folder.removeprefix("file://")
        matches = sorted(Path(folder).glob(f"torch-{version}+cpu-{python_tag}-{python_tag}-*linux*_x86_64.whl"))
        if matches:
            return matches[0]
    return None


def host_torch_wheel() -> Path | None:
    """$PSPNET_TORCH_WHEEL, else the torch wheel pip would find locally (PIP_FIND_LINKS / config)."""
    explicit = os.environ.get("PSPNET_TORCH_WHEEL")
    if explicit:
        return Path(explicit)
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
        dirs += find_links_from_pip_config(out.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    return find_torch_wheel(dirs)


def cert_files(cert_dirs: Iterable[Path]) -> list[Path]:
    """PEM certificates (*.crt, *.pem) under the given folders; missing folders are skipped."""
    found: list[Path] = []
    for folder in cert_dirs:
        folder = Path(folder)
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".crt", ".pem"))
    return found


def assemble_context(
    kind: str, dest: Path, *, repo_root: Path = REPO_ROOT, certs: Iterable[Path] = (), wheels: Iterable[Path] = ()
) -> Path:
    """Lay out the build context in ``dest`` (mirrors the repo; see docker/<kind>/Dockerfile)."""
    for rel, src in context_files(kind, repo_root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    shutil.copy2(dockerfile_path(kind, repo_root), dest / "Dockerfile")
    # The worker in the image records this as the harness it really ran (no git inside images).
    info = build_info(kind, repo_root)
    (dest / BUILD_INFO_MODULE).write_text(
        '"""Written by `harness image build`: the harness this image was built from."""\n'
        f"BUILD_INFO = {json.dumps(info)!r}\n"
    )
    (dest / "certs").mkdir(exist_ok=True)
    (dest / "wheels").mkdir(exist_ok=True)
    for i, cert in enumerate(certs):
        # update-ca-certificates only reads *.crt; the index keeps same-named files apart.
        shutil.copy2(cert, dest / "certs" / f"{i:02d}-{Path(cert).stem}.crt")
    for wheel in wheels:
        # Hard link when possible: the wheel is big and the temp dir is usually on the same disk.
        try:
            os.link(wheel, dest / "wheels" / Path(wheel).name)
        except OSError:
            shutil.copy2(wheel, dest / "wheels" / Path(wheel).name)
    return dest


# ---------------------------------------------------------------------------------------------
# Docker


def image_exists(client, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@dataclass(frozen=True)
class ResolvedImage:
    """The image a run will use: the tag the recipe asked for, the tag to run, its ID and the
    harness version baked into it."""

    asked: str
    run_tag: str
    image_id: str
    harness_version: str | None

    def record(self) -> dict[str, object]:
        return {"tag": self.run_tag, "asked": self.asked, "image_id": self.image_id,
                "harness_version": self.harness_version}


def resolve_image(client, tag: str, repo_root: Path = REPO_ROOT) -> ResolvedImage:
    """Pin a project image named by a moving tag (``pspnet-repro/<kind>:latest``) to the build of
    this checkout's harness, or refuse (exit 3) naming the command that builds it. Other images
    (a site's own, a content tag) are used as named, with their ID recorded."""
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise ImageError(missing_image_message(tag)) from None
    labels = image.labels or {}
    version = labels.get(VERSION_LABEL)
    match = re.fullmatch(rf"{REPOSITORY}/({'|'.join(KINDS)}):latest", tag)
    if match and (repo_root / "docker" / match.group(1)).is_dir():
        kind = match.group(1)
        wanted = source_digest(kind, repo_root)
        if labels.get(SOURCE_LABEL) != wanted:
            built = labels.get(SOURCE_LABEL) or "unlabelled"
            raise ImageError(
                f"Docker image {tag} was built from other harness sources ({built}, this checkout is {wanted}): "
                f"rebuild it with `{build_command(kind)}`"
            )
        content = sorted(t for t in image.tags if re.fullmatch(rf"{REPOSITORY}/{kind}:[0-9a-f]{{12}}", t))
        return ResolvedImage(asked=tag, run_tag=content[0] if content else image.id, image_id=image.id, harness_version=version)
    return ResolvedImage(asked=tag, run_tag=tag, image_id=image.id, harness_version=version)


def _stream_build(client, context: Path, tag: str, buildargs: dict[str, str], log: Callable[[str], None],
                  labels: dict[str, str] | None = None) -> str:
    # The low-level API uses the classic builder (no BuildKit session needed), never pulls.
    image_id = ""
    for chunk in client.api.build(
        path=str(context), tag=tag, buildargs=buildargs, rm=True, forcerm=True, pull=False, decode=True,
        labels=labels or {},
    ):
        if "error" in chunk:
            raise ImageError(f"building {tag} failed: {chunk['error'].strip()}")
        for line in chunk.get("stream", "").splitlines():
            if line.strip():
                log(line)
        image_id = chunk.get("aux", {}).get("ID", image_id)
    return image_id


def build_image(
    kind: str,
    base_image: str | None,
    docker_client,
    log: Callable[[str], None] = print,
    *,
    repo_root: Path = REPO_ROOT,
    cert_dirs: Iterable[Path] = (),
    torch_wheel: Path | None = None,
    force: bool = False,
) -> str:
    """Build ``kind`` on ``base_image`` (None: the Dockerfile's default) unless its content tag
    already exists; also tag it ``<repo>/<kind>:latest``. Returns the content tag."""
    base = base_image or default_base(kind, repo_root)
    wheel = torch_wheel if torch_wheel is not None else (host_torch_wheel() if kind == "cpu" else None)
    wheels = [wheel] if wheel else []
    tag = content_tag(kind, base, repo_root=repo_root, wheels=wheels)
    if not force and image_exists(docker_client, tag):
        log(f"{tag} is up to date")
        _tag_latest(docker_client, tag, kind)
        return tag
    certs = cert_files([HOST_CERT_DIR, *cert_dirs])
    log(f"building {tag} on {base} ({len(certs)} CA certificate(s), torch wheel: {wheel or 'none'})")
    with tempfile.TemporaryDirectory(prefix=f"pspnet-{kind}-ctx-") as tmp:
        context = assemble_context(kind, Path(tmp), repo_root=repo_root, certs=certs, wheels=wheels)
        info = build_info(kind, repo_root)
        labels = {SOURCE_LABEL: str(info["source"]), VERSION_LABEL: str(info["harness_version"])}
        build_args = {"BASE_IMAGE": base}
        if kind == "cpu" and wheels:
            build_args["TORCH_INDEX_URL"] = ""  # the wheel is in the context: no other index to ask
        _stream_build(docker_client, context, tag, build_args, log, labels)
    _tag_latest(docker_client, tag, kind)
    return tag


def _tag_latest(client, tag: str, kind: str) -> None:
    # `latest` is what compose.yaml uses by default; runs record the content tag and image ID.
    client.images.get(tag).tag(f"{REPOSITORY}/{kind}", "latest")
