"""``harness export mlflow [RUN|GROUP ...] --tracking-uri URI``: stored runs into an MLflow store
(``harness.evidence.tracking.mlflow_export``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import EXIT_OK, BadInput


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="send stored runs to an experiment tracker (mlflow)")
    sub = p.add_subparsers(dest="export_target", metavar="TRACKER", parser_class=type(p))
    sub.required = True
    m = sub.add_parser(
        "mlflow", help="one MLflow run per harness run: params, metrics and curves, verdicts as tags, the bundle",
        description="Send stored runs to an MLflow tracking store: one MLflow run per harness run, with the "
                    "recipe, plan and provenance (device, image ID, versions) as params; final.* and best.* "
                    "aAcc/mIoU/mAcc and fps as metrics; the loss curve and each evaluation as metric histories "
                    "by iteration; state and verdicts as tags (harness.results.verdict.<metric>); the run's bundle as "
                    "the artifact harness/<run-id>.tar.gz. A run already in the store (tag harness.run_id, also "
                    "set by a recipe's live tracking.backends: [mlflow]) is updated: its params are kept, its "
                    "tags updated and only the metric steps it lacks are logged, so exporting twice duplicates "
                    "nothing. Needs the `tracking` extra (pip install 'pspnet-repro[tracking]').")
    m.add_argument("targets", nargs="+", metavar="RUN_OR_GROUP",
                   help="run ids, or group ids (harness run --repeat: the group's finished runs)")
    m.add_argument("--tracking-uri", required=True, metavar="URI",
                   help="the tracking store: http://HOST:PORT (a server) or sqlite:///PATH.db (a local store; "
                        "new experiments keep artifacts in mlartifacts/ beside it)")
    m.add_argument("--experiment", metavar="NAME", help="experiment for runs not yet in the store (default: the recipe's name)")
    m.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    m.set_defaults(func=run_export_mlflow)


def run_export_mlflow(args: argparse.Namespace) -> int:
    from harness.evidence.bundles.pack import source_for
    from harness.evidence.tracking.mlflow_export import export_runs

    if ":" not in args.tracking_uri:
        raise BadInput(f"--tracking-uri {args.tracking_uri!r}: expected a URI such as http://127.0.0.1:5000 or "
                       "sqlite:///mlflow.db")
    runs, seen = [], set()
    for target in args.targets:  # every name is checked before anything is sent
        for run in source_for(args.results, target).runs:
            if run.run_id not in seen:
                seen.add(run.run_id)
                runs.append(run)
    for outcome in export_runs(runs, args.tracking_uri, args.experiment):
        print(outcome.line(), flush=True)
    return EXIT_OK
