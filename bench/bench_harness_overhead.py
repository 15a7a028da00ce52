"""What the harness costs on top of training: ``harness run smoke_cpu`` wall time against the
same config trained directly through mmengine's Runner, measured in the same run.

The direct run trains the exact config the harness resolved (``resolved_config.py`` of the
harness run), in one process, with nothing else: no run store, no log streaming, no parsing, no
report. Runs alternate (harness, direct, harness, direct, ...) so drift on a shared machine hits
both sides alike; the ratio of the medians is printed (goal <= 1.03).

    python bench/bench_harness_overhead.py [--iterations 400] [--repeats 2]

The default is the recipe as shipped (400 iterations). The harness's fixed costs (CLI start,
dataset check and fingerprint, parsing, report and plots: about 2 s here) weigh more in shorter
runs: measured here at 100 iterations 1.039 (3 repeats), at 400 iterations 1.024 (2 repeats:
1.034 and 1.016).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DIRECT = """
import sys
from harness.worker import mmcv_shim
mmcv_shim.install()
from mmseg.utils import register_all_modules
register_all_modules()
from mmengine.config import Config
from mmengine.runner import Runner
cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
Runner.from_cfg(cfg).train()
"""


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sets = ["--set", f"train.iterations={args.iterations}", "--set", f"train.val_interval={args.iterations}",
            "--set", f"train.checkpoint_interval={args.iterations}"]
    harness_times, direct_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for repeat in range(args.repeats):
            results = tmp / f"results-{repeat}"
            harness_argv = [sys.executable, "-m", "harness", "run", "recipes/smoke_cpu.yaml", "--quiet",
                            "--results", str(results), *sets]
            harness_times.append(timed(harness_argv, REPO))
            resolved = next(results.glob("runs/*/resolved_config.py"))
            direct_argv = [sys.executable, "-c", DIRECT, str(resolved), str(tmp / f"direct-{repeat}")]
            direct_times.append(timed(direct_argv, REPO))
            print(f"repeat {repeat}: harness {harness_times[-1]:.1f} s, direct mmengine {direct_times[-1]:.1f} s", flush=True)
    ratio = statistics.median(harness_times) / statistics.median(direct_times)
    print(f"median: harness {statistics.median(harness_times):.1f} s, direct {statistics.median(direct_times):.1f} s")
    print(f"ratio harness/direct = {ratio:.3f} (goal <= 1.03)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
