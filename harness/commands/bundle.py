"""``harness bundle RUN_OR_GROUP -o FILE.tar.gz`` and ``harness verify FILE.tar.gz``: evidence that
a reader checks on their own machine (``harness.evidence.bundles``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.core.errors import EXIT_OK, EXIT_RUN_FAILED


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bundle", help="pack a run (or a group) with its logs, records and checksums into a tar.gz",
        description="Pack what a reader needs to check a run's claim: the recipe as run, the resolved "
                    "config and configs/, the logs (train.log, work_dir/<attempt>/*.log, events.mllog, "
                    "vis_data/scalars.json), result, provenance, worker_env, plan, job, dataset and status "
                    "records, the package locks of the run's device kind with their digest, the dataset "
                    "manifest when it is on this machine (not the data), and bundle.json with every file's "
                    "sha256. Checkpoints and plots are left out. The tarball is deterministic: the same run "
                    "gives the same bytes. A group id bundles the group's finished runs and its record. "
                    "Check it anywhere with `harness verify FILE`.")
    p.add_argument("target", metavar="RUN_OR_GROUP", help="a run id (or a group id) in RESULTS")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tar.gz", help="the bundle to write")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    p.set_defaults(func=run_bundle)

    v = subparsers.add_parser(
        "verify", help="check a bundle: checksums, every number recomputed from its logs, verdicts re-judged, "
             "event streams through the compliance checker",
        description="Check a bundle made by `harness bundle`, with no access to the run store: extract it "
                    "safely into a scratch folder (absolute paths, '..', links, devices and oversized "
                    "members or headers are refused), check every file against bundle.json, recompute "
                    "every number result.json reports from the bundled logs and judge the verdicts again "
                    "against the bundled recipe's reference, rebuild each run's plan and job from its "
                    "recipe and recorded executor options (validated as a command line would be), and "
                    "check every worker event stream (events.mllog) with MLCommons' compliance checker against "
                    "the harness's ruleset (as `harness events check` does) and a group bundle's group "
                    "record against its runs. Prints PASS, "
                    "or FAIL and one line per difference naming the file (and the key). Exit 0 on PASS, "
                    "1 on FAIL, 2 when the file is not a (safe, readable) bundle.")
    v.add_argument("bundle", type=Path, metavar="FILE.tar.gz", help="the bundle to check")
    v.set_defaults(func=run_verify)


def run_bundle(args: argparse.Namespace) -> int:
    from harness.evidence.bundles.pack import source_for, write_bundle

    record = write_bundle(source_for(args.results, args.target), args.output)
    size = sum(f.size for f in record.files)
    print(f"{args.output}: {len(record.runs)} run(s), {len(record.files)} files, {size} bytes before "
          f"compression; check it with `harness verify {args.output}`")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from harness.evidence.bundles.verify import verify_bundle

    outcome = verify_bundle(args.bundle)
    print(outcome.summary())
    for line in outcome.differences:
        print(f"  {line}")
    sys.stdout.flush()
    return EXIT_OK if outcome.passed else EXIT_RUN_FAILED
