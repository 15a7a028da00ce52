"""How many data-loader cores does one card need? Time mmseg's train pipeline on VOC-sized JPEGs.

Renders a synthetic VOC set at the real images' size (500x375 JPEGs, palette PNG labels), builds the
training dataset from a recipe's real config (its train pipeline as is: LoadImageFromFile,
LoadAnnotations, RandomResize (2048, 512) x 0.5-2.0, RandomCrop 512 with cat_max_ratio, RandomFlip,
PhotoMetricDistortion, Pad, PackSegInputs) and runs it in this one process with one thread (torch,
OpenCV), as one loader worker does. Reports images per CPU-second (process time, so other load on
the machine does not count against it) and per wall-second, then the loader cores one card needs:
at the seed's NPU-8p rate (117.808 / 8 = 14.73 img/s per card), the seed's GPU-8p rate (82.296 / 8)
and the "fast" GPU rate (``--gpu-rate``, e.g. the figure bench/gpu_throughput.py printed).

Collation, pinning and inter-process transfer come on top (a few percent at batch 4-16).

    python bench/bench_pipeline.py [--images 400] [--recipe recipes/full_8p.yaml] [--gpu-rate 60]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED_NPU_PER_CARD = 117.808 / 8
SEED_GPU_PER_CARD = 82.296 / 8
# Placeholder until bench/gpu_throughput.py has run on a real GPU: pass --gpu-rate with its figure.
ASSUMED_FAST_GPU_RATE = 60.0
VOC_SIZE = (500, 375)
DISTINCT_IMAGES = 32  # rendered once; the pipeline's randomness makes every pass different


def build_dataset(recipe: Path, devkit: Path):
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from harness.worker import mmcv_shim

    mmcv_shim.install()
    from mmengine.config import Config
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    from harness.planning.recipe import load_recipe
    from harness.planning.mmseg_config import dataset_configs

    register_all_modules(init_default_scope=True)
    loaded = load_recipe(recipe)
    cfg = Config.fromfile(str(loaded.config_path))
    leaf = dataset_configs(cfg.train_dataloader)[0]  # VOC2012 train: SegmentationClass labels
    leaf["data_root"] = str(devkit / "VOC2012")
    leaf["ann_file"] = "ImageSets/Segmentation/train.txt"
    return DATASETS.build(leaf), [step["type"] for step in leaf["pipeline"]]


def measure(dataset, images: int) -> tuple[float, float]:
    """(images per CPU-second, images per wall-second) over ``images`` samples after a warm-up."""
    for index in range(min(8, len(dataset))):
        dataset[index]
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(images):
        dataset[index % len(dataset)]
    return images / (time.process_time() - cpu), images / (time.perf_counter() - wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="samples to time (default 400)")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "full_8p.yaml",
                        help="whose config's train pipeline to time (default: the NPU-8p recipe)")
    parser.add_argument("--gpu-rate", type=float, default=ASSUMED_FAST_GPU_RATE,
                        help=f"img/s per GPU of the 'fast' variant (default {ASSUMED_FAST_GPU_RATE}, an assumption "
                             "until bench/gpu_throughput.py has measured it)")
    parser.add_argument("--cache", type=Path, default=None, help="where to render the images (default: a temp dir)")
    args = parser.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one loader worker = one core
    from harness.data.synth import SynthSpec, write_synthetic_voc

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = args.cache or Path(tmp)
        spec = SynthSpec(seed=5, n_train=DISTINCT_IMAGES, n_aug=0, n_val=1, width=VOC_SIZE[0], height=VOC_SIZE[1])
        devkit = write_synthetic_voc(root, spec)
        dataset, steps = build_dataset(args.recipe, devkit)
        per_cpu_s, per_wall_s = measure(dataset, args.images)

    print(f"pipeline ({args.recipe.name}): {' -> '.join(steps)}")
    print(f"images: {VOC_SIZE[0]}x{VOC_SIZE[1]} JPEG + palette PNG, {args.images} samples, 1 thread")
    print(f"per core: {per_cpu_s:.1f} img/s (CPU time; {1000 / per_cpu_s:.1f} ms/img); wall {per_wall_s:.1f} img/s "
          f"on this machine (load {os.getloadavg()[0]:.1f})")
    for label, rate in (
        ("seed NPU-8p, per card (117.808/8)", SEED_NPU_PER_CARD),
        ("seed GPU-8p, per V100 (82.296/8)", SEED_GPU_PER_CARD),
        (f"fast GPU variant (--gpu-rate {args.gpu_rate:g})", args.gpu_rate),
    ):
        cores = rate / per_cpu_s
        print(f"{label:<42} {rate:7.2f} img/s -> {cores:4.2f} loader cores per card "
              f"(>= {math.ceil(cores)} workers; x8 cards: {8 * cores:.1f} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
