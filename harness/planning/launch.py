"""Per-node launches of a multi-node run: one torchrun per node, its rendezvous resolved per
environment.

Every node runs the same torchrun with explicit ``--nnodes``, ``--node_rank``,
``--nproc_per_node``, ``--master_addr`` and ``--master_port``. Only where the master's address and
the node's rank come from differs:

- the harness's own orchestration (local processes, one Docker container per node): literal
  values it assigns itself (node 0's hostname, node ranks 0..N-1);
- a scheduler (Slurm, Kubernetes operators): shell expressions over the variables the scheduler
  sets on each node, evaluated there (``NodeLaunch.script()`` runs them in ``sh``).

The operators' ``WORLD_SIZE`` is never used: PyTorchJob means processes, other operators pods.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field

from harness.planning.spec import PlanLayout

# The harness names its own nodes node0, node1, ...: the Docker executor gives each node's
# container that hostname on the run's network, so node 0's name is the master address.
NODE_HOSTNAME = "node{}"
LOCAL_MASTER_ADDR = "127.0.0.1"
VOLCANO_TASK = "node"  # one Volcano task of N pods; its hosts are in VC_NODE_HOSTS

# Slurm: the first node of the allocation is the master. Node names need not resolve (a test
# cluster runs several slurmd on one host), so take its NodeAddr, which always does.
_SLURM_MASTER = (
    'MASTER_ADDR="$(scontrol show node "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'
    " | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p')\""
)


@dataclass(frozen=True)
class Rendezvous:
    """Where each node learns the master's address and port and its own node rank.

    ``master_addr``/``master_port``/``node_rank`` are literals, or shell expressions (``$VAR``)
    that ``setup`` lines and the scheduler's environment define on the node. ``node_rank`` None
    means the harness numbers the nodes itself (0..N-1).
    """

    name: str
    master_addr: str
    master_port: str
    node_rank: str | None = None
    setup: tuple[str, ...] = ()
    source: str = ""

    def rank_of(self, node: int) -> str:
        return self.node_rank if self.node_rank is not None else str(node)

    def to_dict(self) -> dict:
        return asdict(self)


def harness_rendezvous(layout: PlanLayout, master_port: int) -> Rendezvous:
    """The harness's own nodes: local processes on this host, or one Docker container per node."""
    if layout.in_container:
        return Rendezvous(
            layout.value, NODE_HOSTNAME.format(0), str(master_port),
            source="one container per node on the run's bridge network; node 0's hostname is the master",
        )
    return Rendezvous(layout.value, LOCAL_MASTER_ADDR, str(master_port), source="every node's torchrun on this host")


def scheduler_rendezvous(name: str, master_port: int) -> Rendezvous:
    """The rendezvous under a scheduler, from the variables it sets on every node."""
    if name not in _SCHEDULER_RENDEZVOUS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    return _SCHEDULER_RENDEZVOUS[name](str(master_port))


_VOLCANO_HOSTS = f"VC_{VOLCANO_TASK.upper()}_HOSTS"
# Each scheduler's rendezvous for a master port, by the scheduler's name.
_SCHEDULER_RENDEZVOUS = {
    "slurm": lambda port: Rendezvous(
        "slurm", "$MASTER_ADDR", port, "$SLURM_NODEID", setup=(_SLURM_MASTER,),
        source="srun runs one task per node: SLURM_NODEID is the node rank; the master is the allocation's "
        "first node, its NodeAddr from scontrol",
    ),
    "pytorchjob": lambda port: Rendezvous(
        "pytorchjob", "$MASTER_ADDR", "$MASTER_PORT", "$RANK",
        source="Kubeflow training-operator v1: MASTER_ADDR/MASTER_PORT name the Master pod's service and "
        "pytorchjob-port; RANK is the pod's rank (Master 0, Worker i -> i+1)",
    ),
    "volcano": lambda port: Rendezvous(
        "volcano", "$MASTER_ADDR", port, "$VC_TASK_INDEX", setup=(f'MASTER_ADDR="${{{_VOLCANO_HOSTS}%%,*}}"',),
        source=f"Volcano svc/env plugins: {_VOLCANO_HOSTS} lists the task's pods (the first is the master), "
        "VC_TASK_INDEX is the pod's index",
    ),
    "ascendjob": lambda port: Rendezvous(
        "ascendjob", "$MASTER_ADDR", "$MASTER_PORT", "$RANK",
        source="MindCluster ascend-operator (framework pytorch): MASTER_ADDR/MASTER_PORT of the Master pod and "
        "ascendjob-port; RANK is the pod's rank",
    ),
    "trainjob": lambda port: Rendezvous(
        "trainjob", "$PET_MASTER_ADDR", "$PET_MASTER_PORT", "$PET_NODE_RANK",
        source="Kubeflow Trainer v2 torch plugin (pkg/runtime/framework/plugins/torch/torch.go, "
        "pkg/constants/constants.go, v2.3.0): PET_MASTER_ADDR is <trainjob>-node-0-0.<trainjob>, PET_MASTER_PORT "
        "29500, PET_NODE_RANK the Job completion index; PET_NNODES/PET_NPROC_PER_NODE are checked against the plan",
    ),
}
SCHEDULERS = tuple(_SCHEDULER_RENDEZVOUS)


@dataclass(frozen=True)
class NodeLaunch:
    """What runs on one node: its torchrun (exec form) and the environment it adds.

    Arguments holding ``$`` are shell expressions for the scheduler's variables: run them through
    ``script()`` (``sh -c``), never as exec form.
    """

    node_rank: int
    argv: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    setup: tuple[str, ...] = ()

    def command_line(self) -> str:
        """torchrun as one sh command line (expressions expand, everything else is literal)."""
        return " ".join(shell_word(arg) for arg in self.argv)

    def script(self) -> str:
        """A POSIX sh script: the setup lines, then ``exec`` torchrun."""
        return "\n".join(("set -eu", *self.setup, f"exec {self.command_line()}"))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["setup"] = list(self.setup)
        return data


# The only expressions a launch may hold: the schedulers' variables above. Any other '$' (a path
# with '$(...)' in it) is literal text, never run.
SCHEDULER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "SLURM_NODEID", "RANK", "VC_TASK_INDEX",
                       "PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_NODE_RANK")
_EXPRESSION = re.compile(r"\$(?:%s)(?![A-Za-z0-9_])" % "|".join(SCHEDULER_VARIABLES))


def shell_word(arg: str) -> str:
    """``arg`` as one sh word: the scheduler variables in it expand (inside double quotes), every
    other character is literal; an argument without them is single-quoted."""
    if not _EXPRESSION.search(arg):
        return shlex.quote(arg)
    pieces, start = [], 0
    for match in _EXPRESSION.finditer(arg):
        pieces += [_double_quoted_literal(arg[start:match.start()]), match.group(0)]
        start = match.end()
    return '"' + "".join(pieces) + _double_quoted_literal(arg[start:]) + '"'


def _double_quoted_literal(text: str) -> str:
    # Inside "...", only \ " ` and $ are special (history expansion is off in scripts).
    return re.sub(r'([\\"`$])', r"\\\1", text)


def torchrun_argv(
    python: str, worker: tuple[str, ...], *, nnodes: int, nproc_per_node: int, node_rank: str, master_addr: str,
    master_port: str,
) -> tuple[str, ...]:
    return (
        python, "-m", "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        f"--nproc_per_node={nproc_per_node}",
        f"--master_addr={master_addr}",
        f"--master_port={master_port}",
        *worker,
    )


def build_node_launches(
    *, python: str, worker: tuple[str, ...], nodes: int, nproc_per_node: int, rendezvous: Rendezvous,
    environment: dict[str, str], node_environment: tuple[dict[str, str], ...] = (), named_hosts: bool = False,
) -> tuple[NodeLaunch, ...]:
    """One launch per node. ``node_environment[i]`` adds node i's own variables (e.g. HCCL_IF_IP);
    ``named_hosts``: each node is a container the harness names (NODE_HOSTNAME)."""
    launches = []
    for node in range(nodes):
        argv = torchrun_argv(
            python, worker, nnodes=nodes, nproc_per_node=nproc_per_node, node_rank=rendezvous.rank_of(node),
            master_addr=rendezvous.master_addr, master_port=rendezvous.master_port,
        )
        extra = node_environment[node] if node < len(node_environment) else {}
        hostname = NODE_HOSTNAME.format(node) if named_hosts else None
        launches.append(NodeLaunch(node, argv, {**environment, **extra}, hostname, rendezvous.setup))
    return tuple(launches)


def trainer_counts_check(nodes: int, nproc_per_node: int) -> str:
    """A sh line stopping a Trainer v2 pod whose PET_NNODES/PET_NPROC_PER_NODE disagree with the plan.

    torchrun takes the plan's literal counts; Trainer computes its own from the TrainJob, and its
    torch plugin counts only resources named *gpu*: with ``huawei.com/Ascend910`` an unset
    ``numProcPerNode`` becomes the CPU count. A mismatch means a mis-edited manifest: fail loudly.
    """
    return (f'if [ "${{PET_NNODES:-}}" != {nodes} ] || [ "${{PET_NPROC_PER_NODE:-}}" != {nproc_per_node} ]; then '
            f'echo "Trainer set PET_NNODES=${{PET_NNODES:-}} PET_NPROC_PER_NODE=${{PET_NPROC_PER_NODE:-}}; '
            f'the plan is {nodes} node(s) x {nproc_per_node}" >&2; exit 1; fi')


def node_launches(plan, rendezvous: Rendezvous) -> tuple[NodeLaunch, ...]:
    """A plan's nodes under ``rendezvous`` (e.g. ``scheduler_rendezvous('slurm', plan.master_port)``)."""
    return build_node_launches(
        python=plan.python, worker=plan.worker, nodes=plan.nodes, nproc_per_node=plan.nproc_per_node,
        rendezvous=rendezvous, environment=plan.launch.environment, node_environment=plan.node_environment,
    )
