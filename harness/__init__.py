"""pspnet-repro: reproduce PSPNet VOC2012+aug tables with mmsegmentation on NPU, GPU and CPU.

The flow: recipe and plan (``planning/``, pure) -> executor (``executors/``) -> worker (``worker/``,
where training runs) -> result (``results/``) -> report (``report/``); runs are kept in the store
(``store/``), packed and imported by ``evidence/``, driven by ``commands/``. One package per stage;
each imports only the stages below it (docs/architecture.md, checked by lint-imports).
"""

from pathlib import Path

__version__ = "0.1.0"

# Found here once, so that no module finds the tree by counting its own parents (they move).
PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_TREE = PACKAGE_DIR.parent  # the checkout in an editable install (docker/, pyproject.toml)
