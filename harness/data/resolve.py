"""Recipe dataset -> a VOCdevkit folder on this machine (generating the synthetic set on first use)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.data.layout import cache_dir  # noqa: F401  (re-exported)
from harness.data.synth import SynthSpec, spec_identity, write_synthetic_voc
from harness.planning.recipe import LoadedRecipe, BadInput

REQUIRED = ("VOC2012/JPEGImages", "VOC2012/ImageSets/Segmentation")


def synth_spec(loaded: LoadedRecipe) -> SynthSpec:
    synthetic = loaded.recipe.dataset.synthetic
    return SynthSpec(seed=synthetic.seed, n_train=synthetic.n_train, n_aug=synthetic.n_aug, n_val=synthetic.n_val)


def synthetic_root(spec: SynthSpec) -> Path:
    digest = hashlib.sha256(json.dumps(spec_identity(spec), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"synthetic-voc-{digest}"


def check_layout(devkit: Path, where: str) -> None:
    missing = [sub for sub in REQUIRED if not (devkit / sub).is_dir()]
    if missing:
        raise BadInput(
            f"{where}: {devkit} does not look like a VOCdevkit folder (missing {', '.join(missing)}); "
            "expected VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}"
        )


def resolve_dataset(loaded: LoadedRecipe) -> Path:
    dataset = loaded.recipe.dataset
    if dataset.synthetic is not None:
        spec = synth_spec(loaded)
        return write_synthetic_voc(synthetic_root(spec), spec)
    devkit = loaded.dataset_root()
    check_layout(devkit, f"{loaded.path}: dataset.root")
    return devkit


def verify_dataset(devkit: Path, where: str, *, skip_check: bool) -> dict:
    """The dataset's identity and check result, recorded with every run. A dataset that fails the
    check is refused unless ``skip_check`` (which is recorded too)."""
    from harness.data.check import check_dataset
    from harness.data.layout import DataError
    from harness.data.manifest import dataset_fingerprint

    # Label values are decoded too (about 10 s on the real set): a wrong class id trains silently.
    report = check_dataset(devkit, quick=False)
    if not report.ok and not skip_check:
        first = report.problems[0] if report.problems else ""
        raise BadInput(
            f"{where}: {report.summary()}; first: {first} "
            f"(see `harness data check --voc {devkit}`; --skip-data-check runs anyway and records it)"
        )
    try:
        fingerprint = dataset_fingerprint(devkit)
    except DataError as exc:
        raise BadInput(f"{where}: {exc}") from None
    return {
        "devkit": str(devkit),
        "fingerprint": fingerprint,
        "check": report.summary(),
        "check_ok": report.ok,
        "check_skipped": skip_check,
    }
