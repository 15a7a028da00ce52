"""``harness ingest``: import runs made outside the harness into ``results/runs/``.

Two kinds of source are recognised, anywhere under the given path:

- the seed scripts' output folders, ``output/<Network>/<ASCEND_DEVICE_ID>/`` with
  ``train_<id>.log`` (the rank-0 training log) and ``<CaseName>.log`` (their ``Key = Value``
  result file, e.g. ``PSPNet_bs16_8p_acc.log``; ``_perf`` = performance mode, ``_eval`` = the
  evaluation script); the ``ckpt/`` folder under it is not read;
- plain mmsegmentation work_dirs: 1.x (``<work_dir>/<timestamp>/`` folders holding
  ``<timestamp>.log`` and ``vis_data/scalars.json``; each timestamp folder is one (re)start of
  the run, all of them make one run) or a single such timestamp folder; 0.x (``*.log`` /
  ``*.log.json`` in the folder).

Each source becomes one run folder, laid out like a run the harness made: the logs copied into
``work_dir/<attempt>/`` under their own names, a ``recipe.yaml`` that describes
what the logs say was run (mode, device kind and count, batch, iterations) with the shipped
reference row it should be judged against, ``recipe_source.json``, ``provenance.json`` (where
it came from, the files and their sha256), ``status.json`` (``succeeded`` with ``ingested:
true``, or ``failed`` when the log stops early) and ``result.json``.

Run folders the harness laid out elsewhere (a Kubernetes results PVC, another host's results/)
are not logs to describe: ``harness.evidence.ingest.runs`` copies them under their own run ids.

Everything is parsed before anything is written: bad input raises ``IngestError`` (one line,
naming the path) and leaves the results folder untouched. Importing the same files again is a
no-op: the sha256 of the source files is compared with those recorded by earlier imports.
"""
from harness.evidence.ingest.describe import Prepared, prepare
from harness.evidence.ingest.discover import Source, discover
from harness.evidence.ingest.errors import IngestError
from harness.evidence.ingest.store import find_existing, ingest, store_prepared, write

__all__ = ["IngestError", "Prepared", "Source", "discover", "find_existing", "ingest", "prepare", "store_prepared", "write"]
