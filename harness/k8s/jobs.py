"""A recipe -> the manifests of one Kubernetes job: a ConfigMap with the run's files (and the rank
table when the recipe names one), then the job for the chosen operator:

- ``pytorchjob``: Kubeflow training-operator v1 ``PyTorchJob`` (kubeflow.org/v1), Master + Workers,
  built with ``kubeflow-training``'s models; container ``pytorch``, port ``pytorchjob-port``.
- ``volcano``: a Volcano ``Job`` (batch.volcano.sh/v1alpha1), one task ``node`` of N pods, the
  ``svc`` and ``env`` plugins giving hosts and pod index; ``minAvailable`` = N (gang scheduling).
- ``ascendjob``: MindCluster's ``AscendJob`` (mindxdl.gitee.com/v1, framework pytorch), Master +
  Workers; container ``ascend``, port ``ascendjob-port``; NPUs only.
- ``trainjob``: Kubeflow Trainer v2 ``TrainJob`` (trainer.kubeflow.org/v1alpha1) on a namespaced
  ``TrainingRuntime`` written alongside (or a runtime on the cluster, ``--runtime``), see
  harness.k8s.trainjob; container ``node``, Trainer's own port 29500.

Every pod runs the plan's torchrun with the rendezvous taken from its operator's variables
(harness.planning.launch.scheduler_rendezvous), inside harness.k8s.run_files.node_script.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import yaml
from kubernetes import client as k8s

from harness.core.errors import BadInput
from harness.k8s.options import DATASET_MOUNT, RESULTS_MOUNT, RUN_FILES_MOUNT, K8sOptions, job_name
from harness.k8s.pods import ANNOTATION_PREFIX, PodSettings, pod_template
from harness.k8s.run_files import new_run_id, node_script, run_files
from harness.k8s.trainjob import check_options as check_trainjob_options
from harness.k8s.trainjob import TRAINER_PORT, trainjob_manifests
from harness.planning.launch import VOLCANO_TASK, node_launches, scheduler_rendezvous, trainer_counts_check
from harness.planning.mmseg_config import config_changes
from harness.planning.plan import PlanInputs, build_plan
from harness.planning.ranktable import CONTAINER_RANK_TABLE, load_rank_table
from harness.planning.recipe import LoadedRecipe

API_VERSION = {"pytorchjob": "kubeflow.org/v1", "volcano": "batch.volcano.sh/v1alpha1", "ascendjob": "mindxdl.gitee.com/v1"}
KIND = {"pytorchjob": "PyTorchJob", "volcano": "Job", "ascendjob": "AscendJob"}
CONTAINER = {"pytorchjob": "pytorch", "volcano": "node", "ascendjob": "ascend", "trainjob": "node"}
# trainjob: Trainer's torch plugin adds its own port (29500) to the container and sets PET_MASTER_PORT to it.
PORT_NAME = {"pytorchjob": "pytorchjob-port", "volcano": None, "ascendjob": "ascendjob-port", "trainjob": None}
ASCEND_LABELS = {"framework": "pytorch", "ring-controller.atlas": "ascend-910b"}


@dataclass(frozen=True)
class Bundle:
    flavor: str
    name: str
    run_id: str
    manifests: tuple[dict, ...]  # ConfigMaps first, the job last

    @property
    def job(self) -> dict:
        return self.manifests[-1]

    def to_yaml(self) -> str:
        return yaml.safe_dump_all(list(self.manifests), sort_keys=False, width=120)


def _serialize(model) -> dict:
    return k8s.ApiClient().sanitize_for_serialization(model)


def _check_pods_can_reach_inputs(loaded: LoadedRecipe, flavor: str, options: K8sOptions) -> None:
    recipe = loaded.recipe
    where = loaded.path
    if flavor == "ascendjob" and recipe.device.kind != "npu":
        raise BadInput(f"{where}: device.kind: --flavor ascendjob is MindCluster's operator for Ascend NPUs; "
                       f"a {recipe.device.kind} recipe goes to --flavor pytorchjob or volcano")
    pretrained = recipe.model.pretrained
    if pretrained and "://" not in pretrained:
        raise BadInput(f"{where}: model.pretrained: a local file cannot reach the pods; give a URL, or bake it into the image")
    if recipe.eval is not None:
        raise BadInput(f"{where}: mode: eval recipes need their checkpoint on this host; run them with `harness run`")
    if flavor == "trainjob":
        check_trainjob_options(str(where), recipe.device.kind, options)


def build_bundle(loaded: LoadedRecipe, options: K8sOptions) -> Bundle:
    """Everything ``kubectl apply -f`` needs for one run of ``loaded`` (its device.nodes set)."""
    flavor = options.flavor
    _check_pods_can_reach_inputs(loaded, flavor, options)
    recipe = loaded.recipe
    device = recipe.device
    run_id = new_run_id(recipe.name)
    name = job_name(recipe.name, run_id.rsplit("-", 1)[1])
    rank_table = None
    if device.rank_table:
        table = load_rank_table(loaded.resolve(device.rank_table), device, where=f"{loaded.path}: device.rank_table")
        rank_table = json.dumps(table.model_dump(), indent=2) + "\n"
    # The pods' paths, as a local run would see them: the run folder on the results PVC.
    inputs = PlanInputs(
        run_dir=f"{RESULTS_MOUNT}/runs/{run_id}", dataset_dir=DATASET_MOUNT, config_name=loaded.config_path.name,
        python="python", rank_table_host_path=CONTAINER_RANK_TABLE if rank_table else None,
        # Trainer sets PET_MASTER_PORT itself: the plan records the port the pods will use.
        master_port=TRAINER_PORT if flavor == "trainjob" else None,
    )
    plan = build_plan(recipe, inputs, "local")
    rendezvous = scheduler_rendezvous(flavor, plan.master_port)
    if flavor == "trainjob":
        rendezvous = dataclasses.replace(rendezvous, setup=(trainer_counts_check(device.nodes, device.count), *rendezvous.setup))
    launches = node_launches(plan, rendezvous)
    launch = launches[0]  # every pod runs the same script: its rank comes from the operator
    description = {"recipe": str(loaded.path), **plan.to_dict(), "executor": f"kubernetes/{flavor}",
                   "config_changes": config_changes(plan.job)}
    files = run_files(loaded, loaded.data, description, plan, run_id)
    data, paths = files.configmap_items()
    files_name = f"{name}-run"
    manifests: list[dict] = [_configmap(files_name, options.namespace, data, run_id)]
    rank_table_name = None
    if rank_table:
        rank_table_name = f"{name}-rank-table"
        manifests.append(_configmap(rank_table_name, options.namespace, {"rank_table.json": rank_table}, run_id))
    script = node_script(launch, rendezvous, files, run_dir=inputs.run_dir, files_mount=RUN_FILES_MOUNT,
                         executor=f"kubernetes/{flavor}", recipe=recipe.name)
    labels = {"app.kubernetes.io/name": "pspnet-repro", "pspnet-repro/job": name}
    if flavor == "ascendjob":
        labels.update(ASCEND_LABELS)
    settings = PodSettings(CONTAINER[flavor], PORT_NAME[flavor], plan.master_port, script, labels)
    template = pod_template(kind=device.kind, count=device.count, options=options, settings=settings,
                            environment=launch.environment, run_files_configmap=files_name, configmap_paths=paths,
                            rank_table_configmap=rank_table_name)
    metadata = k8s.V1ObjectMeta(
        name=name, namespace=options.namespace, labels=dict(labels),
        annotations={
            f"{ANNOTATION_PREFIX}/run-id": run_id,
            f"{ANNOTATION_PREFIX}/recipe": recipe.name,
            f"{ANNOTATION_PREFIX}/device-kind": device.kind,
            f"{ANNOTATION_PREFIX}/nodes": str(device.nodes),
            f"{ANNOTATION_PREFIX}/nproc-per-node": str(device.count),
            f"{ANNOTATION_PREFIX}/world-size": str(device.world_size),
            f"{ANNOTATION_PREFIX}/master-port": str(plan.master_port),
        },
    )
    if flavor == "trainjob":
        manifests += trainjob_manifests(_serialize(metadata), _serialize(template), device.nodes, device.count, options)
    else:
        build = {"pytorchjob": _pytorchjob, "volcano": _volcano_job, "ascendjob": _ascendjob}[flavor]
        manifests.append(build(metadata, template, device.nodes, device.count, options))
    return Bundle(flavor, name, run_id, tuple(manifests))


def _configmap(name: str, namespace: str, data: dict[str, str], run_id: str) -> dict:
    return _serialize(k8s.V1ConfigMap(
        api_version="v1", kind="ConfigMap",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, annotations={f"{ANNOTATION_PREFIX}/run-id": run_id}),
        data=data,
    ))


def _master_and_workers(template, nodes: int, replica_spec) -> dict:
    specs = {"Master": replica_spec(replicas=1, restart_policy="Never", template=template)}
    if nodes > 1:
        specs["Worker"] = replica_spec(replicas=nodes - 1, restart_policy="Never", template=template)
    return specs


def _pytorchjob(metadata, template, nodes: int, count: int, options: K8sOptions) -> dict:
    from kubeflow.training import models as kf

    job = kf.KubeflowOrgV1PyTorchJob(
        api_version=API_VERSION["pytorchjob"], kind=KIND["pytorchjob"], metadata=metadata,
        spec=kf.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(count),
            pytorch_replica_specs=_master_and_workers(template, nodes, kf.KubeflowOrgV1ReplicaSpec),
            run_policy=kf.KubeflowOrgV1RunPolicy(clean_pod_policy="None", backoff_limit=0),
        ),
    )
    return _serialize(job)


def _volcano_job(metadata, template, nodes: int, count: int, options: K8sOptions) -> dict:
    # No official Python models for Volcano's Job: its pod template is the kubernetes model, the
    # rest follows the CRD (checked against it in the tests).
    return {
        "apiVersion": API_VERSION["volcano"],
        "kind": KIND["volcano"],
        "metadata": _serialize(metadata),
        "spec": {
            "schedulerName": "volcano",
            "queue": options.queue,
            "minAvailable": nodes,
            "maxRetry": 0,
            "plugins": {"svc": [], "env": []},
            "policies": [{"event": "PodEvicted", "action": "AbortJob"}, {"event": "PodFailed", "action": "AbortJob"}],
            "tasks": [{"name": VOLCANO_TASK, "replicas": nodes, "minAvailable": nodes, "template": _serialize(template)}],
        },
    }


def _ascend_replica_spec(*, replicas: int, restart_policy: str, template) -> dict:
    return {"replicas": replicas, "restartPolicy": restart_policy, "template": _serialize(template)}


def _ascendjob(metadata, template, nodes: int, count: int, options: K8sOptions) -> dict:
    return {
        "apiVersion": API_VERSION["ascendjob"],
        "kind": KIND["ascendjob"],
        "metadata": _serialize(metadata),
        "spec": {
            "schedulerName": "volcano",
            "runPolicy": {"backoffLimit": 0, "schedulingPolicy": {"minAvailable": nodes, "queue": options.queue}},
            "successPolicy": "AllWorkers",
            "replicaSpecs": _master_and_workers(template, nodes, _ascend_replica_spec),
        },
    }
