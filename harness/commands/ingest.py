"""``harness ingest PATH...``: import runs made outside this store (the seed scripts' output
folders, plain mmseg work_dirs, bundles, run folders from a Kubernetes results PVC) into
``results/runs/`` so that ``harness report`` shows them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import positive_int
from harness.core.errors import BadInput, environment_problem, exits_with_code
from harness.store.runs import RunStoreError


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ingest", help="import seed output folders, mmseg work_dirs, run folders or verified bundles as runs",
        description="Import runs made outside the harness into RESULTS/runs/: the seed scripts' "
                    "output folders (output/<Network>/<id>/ with train_<id>.log and the "
                    "<CaseName>.log result file; output/ or output/<Network>/ finds them all) "
                    "and plain mmsegmentation work_dirs (1.x <timestamp>/ folders with "
                    "vis_data/scalars.json, 0.x *.log / *.log.json). The logs are copied, "
                    "parsed and judged against the matching shipped reference row. Importing "
                    "the same files twice does nothing. Everything is checked before anything "
                    "is written. A bundle is verified (`harness verify`) and its runs are "
                    "stored under their own run ids (a group bundle's group record too); a run or "
                    "group already in the store is skipped. "
                    "Run folders the harness laid out elsewhere (a Kubernetes results PVC from "
                    "`harness k8s`, another host's results/) are copied under their own ids too, "
                    "with a result built from their logs when they have none; unfinished runs "
                    "are refused, and so is a folder holding a link, a FIFO or device, or a "
                    "file larger than a run's logs and records hold (nothing is copied then).")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="a seed output folder, an mmseg work_dir, a folder holding several, a run "
                        "folder or run store (RESULTS or RESULTS/runs), or a bundle (FILE.tar.gz from "
                        "`harness bundle`: verified first, refused if it fails)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results folder (default: results)")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size", metavar="B",
                   help="images per device per iteration (default: from the logs)")
    p.add_argument("--devices", type=positive_int, metavar="N",
                   help="number of devices (default: from the logs, e.g. the seed's RankSize)")
    p.set_defaults(func=run)
    return p


@exits_with_code("harness ingest")
def run(args: argparse.Namespace) -> int:
    from harness.evidence.bundles.store import BundleRefused, import_verified, looks_like_bundle, verified
    from harness.evidence.bundles.tarball import NotABundle
    from harness.evidence.ingest import IngestError, prepare, store_prepared  # pydantic and friends: only when used
    from harness.evidence.ingest.runs import check_importable, import_runs, run_folders
    from harness.core.scratch import signals_interrupt
    from harness.core.untrusted import UntrustedInput

    bundles, runs, prepared = [], [], []
    try:
        # SIGTERM/SIGHUP raise KeyboardInterrupt: a run half-written into the store is removed
        # by the writer's own clean-up, scratch folders too; exit 130.
        with signals_interrupt():
            # Every path is found, parsed (bundles: verified; run folders: checked) first: one bad
            # input writes nothing at all.
            for path in args.paths:
                if looks_like_bundle(path):
                    bundles.append(verified(path))
                elif found := run_folders(path):
                    for run in found:
                        check_importable(run)
                    runs += found
                else:
                    prepared += prepare(path, batch_per_device=args.batch_size, devices=args.devices)
            created = []
            while bundles:
                created += import_verified(bundles.pop(0), args.results, on_message=print)
            created += import_runs(runs, args.results, on_message=print)
            created += store_prepared(prepared, args.results, on_message=print)
    except (IngestError, RunStoreError, BundleRefused, NotABundle, UntrustedInput) as err:
        raise BadInput(str(err)) from None
    except OSError as err:  # a full disk is the machine's fault, as in every command (exit 3)
        raise environment_problem(err) or BadInput(str(err)) from None
    except (ValueError, UnicodeError, MemoryError, RecursionError) as err:
        raise BadInput(str(err)) from None
    finally:
        for bundle in bundles:  # verified but not imported (a later input was bad)
            bundle.folder.cleanup()
    from harness.report.plotting import draw_runs_quietly

    # ingest records the runs, so it draws their plots (in parallel); the report never does
    problem = draw_runs_quietly(created)
    if problem:
        print(f"harness ingest: {problem}", file=sys.stderr)
    return 0
