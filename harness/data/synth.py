"""A deterministic synthetic dataset in the real PASCAL VOC 2012 + SBD "aug" layout.

Each image is a noisy grey background with one to three large filled shapes; a shape's colour is
its class's VOC palette colour (jittered), so the class is a learnable colour cue and the masks
are a learnable shape cue. That lets a small PSPNet reach a meaningful mIoU in minutes on a CPU,
which is the point: the smoke run must show that training, evaluation and parsing work, not that
the model is good.

The layout is the one mmseg's ``PascalVOCDataset`` reads (``VOCdevkit/VOC2012/JPEGImages``,
palette PNGs in ``SegmentationClass`` with 255 borders, ``SegmentationClassAug`` without borders,
``ImageSets/Segmentation/{train,val,aug,trainaug}.txt``).

With ``SynthSpec(sbd=True)`` it also writes the raw SBD release that ``harness data prepare`` (and
mmseg's ``voc_aug.py``) converts: ``VOCaug/dataset/cls/<id>.mat`` and ``VOCaug/dataset/{train,val}.txt``.
The VOC2012 part is byte-identical either way: the smoke run's numbers depend on those files.
"""
from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.core.fileio import atomic_output, write_text_atomic

NUM_CLASSES = 21
IGNORE_INDEX = 255
SYNTH_VERSION = 1
LOCK_NAME = ".synth.lock"  # beside VOCdevkit, so the dataset's own tree (and its digest) stays as it was


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
    # Last, and left out of the identity while off (``spec_identity``), so that existing synthetic
    # sets keep their cache folder and stamp.
    sbd: bool = False

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "width", "height", "max_shapes"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_aug < 0:
            raise ValueError(f"SynthSpec.n_aug must be >= 0, got {self.n_aug}")


def spec_identity(spec: SynthSpec) -> dict:
    """The spec as stored in ``synth.json`` and hashed into the cache folder name.

    ``sbd`` is omitted while off so a default spec is identified exactly as before the field existed.
    """
    identity = asdict(spec)
    if not spec.sbd:
        identity.pop("sbd")
    return identity


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
    with atomic_output(path, "wb") as handle:
        image.save(handle, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **kwargs)


def _write_lines(path: Path, ids: list[str]) -> None:
    write_text_atomic(path, "".join(f"{i}\n" for i in ids))


def sample_ids(spec: SynthSpec) -> dict[str, list[str]]:
    """Ids per split, VOC-style names (``2007_000000``) so they sort like the real ones."""
    ids = [f"2007_{i:06d}" for i in range(spec.n_train + spec.n_aug + spec.n_val)]
    train = ids[: spec.n_train]
    aug = ids[spec.n_train : spec.n_train + spec.n_aug]
    val = ids[spec.n_train + spec.n_aug :]
    return {"train": train, "aug": aug, "val": val, "trainaug": train + aug}


def sbd_splits(spec: SynthSpec) -> dict[str, list[str]]:
    """SBD's own train/val lists, cutting across VOC's splits like the real release.

    Real SBD holds all the "aug" images, most of VOC2012 train and a part of VOC2012 val, so the
    converter's arithmetic (train + SBD - val) has overlaps in every direction to get right. Here:
    every aug id, three in four train ids, every other val id; every fourth of those goes to SBD val.
    """
    splits = sample_ids(spec)
    covered = sorted(
        [i for k, i in enumerate(splits["train"]) if k % 4 != 3]
        + splits["aug"]
        + [i for k, i in enumerate(splits["val"]) if k % 2 == 0]
    )
    return {
        "train": [i for n, i in enumerate(covered) if n % 4 != 0],
        "val": [i for n, i in enumerate(covered) if n % 4 == 0],
    }


def class_boundaries(label: np.ndarray) -> np.ndarray:
    """SBD's ``Boundaries``: a 20x1 cell of sparse logical masks, one per foreground class."""
    from scipy import sparse  # imported here: ~0.4 s that the smoke run's data path does not need

    edge = _edges(label, 1)
    cells = np.empty((NUM_CLASSES - 1, 1), dtype=object)
    for cls in range(1, NUM_CLASSES):
        cells[cls - 1, 0] = sparse.csc_matrix(edge & (label == cls))
    return cells


def save_sbd_mat(label: np.ndarray, path: Path) -> None:
    """Write ``label`` as an SBD ``cls/*.mat``: struct GTcls{Boundaries, Segmentation, CategoriesPresent}.

    Compressed MATLAB v5 with the fields in the real files' order, so readers pay what they pay on SBD.
    """
    from scipy.io import savemat

    present = np.unique(label[label > 0]).astype(np.uint8).reshape(-1, 1)
    gtcls = {"Boundaries": class_boundaries(label), "Segmentation": label.astype(np.uint8),
             "CategoriesPresent": present}
    with atomic_output(path, "wb") as handle:
        savemat(handle, {"GTcls": gtcls}, do_compression=True, oned_as="column")


def _finished(stamp: Path, wanted: dict) -> bool:
    try:
        return json.loads(stamp.read_text()) == wanted
    except (OSError, ValueError):
        return False


@contextmanager
def _writer_lock(root: Path) -> Iterator[None]:
    """One writer per dataset folder at a time, across processes; the kernel drops the lock when
    its holder dies, so a killed writer never blocks the next one."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_synthetic_voc(root: Path, spec: SynthSpec = SynthSpec()) -> Path:
    """Write the dataset under ``root/VOCdevkit`` and return that folder.

    Idempotent and safe to call from several processes at once (the first use of the cache by
    concurrent runs): a finished dataset with the same spec (``synth.json``, written last) is left
    as it is; otherwise one writer at a time (a lock beside ``VOCdevkit``) rewrites it file by file,
    each write atomic under a temp name of its own, and the others then find it finished.
    """
    devkit = Path(root) / "VOCdevkit"
    stamp = devkit / "synth.json"
    wanted = {"version": SYNTH_VERSION, **spec_identity(spec)}
    if _finished(stamp, wanted):
        return devkit
    with _writer_lock(Path(root)):
        if not _finished(stamp, wanted):  # another writer may have finished while this one waited
            _write_all(devkit, spec, wanted)
    return devkit


def _write_all(devkit: Path, spec: SynthSpec, wanted: dict) -> None:
    voc = devkit / "VOC2012"
    stamp = devkit / "synth.json"
    if devkit.is_dir():  # temp files of a writer that was killed; no other writer runs now
        for leftover in devkit.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)

    splits = sample_ids(spec)
    sbd = sbd_splits(spec) if spec.sbd else {}
    sbd_ids = set(sbd.get("train", [])) | set(sbd.get("val", []))
    sbd_root = devkit / "VOCaug" / "dataset"
    if spec.sbd:
        (sbd_root / "cls").mkdir(parents=True, exist_ok=True)
    all_ids = splits["train"] + splits["aug"] + splits["val"]
    for index, sample_id in enumerate(all_ids):
        rgb, label, bordered = render_sample(spec, index)
        _atomic_save(Image.fromarray(rgb), voc / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        _save_palette_png(label, voc / "SegmentationClassAug" / f"{sample_id}.png")
        if sample_id not in splits["aug"]:
            _save_palette_png(bordered, voc / "SegmentationClass" / f"{sample_id}.png")
        if sample_id in sbd_ids:
            save_sbd_mat(label, sbd_root / "cls" / f"{sample_id}.mat")
    for name, ids in splits.items():
        _write_lines(voc / "ImageSets" / "Segmentation" / f"{name}.txt", ids)
    for name, ids in sbd.items():
        _write_lines(sbd_root / f"{name}.txt", ids)
    write_text_atomic(stamp, json.dumps(wanted, indent=2))
