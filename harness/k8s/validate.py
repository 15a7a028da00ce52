"""Semantic rules for the harness's Kubernetes manifests, beyond what a CRD schema can say.

The rules read only the manifests (a hand-edited file is checked the same way): the job's
``pspnet-repro/*`` annotations state the intended nodes, devices per node and world size, and
everything else must agree with them: gang scheduling covers every pod, pods x devices = world
size, one device resource (requests == limits) in every pod, the container and port names each
operator looks for, torchrun's arguments from the operator's own variables (never WORLD_SIZE), no
privileged pods, non-root CPU/GPU pods, /dev/shm in memory, hostNetwork for HCCL. A TrainJob's pod
is the one Trainer builds from its runtime and ``spec.trainer`` (harness.k8s.trainjob_rules).
"""
from __future__ import annotations

import re

from harness.core.errors import BadInput
from harness.k8s.trainjob_rules import node_replicas, trainer_problems
from harness.planning.launch import VOLCANO_TASK, scheduler_rendezvous

DEVICE_RESOURCES = {"npu": "huawei.com/Ascend910", "gpu": "nvidia.com/gpu"}
JOB_KINDS = {
    ("kubeflow.org/v1", "PyTorchJob"): "pytorchjob",
    ("batch.volcano.sh/v1alpha1", "Job"): "volcano",
    ("mindxdl.gitee.com/v1", "AscendJob"): "ascendjob",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob",
}
CONTAINER = {"pytorchjob": "pytorch", "ascendjob": "ascend", "trainjob": "node"}
PORT_NAME = {"pytorchjob": "pytorchjob-port", "ascendjob": "ascendjob-port"}
ASCEND_LABELS = {"framework": "pytorch", "ring-controller.atlas": None}  # None: any value
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
A = "pspnet-repro/"


class ManifestError(BadInput):
    """A manifest the operator would reject or run wrongly."""


def _replica_templates(flavor: str, job: dict, manifests: list[dict], problems: list[str]) -> list[tuple[str, int, dict]]:
    spec = job.get("spec") or {}
    if flavor == "trainjob":
        return node_replicas(job, manifests, problems)
    if flavor == "volcano":
        return [(f"spec.tasks[{i}]", int(t.get("replicas", 1)), t.get("template") or {}) for i, t in enumerate(spec.get("tasks") or [])]
    key = "pytorchReplicaSpecs" if flavor == "pytorchjob" else "replicaSpecs"
    return [(f"spec.{key}.{role}", int(r.get("replicas", 1)), r.get("template") or {}) for role, r in (spec.get(key) or {}).items()]


def _int(value, what: str, problems: list[str]) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        problems.append(f"{what}: expected a number, got {value!r}")
        return None


def _main_container(flavor: str, where: str, pod: dict, problems: list[str]) -> dict | None:
    containers = pod.get("containers") or []
    if flavor in CONTAINER:
        named = [c for c in containers if c.get("name") == CONTAINER[flavor]]
        if not named:
            problems.append(f"{where}.template.spec.containers: no container named {CONTAINER[flavor]!r} "
                            f"(the {flavor} operator only configures that one)")
            return None
        return named[0]
    if not containers:
        problems.append(f"{where}.template.spec.containers: no container")
        return None
    return containers[0]


def _script(container: dict) -> str:
    return "\n".join(str(part) for part in (container.get("command") or []) + (container.get("args") or []))


def _check_pod(flavor: str, where: str, pod: dict, expect: dict, problems: list[str]) -> tuple[str | None, int | None]:
    """One replica's pod template; returns (device resource, devices per pod)."""
    container = _main_container(flavor, where, pod, problems)
    if container is None:
        return None, None
    here = f"{where} container {container.get('name')!r}"
    kind = expect["kind"]
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    resource = DEVICE_RESOURCES.get(kind, "cpu")
    for other in set(DEVICE_RESOURCES.values()) - {resource}:
        if other in requests or other in limits:
            problems.append(f"{here}: requests {other} but the recipe's devices are {kind} ({resource})")
    if str(requests.get(resource)) != str(limits.get(resource)):
        problems.append(f"{here}: {resource} requests {requests.get(resource)!r} != limits {limits.get(resource)!r} (must be equal)")
    devices = _int(limits.get(resource), f"{here}: resources.limits[{resource}]", problems)
    script = _script(container)
    if "WORLD_SIZE" in script:
        problems.append(f"{here}: the command uses WORLD_SIZE, which the operators define differently; use explicit torchrun flags")
    rendezvous = scheduler_rendezvous(flavor, expect["master_port"] or 0)
    wanted = {"nnodes": str(expect["nodes"]), "nproc_per_node": str(expect["per_node"]),
              "node_rank": rendezvous.node_rank, "master_addr": rendezvous.master_addr}
    for flag, value in wanted.items():
        if f"--{flag}={value}" not in script:
            problems.append(f"{here}: torchrun needs --{flag}={value}")
    if flavor in PORT_NAME:
        ports = [p for p in container.get("ports") or [] if p.get("name") == PORT_NAME[flavor]]
        if not ports:
            problems.append(f"{here}: no port named {PORT_NAME[flavor]!r} (the operator's MASTER_PORT comes from it)")
        elif expect["master_port"] is not None and ports[0].get("containerPort") != expect["master_port"]:
            problems.append(f"{here}: port {PORT_NAME[flavor]} is {ports[0].get('containerPort')}, the plan's master port {expect['master_port']}")
    security = container.get("securityContext") or {}
    pod_security = pod.get("securityContext") or {}
    if security.get("privileged"):
        problems.append(f"{here}: privileged pods are not allowed")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{here}: securityContext.allowPrivilegeEscalation must be false")
    if kind != "npu":
        non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        if non_root is not True or user in (None, 0):
            problems.append(f"{here}: {kind} pods run as a non-root user (runAsNonRoot: true, runAsUser > 0)")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = {m.get("mountPath"): m for m in container.get("volumeMounts") or []}
    shm = volumes.get((mounts.get("/dev/shm") or {}).get("name")) or {}
    if (shm.get("emptyDir") or {}).get("medium") != "Memory":
        problems.append(f"{here}: /dev/shm must be an emptyDir with medium Memory (data loader workers share memory there)")
    dataset = mounts.get("/data/VOCdevkit")
    if dataset is None:
        problems.append(f"{here}: no dataset mounted at /data/VOCdevkit")
    else:
        claim = (volumes.get(dataset.get("name")) or {}).get("persistentVolumeClaim") or {}
        if not dataset.get("readOnly") or not claim.get("readOnly"):
            problems.append(f"{here}: the dataset PVC must be mounted read-only")
    if kind == "npu" and not pod.get("hostNetwork"):
        problems.append(f"{where}.template.spec: NPU pods need hostNetwork: true (HCCL links between the hosts' interfaces)")
    return resource, devices


def _expectations(metadata: dict, problems: list[str]) -> dict:
    notes = metadata.get("annotations") or {}
    missing = [key for key in ("device-kind", "nodes", "nproc-per-node", "world-size") if A + key not in notes]
    if missing:
        problems.append(f"metadata.annotations: missing {', '.join(A + key for key in missing)}")
        return {}
    expect = {
        "kind": notes[A + "device-kind"],
        "nodes": _int(notes[A + "nodes"], f"metadata.annotations[{A}nodes]", problems),
        "per_node": _int(notes[A + "nproc-per-node"], f"metadata.annotations[{A}nproc-per-node]", problems),
        "world_size": _int(notes[A + "world-size"], f"metadata.annotations[{A}world-size]", problems),
        "master_port": _int(notes[A + "master-port"], f"metadata.annotations[{A}master-port]", problems) if A + "master-port" in notes else None,
    }
    if None not in (expect["nodes"], expect["per_node"], expect["world_size"]) and expect["nodes"] * expect["per_node"] != expect["world_size"]:
        problems.append(f"metadata.annotations: nodes {expect['nodes']} x nproc-per-node {expect['per_node']} != world-size {expect['world_size']}")
    return expect


def job_problems(job: dict, manifests: list[dict] = ()) -> list[str]:
    """What is wrong with one job manifest (empty when it follows every rule); ``manifests``: the
    rest of its file (a TrainJob's TrainingRuntime)."""
    flavor = JOB_KINDS.get((job.get("apiVersion"), job.get("kind")))
    if flavor is None:
        return [f"apiVersion/kind {job.get('apiVersion')}/{job.get('kind')}: not a PyTorchJob, Volcano Job, AscendJob or TrainJob"]
    problems: list[str] = []
    metadata = job.get("metadata") or {}
    name = str(metadata.get("name", ""))
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r}: expected a DNS name of at most 63 lowercase characters")
    expect = _expectations(metadata, problems)
    if not expect or None in (expect["nodes"], expect["per_node"], expect["world_size"]):
        return problems
    spec = job.get("spec") or {}
    replicas = _replica_templates(flavor, job, list(manifests), problems)
    if flavor == "trainjob":
        problems += trainer_problems(job, expect["per_node"])
    pods = sum(count for _, count, _ in replicas)
    if pods != expect["nodes"]:
        problems.append(f"the job has {pods} pods but {expect['nodes']} nodes are intended (one pod per node)")
    if flavor in ("pytorchjob", "ascendjob"):
        key = "pytorchReplicaSpecs" if flavor == "pytorchjob" else "replicaSpecs"
        master = (spec.get(key) or {}).get("Master")
        if master is None or int(master.get("replicas", 1)) != 1:
            problems.append(f"spec.{key}.Master: exactly one Master replica (it is the rendezvous master)")
    if flavor == "volcano":
        if spec.get("schedulerName") != "volcano":
            problems.append("spec.schedulerName: must be 'volcano'")
        if spec.get("minAvailable") != pods:
            problems.append(f"spec.minAvailable is {spec.get('minAvailable')} but the job has {pods} pods (gang scheduling must wait for all)")
        plugins = spec.get("plugins") or {}
        for plugin in ("svc", "env"):
            if plugin not in plugins:
                problems.append(f"spec.plugins: the {plugin!r} plugin is needed (VC_{VOLCANO_TASK.upper()}_HOSTS / VC_TASK_INDEX)")
        for i, task in enumerate(spec.get("tasks") or []):
            if task.get("name") != VOLCANO_TASK:
                problems.append(f"spec.tasks[{i}].name: expected {VOLCANO_TASK!r} (the rendezvous reads VC_{VOLCANO_TASK.upper()}_HOSTS)")
            if "minAvailable" in task and task["minAvailable"] != task.get("replicas", 1):
                problems.append(f"spec.tasks[{i}].minAvailable is {task['minAvailable']} but the task has {task.get('replicas', 1)} pods")
    if flavor == "ascendjob":
        minimum = ((spec.get("runPolicy") or {}).get("schedulingPolicy") or {}).get("minAvailable")
        if minimum != pods:
            problems.append(f"spec.runPolicy.schedulingPolicy.minAvailable is {minimum} but the job has {pods} pods")
        labels = metadata.get("labels") or {}
        for label, value in ASCEND_LABELS.items():
            if label not in labels or (value is not None and labels[label] != value):
                problems.append(f"metadata.labels: AscendJob needs {label}" + (f": {value}" if value else ""))
        if expect["kind"] != "npu":
            problems.append(f"metadata.annotations: an AscendJob runs on NPUs, not {expect['kind']}")
    seen = set()
    for where, count, template in replicas:
        resource, devices = _check_pod(flavor, where, template.get("spec") or {}, expect, problems)
        seen.add((resource, devices))
        if devices is not None and devices != expect["per_node"]:
            problems.append(f"{where}: {devices} {resource} per pod x {pods} pods != world size {expect['world_size']} "
                            f"({expect['per_node']} per node intended)")
    if len(seen) > 1:
        problems.append(f"the replicas request different devices: {sorted(map(str, seen))}")
    if flavor == "pytorchjob" and str(spec.get("nprocPerNode")) != str(expect["per_node"]):
        problems.append(f"spec.nprocPerNode is {spec.get('nprocPerNode')!r}, expected '{expect['per_node']}'")
    return problems


def bundle_problems(manifests: list[dict]) -> list[str]:
    """Rules over a whole file: one job, and the ConfigMaps its pods mount are in it with their keys."""
    jobs = [m for m in manifests if (m.get("apiVersion"), m.get("kind")) in JOB_KINDS]
    if len(jobs) != 1:
        return [f"expected one PyTorchJob, Volcano Job, AscendJob or TrainJob, found {len(jobs)}"]
    job = jobs[0]
    problems = [f"{job.get('kind')} {(job.get('metadata') or {}).get('name')}: {p}" for p in job_problems(job, manifests)]
    configmaps = {(m.get("metadata") or {}).get("name"): m.get("data") or {} for m in manifests if m.get("kind") == "ConfigMap"}
    flavor = JOB_KINDS[(job["apiVersion"], job["kind"])]
    for where, _, template in _replica_templates(flavor, job, manifests, []):
        for volume in (template.get("spec") or {}).get("volumes") or []:
            source = volume.get("configMap")
            if not source:
                continue
            if source.get("name") not in configmaps:
                problems.append(f"{where}: volume {volume.get('name')!r} mounts ConfigMap {source.get('name')!r}, which is not in the file")
                continue
            for item in source.get("items") or []:
                if item.get("key") not in configmaps[source["name"]]:
                    problems.append(f"{where}: ConfigMap {source['name']!r} has no key {item.get('key')!r}")
    return problems


def check_manifests(manifests: list[dict], source: str) -> None:
    """Raise ManifestError naming the first broken rule (and how many more)."""
    problems = bundle_problems(manifests)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ManifestError(f"{source}: {problems[0]}{more}")
