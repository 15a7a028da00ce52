"""Kubernetes manifests for multi-node runs: Kubeflow PyTorchJob, Volcano Job, MindCluster AscendJob,
Kubeflow Trainer v2 TrainJob.

The harness does not talk to a cluster: ``harness k8s`` writes manifests built with the official
Python models (``kubernetes`` client, ``kubeflow-training``, ``kubeflow-trainer-api``; the optional ``k8s`` extra), checked by
``harness.k8s.validate``. Those packages import slowly, so only the ``k8s`` command imports this
package's builders.

Stage: Kubernetes manifests for a plan, and their validation (no cluster is contacted). May import:
harness.results, harness.worker, harness.executors, harness.data, harness.planning, harness.store,
harness.core (checked by lint-imports; see docs/architecture.md).
"""
from __future__ import annotations

FLAVORS = ("pytorchjob", "volcano", "ascendjob", "trainjob")
GANGS = ("volcano",)  # --gang for trainjob: Trainer v2 podGroupPolicy plugins the harness writes
