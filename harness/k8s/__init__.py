"""Kubernetes manifests for multi-node runs: Kubeflow PyTorchJob, Volcano Job, MindCluster AscendJob.

The harness does not talk to a cluster: ``harness k8s`` writes manifests built with the official
Python models (``kubernetes`` client, ``kubeflow-training``; the optional ``k8s`` extra), checked by
``harness.k8s.validate``. Those packages import slowly, so only the ``k8s`` command imports this
package's builders.
"""
from __future__ import annotations

FLAVORS = ("pytorchjob", "volcano", "ascendjob")
