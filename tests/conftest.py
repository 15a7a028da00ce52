from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.executors import images
from harness.executors import docker as dx

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache_env(tmp_path_factory, monkeypatch):
    """A synthetic-data cache shared by the tests of one session."""
    cache = tmp_path_factory.getbasetemp() / "pspnet-cache"
    monkeypatch.setenv("PSPNET_CACHE", str(cache))
    return {**os.environ, "PSPNET_CACHE": str(cache)}


# --- a real Docker engine (see tests/test_docker_engine.py for when these skip or fail) ----------


@pytest.fixture(scope="session")
def client():
    try:
        return dx.connect(timeout=900)
    except dx.EngineUnavailable as exc:
        if os.environ.get("PSPNET_REQUIRE_DOCKER") == "1":
            pytest.fail(f"PSPNET_REQUIRE_DOCKER=1 but {exc}")
        # Outside CI (a laptop without an engine) the container tests skip with the reason;
        # .ci/run sets PSPNET_REQUIRE_DOCKER=1, so there an absent engine fails them instead.
        pytest.skip(str(exc))


def _wait_for_prebuild(timeout_s: float = 1800) -> None:
    """scripts/test.sh may build the CPU image in the background (PSPNET_PREBUILD_PID); wait for
    it rather than build the same image twice at once. Whatever it did, the fixture then checks."""
    import time

    pid = os.environ.get("PSPNET_PREBUILD_PID")
    deadline = time.monotonic() + timeout_s
    while pid and pid.isdigit() and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return  # finished, not yet reaped by its parent shell
        except OSError:
            return
        time.sleep(2)


@pytest.fixture(scope="session")
def cpu_image(client) -> str:
    """The CPU image's content tag, built on the local base if it is not there yet."""
    _wait_for_prebuild()
    if not images.image_exists(client, images.LOCAL_BASE):
        env = {**os.environ, "DOCKER_HOST": dx.engine_url()}  # the engine `client` talks to
        subprocess.run(["bash", str(REPO / ".ci" / "base-image.sh")], check=True, env=env)
    return images.build_image("cpu", images.LOCAL_BASE, client, log=lambda line: None)




# --- a real Slurm cluster (.ci/slurm-up.sh: two slurmd nodes on this host) ---------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> list[str]:
    """The idle nodes of the cluster the tests submit to; at least two are needed."""
    import shutil

    problem = None
    if shutil.which("sinfo") is None:
        problem = "no Slurm client (sinfo) on PATH"
    else:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True)
        nodes = [line.split()[0] for line in done.stdout.splitlines() if line.split()[1:] == ["idle"]]
        if done.returncode != 0 or len(nodes) < 2:
            problem = f"no two-node Slurm cluster answers (sinfo: {done.stdout.strip() or done.stderr.strip()})"
    if problem:
        if os.environ.get("PSPNET_REQUIRE_SLURM") == "1":
            pytest.fail(f"PSPNET_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)
    return nodes


# --- running in parallel (scripts/test.sh: pytest -n 2 --dist loadgroup) --------------------------

# Tests that share one engine or one cluster run one after another on a single xdist worker: they
# list and clean up the engine's containers and networks, and a Slurm job of two nodes holds the
# whole cluster. Everything else (real trainings included) spreads over the workers.
_SHARED = {"docker": ("client", "cpu_image"), "slurm": ("slurm_cluster",)}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups off the items
def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for group, needs in _SHARED.items():
            if item.get_closest_marker(group) or fixtures.intersection(needs):
                item.add_marker(pytest.mark.xdist_group(group))
                break
