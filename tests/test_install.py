"""Installed, not only editable: the wheel carries the shipped recipes and configs, so `plan`,
`report` (with its reference rows) and `parse` work from a venv outside the checkout; and a report
written inside the CPU image (non-editable install, recipes inside the package) has them too."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, SHARED_LOGS

EXAMPLE_RUN = REPO / "tests" / "fixtures" / "runs" / "20261125T210711Z-smoke_cpu-206fec"
# The seed's two published rows, which come from the shipped full_8p / gpu_full_8p recipes only.
REFERENCE_ROWS = (
    "|NPU-8p (reference)| 117.808 | 94.71 | 77.04 | 86.52 |",
    "|GPU-8p (reference)| 82.296 | 94.92 | 77.13 | 85.70 |",
)
FIXTURE_LOG = SHARED_LOGS / "04_mmseg1x_text_pspnet_r50-d8_voc2012_20230213_115425.log"


def results_with_example_run(root: Path) -> Path:
    """A results folder holding a copy of the committed (old-layout) example run."""
    results = root / "results"
    shutil.copytree(EXAMPLE_RUN, results / "runs" / EXAMPLE_RUN.name, ignore=shutil.ignore_patterns("*.pth", "plots"))
    return results


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh venv outside the checkout with the project's wheel installed (heavy deps from the
    system's site-packages), and an environment that cannot reach the checkout."""
    tmp = tmp_path_factory.mktemp("install")
    # Build from a copy of the sources: a build in the checkout leaves build/ and *.egg-info there.
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(REPO / "harness", src / "harness", ignore=shutil.ignore_patterns("__pycache__", "_build_info.py"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp / "dist").glob("pspnet_repro-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PSPNET_DATA")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True, text=True, env=env)
    shutil.rmtree(src)  # nothing of the sources is left to import from
    return venv, env


def harness_in(venv: Path, env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "harness"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_the_wheel_works_outside_the_checkout(installed, tmp_path):
    venv, env = installed
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import harness, harness.planning.shipped as s; "
                            "print(harness.__file__); print(s.RECIPES_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(venv) in line and str(REPO) not in line for line in where), where
    recipes_dir = Path(where[1])
    assert (recipes_dir / "full_8p.yaml").is_file() and any((recipes_dir / "configs").glob("*.py"))

    by_name = harness_in(venv, env, tmp_path, "plan", "smoke_cpu")
    assert by_name.returncode == 0, by_name.stderr
    assert "smoke_cpu" in by_name.stdout
    by_path = harness_in(venv, env, tmp_path, "plan", str(recipes_dir / "full_8p.yaml"))
    assert by_path.returncode == 0, by_path.stderr
    assert "full_8p" in by_path.stdout
    planned = harness_in(venv, env, tmp_path, "plan", "full_8p", "--json")
    assert json.loads(planned.stdout)["dataset"] == str(tmp_path / "data" / "VOCdevkit")  # never inside the package
    dry_run = harness_in(venv, env, tmp_path, "data", "fetch", "--prepare", "--dry-run")  # the shipped registry
    assert dry_run.returncode == 0 and "VOCtrainval_11-May-2012.tar (2.0 GB" in dry_run.stdout, dry_run.stderr

    results = results_with_example_run(tmp_path)
    report = harness_in(venv, env, tmp_path, "report", "--results", str(results))
    assert report.returncode == 0, report.stderr
    text = (results / "README.md").read_text()
    for row in REFERENCE_ROWS:
        assert row in text
    assert EXAMPLE_RUN.name in text

    parsed = harness_in(venv, env, tmp_path, "parse", str(FIXTURE_LOG))
    assert parsed.returncode == 0, parsed.stderr
    assert "mIoU" in parsed.stdout

    # the event-stream ruleset is package data: the installed checker finds it
    events_run = REPO / "tests" / "fixtures" / "logs" / "own_events_smoke_cpu_1p"
    checked = harness_in(venv, env, tmp_path, "events", "check", str(events_run))
    assert checked.returncode == 0 and checked.stdout.startswith("PASS"), checked.stdout + checked.stderr


@pytest.mark.docker
def test_a_report_written_inside_the_cpu_image_has_the_reference_rows(client, cpu_image, tmp_path):
    from harness.executors import docker as dx
    from harness.planning.spec import BindMount, ContainerSpec

    results = results_with_example_run(tmp_path)
    # From /workspace (where /workspace/recipes links into the installed package) as the runs do.
    spec = ContainerSpec(image=cpu_image, command=("harness", "report", "--results", "/workspace/results"),
                         environment={"PYTHONUNBUFFERED": "1"}, user=f"{os.getuid()}:{os.getgid()}",
                         binds=(BindMount(str(results), "/workspace/results", read_only=False),))
    lines: list[str] = []
    outcome = dx.run_container(spec, log_path=tmp_path / "container.log", on_line=lines.append, client=client)
    assert outcome.exit_code == 0, lines
    assert any("report of 1 run(s)" in line for line in lines), lines
    text = (results / "README.md").read_text()
    for row in REFERENCE_ROWS:
        assert row in text
