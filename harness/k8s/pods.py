"""One node's pod template, built with the official ``kubernetes`` client models.

Per device kind: NPUs as ``huawei.com/Ascend910`` and GPUs as ``nvidia.com/gpu`` (requests ==
limits, one pod per node holding all its devices), ``/dev/shm`` a memory ``emptyDir`` sized like the
Docker executor's shm, ``hostNetwork`` for HCCL on NPUs. No pod is privileged; CPU and GPU pods run
as a non-root user. NPU pods run as root: the driver's device nodes belong to the host's HwHiAiUser,
whose uid differs between hosts (the reason CANN images run as root, see plan.build_container).
"""
from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client as k8s

from harness.k8s.options import DATASET_MOUNT, RESULTS_MOUNT, RUN_FILES_MOUNT, SHM_MOUNT, K8sOptions
from harness.planning.backends import npu
from harness.planning.plan import SHM_PER_DEVICE_GB
from harness.planning.ranktable import CONTAINER_RANK_TABLE

DEVICE_RESOURCE = {"npu": "huawei.com/Ascend910", "gpu": "nvidia.com/gpu", "cpu": "cpu"}
NON_ROOT_ID = 1000
ANNOTATION_PREFIX = "pspnet-repro"


@dataclass(frozen=True)
class PodSettings:
    """What differs between nodes' pods of one job, and between operators."""

    container_name: str
    port_name: str | None
    master_port: int
    script: str
    labels: dict[str, str]


def device_resources(kind: str, count: int) -> k8s.V1ResourceRequirements:
    amount = {DEVICE_RESOURCE[kind]: str(count)}
    # Requests == limits: extended resources must be, and it gives the pod a guaranteed share.
    return k8s.V1ResourceRequirements(requests=dict(amount), limits=dict(amount))


def _volumes(options: K8sOptions, run_files_configmap: str, configmap_paths: dict[str, str], kind: str, count: int,
             rank_table_configmap: str | None) -> tuple[list, list]:
    volumes = [
        k8s.V1Volume(name="dataset", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=options.dataset_pvc, read_only=True)),
        k8s.V1Volume(name="results", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=options.results_pvc)),
        k8s.V1Volume(name="run-files", config_map=k8s.V1ConfigMapVolumeSource(
            name=run_files_configmap, items=[k8s.V1KeyToPath(key=k, path=p) for k, p in sorted(configmap_paths.items())])),
        k8s.V1Volume(name="shm", empty_dir=k8s.V1EmptyDirVolumeSource(
            medium="Memory", size_limit=f"{SHM_PER_DEVICE_GB[kind] * count}Gi")),
    ]
    mounts = [
        k8s.V1VolumeMount(name="dataset", mount_path=DATASET_MOUNT, read_only=True, sub_path=options.dataset_subpath),
        k8s.V1VolumeMount(name="results", mount_path=RESULTS_MOUNT),
        k8s.V1VolumeMount(name="run-files", mount_path=RUN_FILES_MOUNT, read_only=True),
        k8s.V1VolumeMount(name="shm", mount_path=SHM_MOUNT),
    ]
    if rank_table_configmap:
        volumes.append(k8s.V1Volume(name="rank-table", config_map=k8s.V1ConfigMapVolumeSource(name=rank_table_configmap)))
        mounts.append(k8s.V1VolumeMount(name="rank-table", mount_path=CONTAINER_RANK_TABLE.rsplit("/", 1)[0], read_only=True))
    if kind == "npu":
        # The driver's libraries and tools, as the Docker executor's 'plain' NPU runtime binds them.
        for index, path in enumerate(npu.DRIVER_BINDS):
            volumes.append(k8s.V1Volume(name=f"ascend-driver-{index}", host_path=k8s.V1HostPathVolumeSource(path=path)))
            mounts.append(k8s.V1VolumeMount(name=f"ascend-driver-{index}", mount_path=path, read_only=True))
    return volumes, mounts


def _environment(kind: str, environment: dict[str, str], hccl_from_pod_ip: bool) -> list:
    env = [k8s.V1EnvVar(name="HOME", value="/tmp"), k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1")]
    env += [k8s.V1EnvVar(name=name, value=value) for name, value in environment.items()]
    if hccl_from_pod_ip:
        # hostNetwork: the pod's IP is its node's, the address HCCL's host sockets must use.
        env.append(k8s.V1EnvVar(name="HCCL_IF_IP", value_from=k8s.V1EnvVarSource(
            field_ref=k8s.V1ObjectFieldSelector(field_path="status.podIP"))))
    return env


def pod_template(*, kind: str, count: int, options: K8sOptions, settings: PodSettings, environment: dict[str, str],
                 run_files_configmap: str, configmap_paths: dict[str, str],
                 rank_table_configmap: str | None = None) -> k8s.V1PodTemplateSpec:
    volumes, mounts = _volumes(options, run_files_configmap, configmap_paths, kind, count, rank_table_configmap)
    non_root = kind != "npu"
    hccl_from_pod_ip = kind == "npu" and "HCCL_IF_IP" not in environment and "HCCL_SOCKET_IFNAME" not in environment
    container = k8s.V1Container(
        name=settings.container_name,
        image=options.image,
        command=["/bin/sh", "-c", settings.script],
        env=_environment(kind, environment, hccl_from_pod_ip),
        ports=[k8s.V1ContainerPort(name=settings.port_name, container_port=settings.master_port)] if settings.port_name else None,
        resources=device_resources(kind, count),
        volume_mounts=mounts,
        security_context=k8s.V1SecurityContext(
            privileged=False,
            allow_privilege_escalation=False,
            run_as_non_root=True if non_root else None,
            capabilities=k8s.V1Capabilities(drop=["ALL"]) if non_root else None,
        ),
    )
    pod_security = (
        k8s.V1PodSecurityContext(run_as_user=NON_ROOT_ID, run_as_group=NON_ROOT_ID, fs_group=NON_ROOT_ID, run_as_non_root=True)
        if non_root else None
    )
    host_network = kind == "npu"  # HCCL's links go between the hosts' own interfaces
    spec = k8s.V1PodSpec(
        containers=[container],
        volumes=volumes,
        restart_policy="Never",  # a failed rank fails the job; `harness run --resume` style retries are explicit
        host_network=host_network or None,
        dns_policy="ClusterFirstWithHostNet" if host_network else None,
        security_context=pod_security,
    )
    return k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=dict(settings.labels)), spec=spec)
