"""Time ``parse_logs`` against the seed scripts' grep+awk extraction on the same logs.

Generates 8 rank logs in the seed's format (mmseg 0.10 + Ascend ``fps:``; 20k iterations,
a train line every 50, an evaluation with per-class tables every 1000) in a temp dir, then
takes the best of N runs of each side and prints harness/seed (goal: <= 1.0).

The seed side is one bash process running the scripts' three pipelines (FPS, mIoU, loss) on
each log; the harness side is ``parse_logs`` on each log, in process (no interpreter start-up,
which the seed side pays for bash but not for Python), and also as one ``python -c``
subprocess, for the fully like-for-like number.

    python bench/bench_parse.py [--repeats 7] [--ranks 8] [--iters 20000]
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.results.logs import parse_logs  # noqa: E402

CLASSES = ("background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable "
           "dog horse motorbike person pottedplant sheep sofa train tvmonitor").split()

SEED_PIPELINE = r"""
for LOG in "$@"; do
  FPS=$(grep -a 'fps:' "$LOG" | awk -F 'fps: ' '{print $2}' | awk -F ',' '{print $1}' | sort -n | tail -1)
  MIOU=$(grep -a 'mIoU:' "$LOG" | awk -F 'mIoU: ' '{print $2}' | awk -F ',' '{print $1}' | sort -n | tail -1)
  LOSS=$(grep -a 'loss:' "$LOG" | awk -F 'loss: ' '{print $NF}' | tail -1)
  echo "$LOG $FPS $MIOU $LOSS"
done
"""


def write_log(path: Path, iters: int, rank: int) -> None:
    rnd = random.Random(rank)
    out = ["2021-03-01 10:00:00,000 - mmseg - INFO - Environment info:", "-" * 60,
           "sys.platform: linux", "MMSegmentation: 0.10.0+", "-" * 60,
           "2021-03-01 10:00:00,001 - mmseg - INFO - Distributed training: True",
           "2021-03-01 10:00:00,002 - mmseg - INFO - Config:"]
    out += [f"    option_{i} = dict(type='X', value={i})," for i in range(300)]  # config dump
    out += ["data = dict(", "    samples_per_gpu=16,", "    workers_per_gpu=16)",
            "gpu_ids = range(0, 1)",
            f"2021-03-01 10:00:01,000 - mmseg - INFO - workflow: [('train', 1)], max: {iters} iters"]
    for it in range(50, iters + 1, 50):
        t = 1.086 + rnd.random() * 0.02
        loss = 2.0 * (1 - it / iters) + 0.3
        out.append(f"2021-03-01 11:00:00,000 - mmseg - INFO - Iter [{it}/{iters}]\t"
                   f"lr: {0.01 * (1 - it / iters) ** 0.9 + 1e-4:.3e}, eta: 1:23:45, "
                   f"time: {t:.3f}, data_time: 0.012, fps: {16 / t:.3f}, "
                   f"decode.loss_seg: {loss * 0.7:.4f}, decode.acc_seg: 75.1234, "
                   f"aux.loss_seg: {loss * 0.3:.4f}, aux.acc_seg: 73.0001, loss: {loss:.4f}")
        if it % 1000 == 0:
            miou = 0.5 + 0.27 * it / iters
            out.append("2021-03-01 11:00:00,000 - mmseg - INFO - per class results:")
            out += ["+-------------+-------+-------+", "| Class       | IoU   | Acc   |",
                    "+-------------+-------+-------+"]
            out += [f"| {c:<11} | {rnd.uniform(50, 95):5.2f} | {rnd.uniform(60, 99):5.2f} |"
                    for c in CLASSES]
            out += ["+-------------+-------+-------+",
                    "2021-03-01 11:00:00,000 - mmseg - INFO - Summary:",
                    "| Scope  | mIoU  | mAcc  | aAcc  |",
                    f"| global | {miou * 100:.2f} | 86.52 | 94.71 |",
                    f"2021-03-01 11:00:00,000 - mmseg - INFO - Iter(val) [1449]\t"
                    f"mIoU: {miou:.4f}, mAcc: 0.8652, aAcc: 0.9471"]
    path.write_text("\n".join(out) + "\n")


def best_of(n: int, fn) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        logs = [Path(tmp) / f"train_{r}.log" for r in range(args.ranks)]
        for r, log in enumerate(logs):
            write_log(log, args.iters, r)
        size = sum(p.stat().st_size for p in logs)

        def seed() -> None:
            subprocess.run(["bash", "-c", SEED_PIPELINE, "bench", *map(str, logs)],
                           check=True, stdout=subprocess.DEVNULL)

        def harness() -> None:
            for log in logs:
                parse_logs([log], devices=8)

        code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
                "from harness.results.logs import parse_logs; "
                "[parse_logs([Path(p)], devices=8) for p in sys.argv[2:]]")

        def harness_proc() -> None:
            subprocess.run([sys.executable, "-c", code, str(ROOT), *map(str, logs)], check=True)

        # Same answers first: a fast wrong parser is no use.
        out = subprocess.run(["bash", "-c", SEED_PIPELINE, "bench", *map(str, logs)],
                             check=True, capture_output=True, text=True).stdout.split("\n")
        for log, line in zip(logs, out):
            _, fps, miou, loss = line.split()
            r = parse_logs([log], devices=8)
            assert abs(r.fps_seed_definition - 8 * float(fps)) < 1e-9, (log, fps)
            assert abs(r.best["mIoU"] - 100 * float(miou)) < 1e-9, (log, miou)
            assert r.final_loss == float(loss), (log, loss)

        t_seed = best_of(args.repeats, seed)
        t_harness = best_of(args.repeats, harness)
        t_proc = best_of(args.repeats, harness_proc)
    print(f"logs: {args.ranks} x {args.iters} iterations, {size / 1e6:.1f} MB in all")
    print(f"seed grep+awk (bash):          {t_seed * 1e3:8.1f} ms  (best of {args.repeats})")
    print(f"harness parse_logs (in process): {t_harness * 1e3:6.1f} ms")
    print(f"harness parse_logs (python -c):  {t_proc * 1e3:6.1f} ms")
    print(f"ratio harness/seed: {t_harness / t_seed:.2f} in process, "
          f"{t_proc / t_seed:.2f} with interpreter start-up (goal <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
