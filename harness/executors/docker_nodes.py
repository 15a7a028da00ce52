"""Several nodes of one run on one Docker engine: a bridge network per run, a container per node.

Each node's container gets its hostname (node0, node1, ...) and the same name as a network alias,
so every node's torchrun reaches node 0's rendezvous by name over the run's own network (gloo on
the CPU). Each node's output goes to ``<run>/nodes/node-<i>.log``; node 0's lines also go to
``train.log`` and the progress display, which is what the results are parsed from.

This is a one-engine setup: it rehearses a real multi-node launch (separate hosts, a network in
between, one failing node) on one machine. NPU/GPU nodes on separate machines talk over the hosts'
NICs with host networking; Slurm (``--executor slurm``) or Kubernetes (``harness k8s``) start those.

The first node to fail (killed, out of memory, non-zero exit) fails the run: the others are
stopped, and the outcome names that node. Containers and the network are removed whatever happens;
leftovers of an earlier attempt of the same run (a harness killed with SIGKILL) are removed first.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.executors.base import LineSink, Outcome
from harness.executors.containers import (STOP_TIMEOUT_S, ContainerLog, EngineLost, catch_up, container_kwargs, discard,
                                          engine_errors, engine_url, follow, lost)
from harness.planning.spec import ContainerSpec

LABEL_RUN = "pspnet-repro.run"  # on the run's network and containers: what to clean up
LABEL_NODE = "pspnet-repro.node"
POLL_S = 0.5
FOLLOW_JOIN_S = 10


@dataclass
class _Node:
    rank: int
    hostname: str
    container: Any
    sink: ContainerLog
    follower: threading.Thread | None = None
    finished: dict = field(default_factory=dict)  # State of the exited container


def node_create_kwargs(spec: ContainerSpec, *, run_id: str, rank: int, client) -> dict:
    """``containers.create`` arguments for one node: on the run's network, its hostname an alias."""
    kwargs = container_kwargs(spec)
    network = kwargs.pop("network_mode")
    kwargs.update(
        name=f"{network}-{spec.hostname}",
        network=network,
        networking_config={network: client.api.create_endpoint_config(aliases=[spec.hostname])},
        labels={LABEL_RUN: run_id, LABEL_NODE: str(rank)},
    )
    return kwargs


class NodeGroup:
    """The containers of one multi-node run and their network."""

    def __init__(self, client, run_id: str, network: str):
        self._client = client
        self._run_id = run_id
        self._network_name = network
        self._network = None
        self._nodes: list[_Node] = []

    # --- start ---------------------------------------------------------------------------------

    def start(self, specs: tuple[ContainerSpec, ...], log_paths: list[Path], train_log: Path, on_line: LineSink) -> None:
        self.remove_leftovers()
        self._network = self._client.networks.create(
            self._network_name, driver="bridge", labels={LABEL_RUN: self._run_id})
        for rank, (spec, log_path) in enumerate(zip(specs, log_paths)):
            # Node 0 also feeds train.log and the progress display; the others only their own log.
            sink = ContainerLog(log_path, on_line if rank == 0 else None, also=train_log if rank == 0 else None)
            container = self._client.containers.create(
                **node_create_kwargs(spec, run_id=self._run_id, rank=rank, client=self._client))
            self._nodes.append(_Node(rank, spec.hostname or f"node{rank}", container, sink))
        for node in self._nodes:  # node 0 first: it holds the rendezvous the others connect to
            node.container.start()
            node.follower = threading.Thread(target=follow, args=(node.container, node.sink),
                                             name=f"follow-{node.hostname}", daemon=True)
            node.follower.start()

    def remove_leftovers(self) -> None:
        """Containers and the network an earlier attempt of this run left (the run lock is ours)."""
        import docker.errors

        for container in self._client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={self._run_id}"}):
            discard(container, stop=False)
        for network in self._client.networks.list(names=[self._network_name]):
            try:
                network.remove()
            except engine_errors() as exc:
                if not isinstance(exc, docker.errors.NotFound):
                    self._engine_error = f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"

    # --- wait ----------------------------------------------------------------------------------

    def wait(self) -> Outcome:
        """Until every node exited 0, or one failed: then the others are stopped. An engine that
        stops answering raises EngineLost (the run fails naming it; stop() removes what it can)."""
        try:
            return self._wait()
        except engine_errors() as exc:
            raise lost(exc) from None

    def _wait(self) -> Outcome:
        failed: list[_Node] = []
        while True:
            running = [node for node in self._nodes if not node.finished]
            for node in running:
                node.container.reload()
                state = node.container.attrs.get("State", {})
                if state.get("Status") in ("exited", "dead"):
                    node.finished = state
            failed = [node for node in self._nodes if node.finished and node.finished.get("ExitCode", -1) != 0]
            if failed or all(node.finished for node in self._nodes):
                break
            time.sleep(POLL_S)
        # The node that died first: the others usually fail right after, on its broken connections.
        first = min(failed, key=lambda node: node.finished.get("FinishedAt", "")) if failed else None
        if first is not None:
            self._stop_containers()
        self._drain()
        node0 = self._nodes[0].container
        outcome = Outcome(
            exit_code=int(first.finished.get("ExitCode", -1)) if first else 0,
            oom_killed=bool(first.finished.get("OOMKilled", False)) if first else False,
            image_id=node0.attrs.get("Image", ""),
            failed_node=first.hostname if first else None,
            details={"disk_full": self.disk_full, "network": self._network_name, "nodes": self.describe_nodes()},
        )
        self.remove()
        if first is not None:
            self._fail_if_engine_stopping(first)
        return outcome

    def _fail_if_engine_stopping(self, first: _Node) -> None:
        """A stopping engine stops every container first (SIGTERM, exit 143) and answers for a
        while longer: a node that 'failed' then was stopped by the engine, which the run's reason
        must say (not 'node0 failed'). The engine is stopping when it no longer answers a ping or
        refuses to remove what the run made."""
        try:
            self._client.ping()
        except engine_errors() as exc:
            raise lost(exc) from None
        if self._engine_error is not None:
            raise EngineLost(f"the Docker engine at {engine_url()} stopped during the run ({first.hostname} exited "
                             f"{first.finished.get('ExitCode')}; then {self._engine_error})")

    # --- stop ----------------------------------------------------------------------------------

    def _stop_containers(self) -> None:
        """SIGTERM every node at once (SIGKILL after the timeout): a stop costs one timeout, not N."""
        def stop(node: _Node) -> None:
            try:
                node.container.stop(timeout=STOP_TIMEOUT_S)
            except Exception:  # gone already, or the engine is: removing is all that is left
                pass

        with ThreadPoolExecutor(max_workers=max(1, len(self._nodes))) as pool:
            list(pool.map(stop, self._nodes))

    def _drain(self) -> None:
        """Every node's log complete: the follow streams end with their containers."""
        for node in self._nodes:
            if node.follower is not None:
                node.follower.join(FOLLOW_JOIN_S)
                if not node.follower.is_alive():
                    try:
                        catch_up(node.container, node.sink)
                    except Exception:
                        pass
                node.follower = None

    _disk_full = False

    @property
    def disk_full(self) -> bool:
        return self._disk_full or any(node.sink.disk_full for node in self._nodes)

    def stop(self) -> None:
        """Ctrl-C, timeout or an executor error: stop every node, keep their logs, remove all."""
        self._stop_containers()
        self._drain()
        self.remove()

    _engine_error: str | None = None  # what the engine said when it would not remove the network

    def remove(self) -> None:
        """Idempotent: close the logs, remove the containers, then the network. An engine that is
        gone (or answers 500 while it stops) leaves them to the run's next attempt (remove_leftovers)."""
        import docker.errors

        nodes, self._nodes = self._nodes, []
        for node in nodes:
            node.sink.close()
            self._disk_full = self._disk_full or node.sink.disk_full
            discard(node.container, stop=False)
        if self._network is not None:
            network, self._network = self._network, None
            try:
                network.remove()
            except engine_errors() as exc:
                if not isinstance(exc, docker.errors.NotFound):
                    self._engine_error = f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"

    def describe_nodes(self) -> list[dict]:
        return [
            {"node": node.rank, "hostname": node.hostname, "container_id": node.container.id,
             "exit_code": node.finished.get("ExitCode") if node.finished else None,
             "oom_killed": bool(node.finished.get("OOMKilled", False)) if node.finished else False}
            for node in self._nodes
        ]
