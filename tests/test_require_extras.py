"""Skips for a missing optional extra cannot hide in CI: PSPNET_REQUIRE_EXTRAS=1 (.ci/run) turns
them into failures; and a plan made without the training stack says what it did not check."""
from __future__ import annotations

import os
import subprocess
import sys

from support import RECIPES, REPO

PROBE = '''
from support import require_extra
require_extra("pspnet_no_such_extra", reason="the 'nothing' extra is not installed")

def test_uses_the_extra():
    pass
'''


def _pytest_on_probe(tmp_path, require: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "PSPNET_REQUIRE_EXTRAS": require,
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_extra_skips_by_default(tmp_path):
    proc = _pytest_on_probe(tmp_path, "0")
    assert proc.returncode == 5 or "skipped" in proc.stdout, proc.stdout  # 5: everything skipped at collection


def test_a_missing_extra_fails_when_extras_are_required(tmp_path):
    proc = _pytest_on_probe(tmp_path, "1")
    assert proc.returncode == 2 or proc.returncode == 1, proc.stdout
    assert "PSPNET_REQUIRE_EXTRAS=1 but the 'nothing' extra is not installed" in proc.stdout


def test_plan_without_the_training_stack_says_the_overrides_were_not_checked():
    recipe = RECIPES / "smoke_cpu.yaml"
    # mmengine made unimportable in this process only: a host that plans for a cluster.
    code = ("import sys; sys.modules['mmengine'] = None; sys.modules['mmengine.config'] = None; "
            "from harness.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "plan", str(recipe), "--set",
                           "model.overrides.model.decode_head.dropout_ratoi=0.2"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "model.overrides were not checked" in proc.stderr and "'train' extra" in proc.stderr
