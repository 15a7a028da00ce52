"""One-shot GPU throughput check: PSPNet R50-D8 512x512 on one NVIDIA GPU, stock vs fast.

For a machine with one NVIDIA GPU, PyTorch (CUDA build) installed, no Docker and no network. It
renders a synthetic VOC set at the real images' size (500x375), then trains the GPU recipe's real
model (recipes/gpu_perf_8p.yaml with device.count=1) through ``harness run --executor local`` in two
variants, one after the other in this one invocation:

  stock  as the seed's GPU-8p row: fp32, batch 4 (SyncBN is BN on one card)
  fast   the recipe knobs: AMP bfloat16, channels_last, cudnn.benchmark, batch 16, 8 loader workers

and prints img/s per GPU for each (the harness's own fps from the training log, warm-up window
excluded), peak GPU memory (mmengine's ``memory`` log field) and each against the seed's per-V100
figure (82.296 / 8 = 10.29 img/s). About 4 minutes on an H200 (limit: 8); each variant is capped.

``--rehearse`` runs the same steps on the CPU at toy size (64-pixel crop, a few iterations, the fast
variant without AMP/cuDNN, which the CPU lacks): CI runs it, so the real run's plumbing is tested.

Missing packages on an offline GPU machine: download wheels here (a machine with network), carry
the folder over, install from it. ``wheels/`` is git-ignored.

    # here, for Linux x86_64, Python 3.11 (torch with CUDA is already on the GPU machine):
    PKGS="mmengine==0.10.7 mmsegmentation==1.2.2 mmcv-lite==2.1.0 ftfy regex pydantic PyYAML docker rich \
          filelock opencv-python-headless matplotlib scipy numpy Pillow setuptools<81"
    pip download -d wheels/ --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 $PKGS
    # carry wheels/ and this checkout over; there (the harness runs from the checkout, no install):
    pip install --no-index --find-links wheels/ $PKGS
    python bench/gpu_throughput.py                       # or: --rehearse on any CPU machine

Exit codes: 0 both variants ran, 1 a variant failed (its run folder is printed), 3 no CUDA GPU.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED_PER_V100 = 82.296 / 8
RECIPE = ROOT / "recipes" / "gpu_perf_8p.yaml"
VOC_SIZE = (500, 375)
VARIANT_TIMEOUT_S = 200  # two variants + start-up stay under 8 minutes even if one hangs


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    sets: tuple[str, ...]
    batch: int


def variants(rehearse: bool, iterations: int, fast_batch: int) -> list[Variant]:
    log = max(1, iterations // 20)
    common = (
        "device.count=1", "device.ids=0", f"train.iterations={iterations}", f"train.log_interval={log}",
        f"train.val_interval={iterations}", f"train.checkpoint_interval={10 * iterations}", "train.norm=BN",
        "timeout_minutes=" + str(VARIANT_TIMEOUT_S / 60),
        # No network: the stock ImageNet download would fail; random weights cost the same time.
        'model.overrides={"model.pretrained": null}',
    )
    if rehearse:
        # The CPU backend refuses AMP and cuDNN; the plumbing (knobs, batch, runs, parsing) is the same.
        common += ("device.kind=cpu",)
        fast = ("train.amp=false", "train.channels_last=true", f"train.batch_per_device={fast_batch}",
                "train.workers_per_device=1")
        fast_what = f"fp32, channels_last, batch {fast_batch} (CPU rehearsal: no AMP, no cuDNN)"
        stock_workers = "train.workers_per_device=1"
    else:
        fast = ("train.amp=true", "train.amp_dtype=bfloat16", "train.channels_last=true", "train.cudnn_benchmark=true",
                f"train.batch_per_device={fast_batch}", "train.workers_per_device=8")
        fast_what = f"AMP bf16, channels_last, cudnn.benchmark, batch {fast_batch}"
        stock_workers = "train.workers_per_device=4"
    return [
        Variant("stock", "fp32, batch 4 (as GPU-8p)", common + ("train.amp=false", "train.batch_per_device=4", stock_workers), 4),
        Variant("fast", fast_what, common + fast, fast_batch),
    ]


def render_dataset(root: Path, rehearse: bool) -> Path:
    from harness.data.synth import SynthSpec, write_synthetic_voc

    width, height = (160, 120) if rehearse else VOC_SIZE
    count = 8 if rehearse else 64
    spec = SynthSpec(seed=7, n_train=count, n_aug=count, n_val=1 if rehearse else 4, width=width, height=height)
    return write_synthetic_voc(root, spec)


def toy_config(folder: Path, crop: int) -> Path:
    """The GPU recipe's config with crop and resize scales shrunk (harness check's ``shrink``),
    written as one self-contained file: the same model, pipeline steps and schedule, smaller."""
    from mmengine.config import Config

    from harness.commands.checking import shrink

    cfg = Config.fromfile(str(ROOT / "recipes" / "configs" / "pspnet_r50-d8_voc12aug-512x512_gpu.py"))
    shrink(cfg, crop)
    folder.mkdir(parents=True, exist_ok=True)  # its own folder, with the toy recipe beside it
    path = folder / "pspnet_r50-d8_voc12aug_toy.py"
    path.write_text(f"# {crop}px rehearsal of pspnet_r50-d8_voc12aug-512x512_gpu.py (bench/gpu_throughput.py)\n"
                    + "".join(f"{key} = {value!r}\n" for key, value in cfg.to_dict().items()))
    return path


def toy_recipe(config: Path) -> Path:
    """The GPU recipe beside the toy config: a run reads configs only from its recipe's folder."""
    import yaml

    data = yaml.safe_load(RECIPE.read_text())
    data["model"]["config"] = config.name
    path = config.parent / f"{RECIPE.stem}_toy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_variant(variant: Variant, devkit: Path, results: Path, recipe: Path) -> dict:
    results.mkdir(parents=True, exist_ok=True)
    sets = [arg for item in (*variant.sets, f"dataset.root={devkit}") for arg in ("--set", item)]
    argv = [sys.executable, "-m", "harness", "run", str(recipe), *sets, "--executor", "local",
            "--results", str(results), "--quiet", "--no-report"]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    runs = sorted((results / "runs").glob("*/result.json"))
    if proc.returncode != 0 or not runs:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        raise SystemExit(f"gpu_throughput: variant {variant.name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(runs[-1].read_text())
    log = runs[-1].parent / "train.log"
    memory = [int(m) for m in re.findall(r"\bmemory: (\d+)", log.read_text(errors="replace"))] if log.is_file() else []
    return {"fps": result.get("fps"), "peak_mb": max(memory) if memory else None, "wall_s": wall,
            "run": str(runs[-1].parent), "iterations": result.get("iterations")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rehearse", action="store_true", help="the same steps on the CPU at toy size (for CI)")
    parser.add_argument("--iterations", type=int, default=None, help="per variant (default: 300; rehearsal 3)")
    parser.add_argument("--fast-batch", type=int, default=None, help="fast variant's batch (default 16; rehearsal 4)")
    parser.add_argument("--keep", type=Path, default=None, help="keep data and runs in this folder (default: temp)")
    args = parser.parse_args(argv)
    iterations = args.iterations or (3 if args.rehearse else 300)
    fast_batch = args.fast_batch or (4 if args.rehearse else 16)

    if not args.rehearse:
        import torch

        if not torch.cuda.is_available():
            print("gpu_throughput: no CUDA GPU visible to torch (use --rehearse on a CPU machine)", file=sys.stderr)
            return 3
        device = torch.cuda.get_device_name(0)
    else:
        device = "CPU rehearsal"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        devkit = render_dataset(work / "data", args.rehearse)
        recipe = toy_recipe(toy_config(work / "config", 64)) if args.rehearse else RECIPE
        rows = []
        for variant in variants(args.rehearse, iterations, fast_batch):
            print(f"gpu_throughput: {variant.name}: {variant.what}, {iterations} iterations ...", file=sys.stderr, flush=True)
            rows.append((variant, run_variant(variant, devkit, work / "results" / variant.name, recipe)))
    print(f"\nPSPNet R50-D8 {'64x64 toy' if args.rehearse else '512x512'}, 1 x {device}, {iterations} iterations "
          f"per variant, {time.perf_counter() - started:.0f} s in all")
    print(f"{'variant':<8} {'setting':<52} {'img/s/GPU':>9} {'vs V100':>8} {'peak MB':>8}")
    for variant, row in rows:
        fps = row["fps"]
        ratio = f"{fps / SEED_PER_V100:.2f}x" if fps else "n/a"
        peak = str(row["peak_mb"]) if row["peak_mb"] else "n/a"
        print(f"{variant.name:<8} {variant.what:<52} {fps or float('nan'):9.2f} {ratio:>8} {peak:>8}")
    print(f"seed GPU-8p per V100: {SEED_PER_V100:.2f} img/s (82.296 / 8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
