"""pspnet-repro: reproduce PSPNet VOC2012+aug tables with mmsegmentation on NPU, GPU and CPU.

The flow: recipe (``recipe.py``) -> plan (``plan.py``, pure) -> executor (``executors/``) ->
worker (``worker/``, where training runs) -> logs (``logs/``) -> result (``result.py``) -> report.
"""

__version__ = "0.1.0"
