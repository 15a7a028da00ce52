"""Time and disk of ``harness data prepare --archives`` (straight from the two archives) against
extract-then-convert (``tar x`` both, move SBD's dataset to VOCaug/dataset, ``harness data prepare``).

Builds synthetic archives with the real ones' layout, member counts and byte sizes (scaled by
``--scale``; ``--quick`` is 1/50): VOCtrainval_11-May-2012.tar (1999639040 bytes: 17125 JPEGs and
annotations, 2913 class and object PNGs, split lists) and benchmark.tgz (1419539633 bytes: 11355
images, cls and inst .mat files in SBD's format at 500x375, train/val lists). JPEG and image bytes
are random (incompressible, as JPEGs are); the .mat files are real SBD-format files, a pool of
distinct ones reused under different names. Both sides then run as fresh processes with the same
``--workers``; the outputs must have the same fingerprint. Prints times, the disk each side
occupies at the end (the archives themselves, the same for both, are not counted) and the ratios
archives/extract (goal: time <= 1, disk well below 1).

    python bench/bench_prepare_archives.py --quick [--workers 2] [--keep DIR]
    python bench/bench_prepare_archives.py [--scale 1.0]

On a shared machine run it under the heavy-work lock: ``flock /tmp/pspnet-heavy.lock python ...``.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from archive_server import write_registry  # noqa: E402
from harness.data.manifest import dataset_fingerprint  # noqa: E402
from harness.data.synth import SynthSpec, render_sample, save_sbd_mat  # noqa: E402

# The real archives (registry.yaml) and their member counts.
VOC_BYTES, SBD_BYTES = 1999639040, 1419539633
VOC_IMAGES, VOC_SEGMENTED, VOC_TRAIN = 17125, 2913, 1464
SBD_IDS, SBD_TRAIN = 11355, 8498
MAT_POOL = 48
MTIME = 1_336_000_000


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


class RandomBytes:
    """Incompressible bytes without paying urandom per file: slices of one random block, rotated."""

    def __init__(self, seed: int = 0):
        self.block = np.random.default_rng(seed).bytes(8 << 20)
        self.at = 0

    def take(self, n: int) -> bytes:
        self.at = (self.at + 7919) % (len(self.block) - n)
        return self.block[self.at:self.at + n]


def mat_pool(work: Path) -> tuple[list[bytes], bytes]:
    spec = SynthSpec(seed=5, n_train=MAT_POOL, n_aug=0, n_val=1, width=500, height=375)
    mats = []
    for index in range(MAT_POOL):
        _, label, _ = render_sample(spec, index)
        save_sbd_mat(label, work / "pool.mat")
        mats.append((work / "pool.mat").read_bytes())
    _, label, _ = render_sample(spec, 0)
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(label).save(png, format="PNG")
    return mats, png.getvalue()


def build(work: Path, scale: float) -> dict[str, Path]:
    images, segmented = max(8, int(VOC_IMAGES * scale)), max(4, int(VOC_SEGMENTED * scale))
    train = max(2, int(VOC_TRAIN * scale))
    sbd_ids, sbd_train = max(4, int(SBD_IDS * scale)), max(2, int(SBD_TRAIN * scale))
    ids = [f"2008_{n:06d}" for n in range(images)]
    mats, png = mat_pool(work)
    rng = RandomBytes()
    xml = b"<annotation>" + b" " * 600 + b"</annotation>\n"
    jpeg_size = (int(VOC_BYTES * scale) - images * (len(xml) + 1536) - 2 * segmented * (len(png) + 1024)) // images
    voc = work / "VOCtrainval_11-May-2012.tar"
    with tarfile.open(voc, "w", format=tarfile.GNU_FORMAT) as tar:
        for i in ids:
            add(tar, f"VOCdevkit/VOC2012/Annotations/{i}.xml", xml)
            add(tar, f"VOCdevkit/VOC2012/JPEGImages/{i}.jpg", rng.take(jpeg_size))
        for i in ids[:segmented]:
            add(tar, f"VOCdevkit/VOC2012/SegmentationClass/{i}.png", png)
            add(tar, f"VOCdevkit/VOC2012/SegmentationObject/{i}.png", png)
        lists = {"train": ids[:train], "val": ids[train:segmented]}
        lists["trainval"] = lists["train"] + lists["val"]
        for name, members in lists.items():
            add(tar, f"VOCdevkit/VOC2012/ImageSets/Segmentation/{name}.txt", "".join(f"{m}\n" for m in members).encode())
    mat_bytes = sum(len(mats[n % MAT_POOL]) for n in range(sbd_ids)) * 2
    img_size = max(1024, (int(SBD_BYTES * scale) - mat_bytes) // sbd_ids)
    sbd = work / "benchmark.tgz"
    with tarfile.open(sbd, "w:gz", compresslevel=6, format=tarfile.GNU_FORMAT) as tar:
        for n, i in enumerate(ids[:sbd_ids]):
            add(tar, f"benchmark_RELEASE/dataset/img/{i}.jpg", rng.take(img_size))
            add(tar, f"benchmark_RELEASE/dataset/cls/{i}.mat", mats[n % MAT_POOL])
            add(tar, f"benchmark_RELEASE/dataset/inst/{i}.mat", mats[(n + 1) % MAT_POOL])
        add(tar, "benchmark_RELEASE/dataset/train.txt", "".join(f"{i}\n" for i in ids[:sbd_train]).encode())
        add(tar, "benchmark_RELEASE/dataset/val.txt", "".join(f"{i}\n" for i in ids[sbd_train:sbd_ids]).encode())
    return {"voc2012": voc, "sbd": sbd}


def disk_bytes(folder: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def harness(*args: str, cache: Path) -> None:
    env = {**os.environ, "PSPNET_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "harness", "data", *args], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def extract_then_convert(archives: dict[str, Path], out: Path, workers: int, cache: Path) -> float:
    start = time.perf_counter()
    out.mkdir()
    for path in archives.values():
        subprocess.run(["tar", "-xf", str(path), "-C", str(out)], check=True)
    (out / "VOCdevkit" / "VOCaug").mkdir()
    os.rename(out / "benchmark_RELEASE" / "dataset", out / "VOCdevkit" / "VOCaug" / "dataset")
    harness("prepare", "--voc", str(out / "VOCdevkit"), "--workers", str(workers), cache=cache)
    return time.perf_counter() - start


def from_archives(archives: dict[str, Path], registry: Path, out: Path, workers: int, cache: Path) -> float:
    start = time.perf_counter()
    harness("prepare", "--archives", str(archives["voc2012"]), str(archives["sbd"]), "--registry", str(registry),
            "--voc", str(out / "VOCdevkit"), "--workers", str(workers), cache=cache)
    return time.perf_counter() - start


def gb(n: int) -> str:
    return f"{n / 1e9:.3f} GB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real archives' size and counts")
    parser.add_argument("--quick", action="store_true", help="--scale 0.02 (about 70 MB of archives)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temp work folder (default: $TMPDIR)")
    parser.add_argument("--keep", type=Path, help="build into / reuse this folder instead of a temp dir")
    args = parser.parse_args()
    scale = 0.02 if args.quick else args.scale

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-archives-", dir=args.dir))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    archives = {"voc2012": work / "VOCtrainval_11-May-2012.tar", "sbd": work / "benchmark.tgz"}
    if not all(p.is_file() for p in archives.values()):
        archives = build(work, scale)
    registry = write_registry(work / "registry.yaml", archives, {n: ["http://127.0.0.1:9/"] for n in archives})
    sizes = {n: p.stat().st_size for n, p in archives.items()}
    print(f"archives (scale {scale}): VOC tar {gb(sizes['voc2012'])}, SBD tgz {gb(sizes['sbd'])} "
          f"({time.perf_counter() - start:.1f} s to build)")
    for side in ("extract", "archives", "cache"):
        shutil.rmtree(work / side, ignore_errors=True)
    t_extract = extract_then_convert(archives, work / "extract", args.workers, work / "cache")
    t_archives = from_archives(archives, registry, work / "archives", args.workers, work / "cache")
    d_extract, d_archives = disk_bytes(work / "extract"), disk_bytes(work / "archives")
    same = dataset_fingerprint(work / "extract" / "VOCdevkit") == dataset_fingerprint(work / "archives" / "VOCdevkit")
    print(f"extract-then-convert (tar x, mv, data prepare --workers {args.workers}): {t_extract:.1f} s, "
          f"disk {gb(d_extract)}")
    print(f"data prepare --archives --workers {args.workers} (md5 of both archives included): {t_archives:.1f} s, "
          f"disk {gb(d_archives)}")
    print(f"fingerprints equal: {same}")
    print(f"ratio archives/extract: time {t_archives / t_extract:.2f}, disk {d_archives / d_extract:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
