"""pspnet-repro: reproduce PSPNet VOC2012+aug tables with mmsegmentation on NPU, GPU and CPU.

The flow: recipe (``recipe.py``) -> plan (``plan.py``, pure) -> executor (``executors/``) ->
worker (``worker/``, where training runs) -> logs (``logs/``) -> result (``result.py``) -> report.
"""

from pathlib import Path

__version__ = "0.1.0"

# Found here once, so that no module finds the tree by counting its own parents (they move).
PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_TREE = PACKAGE_DIR.parent  # the checkout in an editable install (docker/, pyproject.toml)
