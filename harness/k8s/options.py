"""What a Kubernetes submission needs beyond the recipe: where it runs and what it mounts."""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import BadInput

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Where the pods see things. The results PVC holds the run store (runs/<run-id>/), so
# `harness report --results <the PVC's contents>` reads Kubernetes runs like any other.
RESULTS_MOUNT = "/results"
DATASET_MOUNT = "/data/VOCdevkit"
RUN_FILES_MOUNT = "/workspace/inputs/run"
SHM_MOUNT = "/dev/shm"


@dataclass(frozen=True)
class K8sOptions:
    flavor: str
    namespace: str
    image: str
    dataset_pvc: str
    results_pvc: str
    dataset_subpath: str | None = None
    queue: str = "default"  # Volcano / AscendJob scheduling queue
    # trainjob only: a runtime already on the cluster ("NAME": ClusterTrainingRuntime,
    # "trainingruntime/NAME": namespaced) instead of the TrainingRuntime the harness writes.
    runtime: str | None = None
    gang: str | None = None  # trainjob only: "volcano" sets the runtime's podGroupPolicy.volcano

    def __post_init__(self):
        for name in ("namespace", "dataset_pvc", "results_pvc"):
            value = getattr(self, name)
            if len(value) > 63 or not _DNS_LABEL.match(value):
                raise BadInput(f"--{name.replace('_', '-')} {value!r}: expected a Kubernetes name (lowercase letters, digits, '-')")
        if not self.image or any(c.isspace() for c in self.image):
            raise BadInput(f"--image {self.image!r}: expected an image reference")
        if (self.runtime or self.gang) and self.flavor != "trainjob":
            option = "--runtime" if self.runtime else "--gang"
            raise BadInput(f"{option}: only for --flavor trainjob (volcano and ascendjob always gang-schedule)")
        if self.runtime is not None:
            name = runtime_reference(self.runtime)[1]
            if len(name) > 63 or not _DNS_LABEL.match(name):
                raise BadInput(f"--runtime {self.runtime!r}: expected NAME (a ClusterTrainingRuntime) or "
                               "trainingruntime/NAME, NAME a Kubernetes name (lowercase letters, digits, '-')")
            if self.gang:
                raise BadInput("--gang: the runtime named by --runtime sets its own podGroupPolicy; leave out one of them")


def runtime_reference(runtime: str) -> tuple[str, str]:
    """``--runtime`` -> (kind, name) of Trainer's runtimeRef."""
    prefix, _, name = runtime.rpartition("/")
    if prefix.lower() == "trainingruntime":
        return "TrainingRuntime", name
    if prefix.lower() in ("", "clustertrainingruntime"):
        return "ClusterTrainingRuntime", name
    return prefix, runtime  # an unknown kind: the name check refuses the whole value


def job_name(recipe_name: str, suffix: str) -> str:
    """A DNS-1123 name for the job: pods and services derive theirs from it, so keep it short."""
    base = re.sub(r"[^a-z0-9-]+", "-", recipe_name.lower()).strip("-")[:32].strip("-")
    return f"pspnet-{base}-{suffix}"
