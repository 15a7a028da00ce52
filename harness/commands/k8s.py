"""``harness k8s RECIPE --flavor ...``: write the manifests that submit a recipe to a Kubernetes
cluster's training operator (Kubeflow Trainer v2 TrainJob, Volcano Job, MindCluster AscendJob, and
Kubeflow PyTorchJob, the legacy form for clusters still on training-operator 1.x).

The cluster runs it; the run lands in the results PVC's ``runs/<run-id>/`` (the run-store
layout), so ``harness report --results <the PVC's contents>`` shows it with every other run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import output_folder, positive_int
from harness.k8s import FLAVORS, GANGS


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "k8s", help="write Kubernetes manifests (TrainJob, Volcano Job, AscendJob, PyTorchJob) for a recipe",
        description="Write the manifests that run RECIPE on a Kubernetes cluster: a ConfigMap with the run's files "
                    "and a job for the chosen operator, one pod per node holding that node's devices "
                    "(huawei.com/Ascend910 or nvidia.com/gpu). Each pod's torchrun takes its node rank and master "
                    "from the operator's variables (Trainer v2: PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT). The dataset comes from a read-only PVC (the VOCdevkit folder); "
                    "the run is written to RESULTS_PVC:runs/<run-id>/. Nothing is submitted: apply the file with "
                    "kubectl. Needs the optional 'k8s' extra (pip install '.[k8s]').")
    p.add_argument("recipe", type=Path, help="a recipe YAML file, e.g. recipes/full_8p.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (dotted, YAML value); repeatable")
    p.add_argument("--flavor", choices=FLAVORS, required=True,
                   help="trainjob (Kubeflow Trainer v2 TrainJob + TrainingRuntime, validated against v2.3.0), volcano "
                        "(Volcano Job), ascendjob (MindCluster, NPUs: MindCluster does not support TrainJob) or pytorchjob "
                        "(Kubeflow training-operator v1, legacy: upstream replaced it with Trainer v2)")
    p.add_argument("--nodes", type=positive_int, metavar="N", help="nodes (pods); default: the recipe's device.nodes")
    p.add_argument("--namespace", default="default", help="namespace of the job and its ConfigMaps (default: default)")
    p.add_argument("--image", help="container image (default: the recipe's image)")
    p.add_argument("--dataset-pvc", required=True, metavar="NAME", help="PVC holding the VOCdevkit folder (mounted read-only)")
    p.add_argument("--dataset-subpath", metavar="PATH", help="the VOCdevkit folder's path inside the dataset PVC (default: its root)")
    p.add_argument("--results-pvc", required=True, metavar="NAME", help="writable PVC for the run store (runs/<run-id>/)")
    p.add_argument("--queue", default="default",
                   help="Volcano queue for volcano, ascendjob and trainjob --gang volcano (default: default)")
    p.add_argument("--runtime", metavar="NAME",
                   help="trainjob: run on this runtime already on the cluster (NAME: a ClusterTrainingRuntime, "
                        "trainingruntime/NAME: a TrainingRuntime in --namespace) instead of writing one; the TrainJob then "
                        "carries the image, script and mounts (GPU/CPU only: NPU pods need hostNetwork)")
    p.add_argument("--gang", choices=GANGS,
                   help="trainjob: gang-schedule the nodes' pods (volcano: the runtime's podGroupPolicy.volcano, "
                        "schedulerName volcano, --queue)")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="folder for manifests.yaml (default: k8s/<job-name>; a file there is refused, exit 2)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.core.errors import BadInput, EnvironmentNotReady
    from harness.core.fileio import write_text_atomic
    from harness.planning.recipe import load_recipe

    if args.output is not None:
        output_folder(args.output)
    sets = list(args.sets) + ([f"device.nodes={args.nodes}"] if args.nodes else [])
    loaded = load_recipe(args.recipe, sets)
    try:
        from harness.k8s.jobs import build_bundle  # the kubernetes models take seconds to import: only here
    except ImportError as exc:
        raise EnvironmentNotReady(f"harness k8s needs the 'k8s' extra ({exc.name} is missing): pip install '.[k8s]'") from None
    from harness.k8s.options import K8sOptions
    from harness.k8s.validate import check_manifests

    image = args.image or loaded.recipe.image
    if not image:
        raise BadInput(f"{loaded.path}: image: the recipe names no image; give --image")
    options = K8sOptions(
        flavor=args.flavor, namespace=args.namespace, image=image, dataset_pvc=args.dataset_pvc,
        results_pvc=args.results_pvc, dataset_subpath=args.dataset_subpath, queue=args.queue,
        runtime=args.runtime, gang=args.gang,
    )
    bundle = build_bundle(loaded, options)
    check_manifests(list(bundle.manifests), f"{bundle.flavor} manifests for {loaded.path}")
    output = args.output or Path("k8s") / bundle.name
    path = output / "manifests.yaml"
    write_text_atomic(path, bundle.to_yaml())
    device = loaded.recipe.device
    print(path)
    print(f"harness: {bundle.flavor} {bundle.name}: {device.nodes} node(s) x {device.count} {device.kind} = "
          f"{device.world_size} ranks; run {bundle.run_id} -> {args.results_pvc}:runs/{bundle.run_id}/; "
          f"submit with: kubectl apply -f {path}", file=sys.stderr)
    return 0
