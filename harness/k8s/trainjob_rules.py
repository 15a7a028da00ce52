"""The node pod a Kubeflow Trainer v2 TrainJob will run, as Trainer builds it, and the rules only a
TrainJob has. The other rules (devices, torchrun's flags, mounts, security) then apply to that pod as
to every other flavour's (harness.k8s.validate).

Trainer (v2.3.0, pkg/runtime/core/trainingruntime.go and plugins/torch) takes the runtime's
``node`` replicatedJob, applies the TrainJob's ``runtimePatches``, then ``spec.trainer``: image,
command, args, env (merged by name) and ``resourcesPerNode`` replace the ``node`` container's, and
``numNodes`` (else the runtime's ``mlPolicy.numNodes``) is the number of pods.
"""
from __future__ import annotations

import copy
import re

from harness.k8s.trainjob import ANCESTOR_LABEL, ANCESTOR_TRAINER, NODE, RESERVED_ENV

RUNTIME_KIND = "TrainingRuntime"
ML_POLICIES = {"torch", "mpi", "jax", "xgboost", "flux"}  # the CRD's "Only one of the policy can be configured"
# The TrainJob CRD's own x-kubernetes-validations (CEL, which a JSON schema cannot run): an RFC 1035 label.
_RFC1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _node_job(jobs: list, where: str, problems: list[str]) -> dict | None:
    named = [job for job in jobs or [] if job.get("name") == NODE]
    if not named:
        problems.append(f"{where}: no replicatedJob named {NODE!r} (Trainer's torch plugin configures only that one)")
        return None
    return named[0]


def _runtime_pod(runtime: dict, problems: list[str]) -> tuple[dict, int | None]:
    name = (runtime.get("metadata") or {}).get("name")
    spec = runtime.get("spec") or {}
    where = f"TrainingRuntime {name}"
    policies = sorted(set(spec.get("mlPolicy") or {}) & ML_POLICIES)
    if policies != ["torch"]:
        problems.append(f"{where}: spec.mlPolicy.torch is needed, and no other framework policy (the torch plugin sets the "
                        f"PET_* rendezvous variables; the CRD allows one policy), found {policies or 'none'}")
    template = spec.get("template") or {}
    node = _node_job((template.get("spec") or {}).get("replicatedJobs"), f"{where}: spec.template.spec.replicatedJobs", problems)
    if node is None:
        return {}, None
    job_template = node.get("template") or {}
    if ((job_template.get("metadata") or {}).get("labels") or {}).get(ANCESTOR_LABEL) != ANCESTOR_TRAINER:
        problems.append(f"{where}: replicatedJob {NODE!r} template.metadata.labels needs {ANCESTOR_LABEL}: {ANCESTOR_TRAINER} "
                        "(Trainer applies spec.trainer to the job carrying it)")
    pod = copy.deepcopy(((job_template.get("spec") or {}).get("template")) or {})
    if "volcano" in (spec.get("podGroupPolicy") or {}) and (pod.get("spec") or {}).get("schedulerName") != "volcano":
        problems.append(f"{where}: replicatedJob {NODE!r} pod spec.schedulerName: must be 'volcano' "
                        "(podGroupPolicy.volcano's PodGroup binds only pods Volcano schedules)")
    return pod, (spec.get("mlPolicy") or {}).get("numNodes")


def _patched_pod(job: dict, problems: list[str]) -> dict:
    """A runtime on the cluster: the pod as far as the TrainJob's runtimePatches state it."""
    pod: dict = {"spec": {"containers": [{"name": NODE}], "volumes": []}}
    for index, patch in enumerate((job.get("spec") or {}).get("runtimePatches") or []):
        template = ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {}
        node = _node_job(template.get("replicatedJobs"), f"spec.runtimePatches[{index}].trainingRuntimeSpec.template.spec.replicatedJobs",
                         problems)
        patched = ((((node or {}).get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        pod["spec"]["volumes"] += patched.get("volumes") or []
        if "securityContext" in patched:
            pod["spec"]["securityContext"] = patched["securityContext"]
        for container in patched.get("containers") or []:
            if container.get("name") == NODE:
                pod["spec"]["containers"][0].update(container)
    return pod


def _apply_trainer(pod: dict, trainer: dict) -> None:
    containers = (pod.setdefault("spec", {})).get("containers") or []
    for container in containers:
        if container.get("name") != NODE:
            continue
        for field in ("image", "command", "args"):
            if field in trainer:
                container[field] = trainer[field]
        if "env" in trainer:
            overridden = {env.get("name") for env in trainer["env"]}
            container["env"] = [env for env in container.get("env") or [] if env.get("name") not in overridden] + trainer["env"]
        if "resourcesPerNode" in trainer:
            container["resources"] = trainer["resourcesPerNode"]


def node_replicas(job: dict, manifests: list[dict], problems: list[str]) -> list[tuple[str, int, dict]]:
    """[(where, pods, effective pod template)] of a TrainJob, with the runtime from ``manifests``."""
    spec = job.get("spec") or {}
    reference = spec.get("runtimeRef") or {}
    namespace = (job.get("metadata") or {}).get("namespace")
    runtimes = {(m.get("metadata") or {}).get("name"): m for m in manifests if m.get("kind") == RUNTIME_KIND}
    nodes = None
    if reference.get("kind") == RUNTIME_KIND and runtimes:
        # A file holding TrainingRuntimes must hold the one its TrainJob runs on.
        runtime = runtimes.get(reference.get("name"))
        if runtime is None:
            problems.append(f"spec.runtimeRef names TrainingRuntime {reference.get('name')!r}, which is not in the file "
                            f"(it holds {', '.join(sorted(map(str, runtimes)))})")
            return []
        if (runtime.get("metadata") or {}).get("namespace") != namespace:
            problems.append(f"spec.runtimeRef: TrainingRuntime {reference.get('name')!r} is in namespace "
                            f"{(runtime.get('metadata') or {}).get('namespace')!r}, the TrainJob in {namespace!r} (they must match)")
            return []
        pod, nodes = _runtime_pod(runtime, problems)
        where = f"TrainingRuntime {reference.get('name')} replicatedJob {NODE!r} + spec.trainer"
    else:
        # A runtime on the cluster (--runtime): only what the TrainJob patches in can be checked.
        pod = _patched_pod(job, problems)
        where = f"spec.runtimePatches + spec.trainer (runtime {reference.get('kind')}/{reference.get('name')})"
    trainer = spec.get("trainer") or {}
    _apply_trainer(pod, trainer)
    pods = trainer.get("numNodes", nodes or 1)
    if not isinstance(pods, int):
        problems.append(f"spec.trainer.numNodes: expected a number, got {pods!r}")
        return []
    return [(where, pods, pod)]


def trainer_problems(job: dict, per_node: int | None) -> list[str]:
    trainer = (job.get("spec") or {}).get("trainer") or {}
    problems = []
    name = str((job.get("metadata") or {}).get("name", ""))
    if not _RFC1035_LABEL.match(name):
        problems.append(f"metadata.name {name!r}: a TrainJob's name must be an RFC 1035 label (a lowercase letter first, no dots)")
    if "numProcPerNode" not in trainer:
        problems.append("spec.trainer.numProcPerNode must be set explicitly (Trainer's torch plugin counts only resources "
                        "named *gpu*: 'auto' on huawei.com/Ascend910 becomes the CPU count)")
    elif per_node is not None and trainer["numProcPerNode"] != per_node:
        problems.append(f"spec.trainer.numProcPerNode is {trainer['numProcPerNode']!r}, expected {per_node}")
    for env in trainer.get("env") or []:
        if env.get("name") in RESERVED_ENV:
            problems.append(f"spec.trainer.env: {env.get('name')} is reserved by Trainer's torch plugin (it sets the PET_* variables)")
    return problems
