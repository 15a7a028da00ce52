"""A deterministic synthetic dataset in the real PASCAL VOC 2012 + SBD "aug" layout.

Each image is a noisy grey background with one to three large filled shapes; a shape's colour is
its class's VOC palette colour (jittered), so the class is a learnable colour cue and the masks
are a learnable shape cue. That lets a small PSPNet reach a meaningful mIoU in minutes on a CPU,
which is the point: the smoke run must show that training, evaluation and parsing work, not that
the model is good.

The layout is the one mmseg's ``PascalVOCDataset`` reads (``VOCdevkit/VOC2012/JPEGImages``,
palette PNGs in ``SegmentationClass`` with 255 borders, ``SegmentationClassAug`` without borders,
``ImageSets/Segmentation/{train,val,aug,trainaug}.txt``).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

NUM_CLASSES = 21
IGNORE_INDEX = 255
SYNTH_VERSION = 1


def voc_palette() -> list[int]:
    """The standard VOC colour map (256 entries, bit-interleaved)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.extend((r, g, b))
    return palette


@dataclass(frozen=True)
class SynthSpec:
    seed: int = 0
    n_train: int = 64
    n_aug: int = 64
    n_val: int = 24
    width: int = 160
    height: int = 120
    max_shapes: int = 3
    noise: float = 12.0
    border: int = 2

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "width", "height", "max_shapes"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_aug < 0:
            raise ValueError(f"SynthSpec.n_aug must be >= 0, got {self.n_aug}")


def _draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, fill) -> None:
    size = rng.uniform(0.3, 0.6)
    w, h = int(width * size), int(height * size)
    x0 = int(rng.integers(0, max(1, width - w)))
    y0 = int(rng.integers(0, max(1, height - h)))
    box = (x0, y0, x0 + w, y0 + h)
    kind = int(rng.integers(0, 3))
    if kind == 0:
        draw.rectangle(box, fill=fill)
    elif kind == 1:
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([(x0 + w // 2, y0), (x0, y0 + h), (x0 + w, y0 + h)], fill=fill)


def render_sample(spec: SynthSpec, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (rgb image, label without borders, label with 255 borders) for sample ``index``."""
    rng = np.random.default_rng([spec.seed, index])
    palette = np.array(voc_palette(), dtype=np.int16).reshape(256, 3)
    label = Image.new("L", (spec.width, spec.height), 0)
    draw = ImageDraw.Draw(label)
    for _ in range(int(rng.integers(1, spec.max_shapes + 1))):
        _draw_shape(draw, rng, spec.width, spec.height, int(rng.integers(1, NUM_CLASSES)))
    label_arr = np.asarray(label, dtype=np.uint8)

    background = rng.integers(90, 150)
    rgb = np.full((spec.height, spec.width, 3), background, dtype=np.float32)
    for cls in np.unique(label_arr):
        if cls == 0:
            continue
        jitter = rng.normal(0, 8, size=3)
        rgb[label_arr == cls] = np.clip(palette[cls] + jitter, 0, 255)
    rgb += rng.normal(0, spec.noise, size=rgb.shape)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)

    bordered = label_arr.copy()
    edges = _edges(label_arr, spec.border)
    bordered[edges] = IGNORE_INDEX
    return rgb, label_arr, bordered


def _edges(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a class change, as VOC marks object outlines with 255."""
    edge = np.zeros(label.shape, dtype=bool)
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    grown = edge.copy()
    for _ in range(max(0, width - 1)):
        shifted = grown.copy()
        shifted[1:, :] |= grown[:-1, :]
        shifted[:-1, :] |= grown[1:, :]
        shifted[:, 1:] |= grown[:, :-1]
        shifted[:, :-1] |= grown[:, 1:]
        grown = shifted
    return grown


def _save_palette_png(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array, mode="P")
    image.putpalette(voc_palette())
    _atomic_save(image, path)


def _atomic_save(image: Image.Image, path: Path, **kwargs) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **kwargs)
    os.replace(tmp, path)


def _write_lines(path: Path, ids: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{i}\n" for i in ids))
    os.replace(tmp, path)


def sample_ids(spec: SynthSpec) -> dict[str, list[str]]:
    """Ids per split, VOC-style names (``2007_000000``) so they sort like the real ones."""
    ids = [f"2007_{i:06d}" for i in range(spec.n_train + spec.n_aug + spec.n_val)]
    train = ids[: spec.n_train]
    aug = ids[spec.n_train : spec.n_train + spec.n_aug]
    val = ids[spec.n_train + spec.n_aug :]
    return {"train": train, "aug": aug, "val": val, "trainaug": train + aug}


def write_synthetic_voc(root: Path, spec: SynthSpec = SynthSpec()) -> Path:
    """Write the dataset under ``root/VOCdevkit`` and return that folder.

    Idempotent: a finished dataset with the same spec (``synth.json``) is left as it is; anything
    else there is rewritten file by file (each write is atomic).
    """
    devkit = Path(root) / "VOCdevkit"
    voc = devkit / "VOC2012"
    stamp = devkit / "synth.json"
    wanted = {"version": SYNTH_VERSION, **asdict(spec)}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return devkit
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)

    splits = sample_ids(spec)
    all_ids = splits["train"] + splits["aug"] + splits["val"]
    for index, sample_id in enumerate(all_ids):
        rgb, label, bordered = render_sample(spec, index)
        _atomic_save(Image.fromarray(rgb), voc / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        _save_palette_png(label, voc / "SegmentationClassAug" / f"{sample_id}.png")
        if sample_id not in splits["aug"]:
            _save_palette_png(bordered, voc / "SegmentationClass" / f"{sample_id}.png")
    for name, ids in splits.items():
        _write_lines(voc / "ImageSets" / "Segmentation" / f"{name}.txt", ids)
    tmp = stamp.with_name(".synth.json.tmp")
    tmp.write_text(json.dumps(wanted, indent=2))
    os.replace(tmp, stamp)
    return devkit
