"""What a Kubernetes submission needs beyond the recipe: where it runs and what it mounts."""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.core.errors import BadInput
from harness.core.words import image_reference

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
        image_reference(self.image, "--image")
        if len(self.queue) > 63 or not _DNS_LABEL.match(self.queue):
            raise BadInput(f"--queue {self.queue!r}: expected a Volcano queue name (lowercase letters, digits, '-')")
        if self.dataset_subpath is not None:
            check_subpath(self.dataset_subpath)
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


def check_subpath(path: str) -> None:
    """A subPath inside the PVC: relative, no '..', printable ASCII (Kubernetes refuses the first two
    only when the pod starts; a manifest is checked before it is written)."""
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or not path.isascii() or not path.isprintable():
        raise BadInput(f"--dataset-subpath {path!r}: expected a relative path inside the dataset PVC "
                       "(no leading '/', no '..', printable ASCII)")



def job_name(recipe_name: str, suffix: str) -> str:
    """A DNS-1123 name for the job: pods and services derive theirs from it, so keep it short."""
    base = re.sub(r"[^a-z0-9-]+", "-", recipe_name.lower()).strip("-")[:32].strip("-")
    return f"pspnet-{base}-{suffix}"
