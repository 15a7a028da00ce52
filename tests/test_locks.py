"""The image locks (docker/<kind>/requirements-<platform>.lock, `harness image lock KIND`):
complete, hash-pinned, consistent with their inputs, and resolvable for every platform they serve.

The resolution test asks PyPI for metadata only (uv; nothing is installed): a lock whose pins
conflict, or that names a version without a wheel for its platform and Python 3.11, fails here.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from harness.executors import images, image_locks as locks

REPO = Path(__file__).resolve().parent.parent
LOCKS = [(kind, platform) for kind in images.KINDS for platform in locks.platforms(kind)]


@pytest.mark.parametrize("kind, platform", LOCKS, ids=[f"{k}-{p}" for k, p in LOCKS])
def test_every_locked_package_has_an_exact_version_and_hashes(kind, platform):
    text = locks.lock_path(kind, platform, REPO).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert len(entries) > 30
    for entry in entries:
        head = entry.splitlines()[0]
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==\S+ \\", head), head
        assert "--hash=sha256:" in entry, head


@pytest.mark.parametrize("kind, platform", LOCKS, ids=[f"{k}-{p}" for k, p in LOCKS])
def test_lock_satisfies_the_images_top_level_pins(kind, platform):
    """A stale lock (requirements.in edited, not re-locked) fails here."""
    versions = locks.locked_versions(locks.lock_path(kind, platform, REPO))
    unlocked = locks.UNLOCKED.get((kind, platform), ())
    for line in locks.input_path(kind, REPO).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        if name in unlocked:
            assert name not in versions
            continue
        assert name in versions, f"{kind}/{platform}: {name} missing from the lock"
        assert req.specifier.contains(Version(versions[name]), prereleases=True), (name, versions[name])


@pytest.mark.parametrize("platform", locks.platforms("npu"))
def test_npu_locks_hold_numpy_below_2_and_a_matching_opencv(platform):
    versions = locks.locked_versions(locks.lock_path("npu", platform, REPO))
    assert Version(versions["numpy"]) < Version("2"), versions["numpy"]  # CANN 8.2: error 500001
    assert "opencv-python-headless" in versions and versions["torch-npu"] == "2.6.0"


def test_lock_digest_tracks_every_platform_lock(tmp_path):
    for platform in locks.platforms("npu"):
        path = locks.lock_path("npu", platform, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"x=={platform}\n")
    digest = locks.lock_digest("npu", tmp_path)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest) and images.lock_digest("npu", tmp_path) == digest
    locks.lock_path("npu", "linux-x86_64", tmp_path).write_text("x==other\n")
    assert locks.lock_digest("npu", tmp_path) != digest
    locks.lock_path("npu", "linux-x86_64", tmp_path).unlink()
    assert locks.lock_digest("npu", tmp_path) is None
    assert images.lock_digest("cpu") == locks.lock_digest("cpu", REPO)


def test_compile_command_names_platform_python_and_hashes():
    cmd = locks.compile_command("npu", "linux-x86_64", Path("out.lock"))
    joined = " ".join(cmd)
    assert "--python-platform x86_64-manylinux_2_28" in joined and "--python-version 3.11" in joined
    assert "--generate-hashes" in cmd and "--no-emit-package torch" in joined
    assert "--override docker/npu/overrides-linux-x86_64.txt" in joined
    assert "--no-emit-package" not in " ".join(locks.compile_command("npu", "linux-aarch64", Path("o")))


def _torch_wheel_links() -> list[str]:
    wheel = images.host_torch_wheel()
    return ["--find-links", str(Path(wheel).parent)] if wheel else []


@pytest.mark.parametrize("kind, platform", LOCKS, ids=[f"{k}-{p}" for k, p in LOCKS])
def test_lock_resolves_for_its_platform_without_installing(kind, platform, tmp_path):
    """Resolve the lock itself (every pin, binary wheels only) for the platform and Python 3.11."""
    uv = locks.uv_executable()
    cmd = [uv, "pip", "compile", str(locks.lock_path(kind, platform, REPO)),
           "--python-platform", locks.UV_PLATFORMS[platform], "--python-version", locks.PYTHON_VERSION,
           "--only-binary", ":all:", "--index-url", locks.INDEX_URL, "--override", "docker/overrides.txt",
           "--output-file", str(tmp_path / "resolved.txt"), "--quiet"]
    extra = REPO / "docker" / kind / f"overrides-{platform}.txt"
    if extra.is_file():
        cmd += ["--override", str(extra)]
    if kind == "cpu":
        cmd += _torch_wheel_links()  # torch +cpu: the local wheel whose hash the lock holds
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resolved = locks.locked_versions(tmp_path / "resolved.txt")
    locked = locks.locked_versions(locks.lock_path(kind, platform, REPO))
    for name in locks.UNLOCKED.get((kind, platform), ()):
        resolved.pop(name, None)
    assert resolved == locked, set(resolved.items()) ^ set(locked.items())


def test_conflicting_pins_fail_with_one_line_and_keep_the_old_lock(tmp_path):
    (tmp_path / "docker" / "gpu").mkdir(parents=True)
    (tmp_path / "docker" / "overrides.txt").write_text((REPO / "docker" / "overrides.txt").read_text())
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\ndependencies = ["numpy>=2"]\n')
    (tmp_path / "docker" / "gpu" / "requirements.in").write_text("numpy<2\n")
    old = locks.lock_path("gpu", "linux-x86_64", tmp_path)
    old.write_text("previous\n")
    with pytest.raises(locks.UnresolvableLock) as caught:
        locks.lock("gpu", repo_root=tmp_path, log=lambda line: None)
    assert caught.value.exit_code == 2 and "requirements.in" in str(caught.value) and "\n" not in str(caught.value)
    assert old.read_text() == "previous\n" and not list(old.parent.glob("*.tmp"))
