"""mmseg's own SBD converter, run as shipped, and an output comparison: the reference the tests and
`bench/bench_prepare.py` hold `harness data prepare` against (test-only code, not part of the package).

mmseg's ``voc_aug.py`` asserts the real trainaug size (``AUG_LEN = 10582``) after converting, so on
a synthetic set it would convert and then fail before writing the lists. ``run_mmseg_converter``
loads the script from the installed wheel, sets ``AUG_LEN`` to the expected count and calls its
``main()`` with the documented command line; nothing else is changed.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

# Imported by name from its folder (as ``python voc_aug.py`` would find it) so its pool workers can
# unpickle ``convert_mat``.
WRAPPER = """
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import voc_aug
voc_aug.AUG_LEN = int(sys.argv[2])
sys.argv = [sys.argv[1]] + sys.argv[3:]
voc_aug.main()
"""


def mmseg_converter_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mmseg")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mmseg is not installed")
    path = Path(spec.origin).parent / ".mim" / "tools" / "dataset_converters" / "voc_aug.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mmseg's converter is not in the installed wheel")
    return path


def run_mmseg_converter(devkit: Path, aug_path: Path, nproc: int, aug_len: int,
                        **kwargs) -> subprocess.CompletedProcess:
    """``python voc_aug.py DEVKIT AUG_PATH --nproc N`` with ``AUG_LEN = aug_len``."""
    command = [sys.executable, "-c", WRAPPER, str(mmseg_converter_path()), str(aug_len),
               str(devkit), str(aug_path), "--nproc", str(nproc)]
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def compare_label_dirs(expected: Path, actual: Path) -> list[str]:
    """Differences between two SegmentationClassAug folders: file sets, PNG modes, sizes, pixels."""
    from PIL import Image

    names_e = {p.name for p in Path(expected).glob("*.png")}
    names_a = {p.name for p in Path(actual).glob("*.png")}
    problems = [f"only in {expected}: {n}" for n in sorted(names_e - names_a)[:5]]
    problems += [f"only in {actual}: {n}" for n in sorted(names_a - names_e)[:5]]
    for name in sorted(names_e & names_a):
        with Image.open(Path(expected) / name) as e, Image.open(Path(actual) / name) as a:
            if e.mode != a.mode or e.size != a.size:
                problems.append(f"{name}: {e.mode} {e.size} vs {a.mode} {a.size}")
            elif not np.array_equal(np.asarray(e), np.asarray(a)):
                problems.append(f"{name}: pixels differ")
    return problems


def read_id_set(path: Path) -> set[str]:
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
