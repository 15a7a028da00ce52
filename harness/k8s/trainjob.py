"""Kubeflow Trainer v2 (``trainer.kubeflow.org/v1alpha1``): a ``TrainJob`` and the namespaced
``TrainingRuntime`` it runs on, built with the official ``kubeflow-trainer-api`` models (pinned to
the Trainer release the tests validate against, v2.3.0).

The runtime holds the pod: one JobSet ``replicatedJob`` named ``node`` whose Job template carries
Trainer's ancestor label ``trainer`` and whose container is named ``node`` (the torch plugin injects
its ``PET_*`` variables into exactly that container). The TrainJob always states ``numNodes``,
``numProcPerNode`` and ``resourcesPerNode``: Trainer's torch plugin counts only resources whose name
contains "gpu" (pkg/runtime/runtime.go GetNumGPUPerNode), so an unset ``numProcPerNode`` on
``huawei.com/Ascend910`` would become the node's CPU count.

With ``--runtime`` the harness writes no runtime: the TrainJob then carries the image, the pod
script and its environment in ``spec.trainer`` and the mounts in a ``runtimePatches`` entry. Trainer
cannot patch ``hostNetwork`` into a runtime, so NPU recipes (HCCL needs it) are refused there.
"""
from __future__ import annotations

from harness.core.errors import BadInput
from harness.k8s.options import K8sOptions, runtime_reference

API_VERSION = "trainer.kubeflow.org/v1alpha1"
API_GROUP = "trainer.kubeflow.org"
NODE = "node"  # Trainer's replicatedJob and container name for the training nodes (constants.Node)
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
ANCESTOR_TRAINER = "trainer"
VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
PATCH_MANAGER = "pspnet-repro"
TRAINER_PORT = 29500  # the master port Trainer gives every TrainJob (constants.ContainerTrainerPort)
# Trainer's torch plugin refuses these in spec.trainer.env (constants.TorchRunReservedEnvNames).
RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")


def check_options(where: str, device_kind: str, options: K8sOptions) -> None:
    if options.runtime and device_kind == "npu":
        raise BadInput(f"{where}: device.kind: --runtime: NPU pods need hostNetwork (HCCL), which a TrainJob cannot patch "
                       "into a runtime; leave --runtime out so the harness writes the TrainingRuntime")


def trainjob_manifests(metadata: dict, template: dict, nodes: int, count: int, options: K8sOptions) -> list[dict]:
    """[TrainingRuntime, TrainJob], or [TrainJob] alone when ``options.runtime`` names one on the cluster.

    ``metadata`` and ``template`` are the serialized job metadata and node pod template (built with
    the kubernetes models, as for the other flavours); they become Trainer's models here.
    """
    from kubeflow_trainer_api import models as tm

    pod = template["spec"]
    [container] = pod["containers"]
    resources = tm.IoK8sApiCoreV1ResourceRequirements.from_dict(container["resources"])
    trainer = tm.TrainerV1alpha1Trainer(num_nodes=nodes, num_proc_per_node=count, resources_per_node=resources)
    job_metadata = tm.IoK8sApimachineryPkgApisMetaV1ObjectMeta.from_dict(metadata)
    if options.runtime:
        kind, name = runtime_reference(options.runtime)
        trainer.image = container["image"]
        trainer.command = container["command"]
        trainer.env = [tm.IoK8sApiCoreV1EnvVar.from_dict(env) for env in container.get("env") or []]
        patch = _runtime_patch(tm, pod, container)
        job = _trainjob(tm, job_metadata, kind, name, trainer, [patch])
        return [job.to_dict()]
    # The runtime is this run's own: it carries the job's name, labels and annotations.
    runtime = tm.TrainerV1alpha1TrainingRuntime(
        api_version=API_VERSION, kind="TrainingRuntime", metadata=tm.IoK8sApimachineryPkgApisMetaV1ObjectMeta.from_dict(metadata),
        spec=_runtime_spec(tm, template, nodes, options),
    )
    job = _trainjob(tm, job_metadata, "TrainingRuntime", metadata["name"], trainer, None)
    return [runtime.to_dict(), job.to_dict()]


def _trainjob(tm, metadata, kind: str, name: str, trainer, patches) -> object:
    return tm.TrainerV1alpha1TrainJob(
        api_version=API_VERSION, kind="TrainJob", metadata=metadata,
        spec=tm.TrainerV1alpha1TrainJobSpec(
            runtime_ref=tm.TrainerV1alpha1RuntimeRef(api_group=API_GROUP, kind=kind, name=name),
            trainer=trainer, runtime_patches=patches,
        ),
    )


def _runtime_spec(tm, template: dict, nodes: int, options: K8sOptions):
    pod_template = template
    jobset_metadata = None
    pod_group_policy = None
    if options.gang == "volcano":
        # Trainer creates the PodGroup; Volcano only honours it for pods its scheduler places, and
        # takes the queue from the JobSet template's annotation (docs/operator-guides/job-scheduling/volcano.md).
        pod_template = {**template, "spec": {**template["spec"], "schedulerName": "volcano"}}
        pod_group_policy = tm.TrainerV1alpha1PodGroupPolicy(volcano=tm.TrainerV1alpha1VolcanoPodGroupPolicySource())
        jobset_metadata = tm.IoK8sApimachineryPkgApisMetaV1ObjectMeta(annotations={VOLCANO_QUEUE_ANNOTATION: options.queue})
    node_job = tm.JobsetV1alpha2ReplicatedJob(
        name=NODE, replicas=1,  # one Job; Trainer sets its parallelism to numNodes
        template=tm.IoK8sApiBatchV1JobTemplateSpec(
            metadata=tm.IoK8sApimachineryPkgApisMetaV1ObjectMeta(labels={ANCESTOR_LABEL: ANCESTOR_TRAINER}),
            spec=tm.IoK8sApiBatchV1JobSpec(
                backoff_limit=0,  # a failed rank fails the run, as with the other flavours
                template=tm.IoK8sApiCoreV1PodTemplateSpec.from_dict(pod_template),
            ),
        ),
    )
    return tm.TrainerV1alpha1TrainingRuntimeSpec(
        ml_policy=tm.TrainerV1alpha1MLPolicy(num_nodes=nodes, torch=tm.TrainerV1alpha1TorchMLPolicySource()),
        pod_group_policy=pod_group_policy,
        template=tm.TrainerV1alpha1JobSetTemplateSpec(
            metadata=jobset_metadata, spec=tm.JobsetV1alpha2JobSetSpec(replicated_jobs=[node_job]),
        ),
    )


def _runtime_patch(tm, pod: dict, container: dict):
    """The pod's volumes and security settings, patched into a runtime the harness did not write."""
    container_patch = tm.TrainerV1alpha1ContainerPatch(
        name=NODE,
        volume_mounts=[tm.IoK8sApiCoreV1VolumeMount.from_dict(mount) for mount in container["volumeMounts"]],
        security_context=tm.IoK8sApiCoreV1SecurityContext.from_dict(container.get("securityContext")),
    )
    pod_patch = tm.TrainerV1alpha1PodSpecPatch(
        containers=[container_patch],
        volumes=[tm.IoK8sApiCoreV1Volume.from_dict(volume) for volume in pod["volumes"]],
        security_context=tm.IoK8sApiCoreV1PodSecurityContext.from_dict(pod.get("securityContext")),
    )
    return tm.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        training_runtime_spec=tm.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=tm.TrainerV1alpha1JobSetTemplatePatch(
                spec=tm.TrainerV1alpha1JobSetSpecPatch(replicated_jobs=[tm.TrainerV1alpha1ReplicatedJobPatch(
                    name=NODE, template=tm.TrainerV1alpha1JobTemplatePatch(
                        spec=tm.TrainerV1alpha1JobSpecPatch(template=tm.TrainerV1alpha1PodTemplatePatch(spec=pod_patch)),
                    ),
                )]),
            ),
        ),
    )
