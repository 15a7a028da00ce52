"""Recipe -> plan: the launch command, environment, container spec and worker job. Pure: nothing
here touches the disk, Docker or the network, so every shipped recipe's plan is testable here;
the host's facts (a free rendezvous port included) come in ``PlanInputs``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import PurePosixPath

from harness.planning.backends import cpu as cpu_backend
from harness.planning.backends import get_backend
from harness.planning.launch import (NODE_HOSTNAME, SCHEDULERS, NodeLaunch, build_node_launches, harness_rendezvous,
                                      scheduler_rendezvous)
from harness.planning.ranktable import CONTAINER_RANK_TABLE
from harness.planning.recipe import Recipe
from harness.planning.spec import BindMount, ContainerSpec, LaunchSpec, PlanLayout
from harness.planning.tracking import job_tracking
from harness.store.job import JOB_FILE, Job, TrainSettings
from harness.store.layout import CONFIGS_DIR, WORK_DIR

Executor = str  # an executor name; the layout of its paths is a PlanLayout

CONTAINER_RUN_DIR = "/workspace/run"
CONTAINER_DATA_DIR = "/data/VOCdevkit"
CONTAINER_INPUTS_DIR = "/workspace/inputs"
CONTAINER_USER = "1000:1000"
MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500  # torchrun's; a plan for a real run gets a probed free port instead

# Data loader workers share memory through /dev/shm; Docker's 64 MB default kills them.
SHM_PER_DEVICE_GB = {"cpu": 1, "gpu": 4, "npu": 4}


CPU_THREADS_VARIABLE = "PSPNET_CPU_THREADS"  # read by execute.plan_inputs into PlanInputs.cpu_threads


@dataclass(frozen=True)
class PlanInputs:
    """The facts about this machine a plan depends on, passed in so planning stays pure."""

    run_dir: str
    dataset_dir: str  # the VOCdevkit folder on the host
    config_name: str  # the recipe's config file name, copied into <run>/configs/
    python: str = "python"
    pretrained_host_path: str | None = None
    checkpoint_host_path: str | None = None
    resume: bool = False
    # uid:gid for CPU/GPU containers: the invoking user's, so results stay theirs; for root, 1000.
    container_user: str = CONTAINER_USER
    rank_table_host_path: str | None = None  # the recipe's device.rank_table, resolved
    # The optional NPU driver pieces this host has (backends.npu.present_optional_paths()):
    # mounted when present, a warning when not.
    optional_host_paths: tuple[str, ...] = ()
    # A free port on this host for multi-rank rendezvous (``harness.core.ports.free_port``, probed by
    # ``execute.plan_inputs``); None: torchrun's default, DEFAULT_MASTER_PORT.
    master_port: int | None = None
    # PSPNET_CPU_THREADS: torch threads per CPU rank (OMP_NUM_THREADS); None: torch's default for
    # one rank (every core), 1 each for several.
    cpu_threads: int | None = None
    # The thread variables (PSPNET_CPU_THREADS, OMP_*, GOMP_*) the caller set: then CPU ranks get
    # theirs, not backends.cpu.THREAD_DEFAULTS.
    user_thread_settings: tuple[str, ...] = ()
    # The cores idle when the run started, when fewer than this host has (execute.free_cpus);
    # None: all idle (or not measured). A single CPU rank on this host then uses that many threads.
    free_cpus: int | None = None


@dataclass(frozen=True)
class Plan:
    recipe_name: str
    mode: str
    executor: Executor
    backend: str
    dist_backend: str
    world_size: int
    device_ids: tuple[int, ...]
    job: Job
    launch: LaunchSpec
    container: ContainerSpec | None
    # Multi-node (harness/planning/launch.py): world_size = nodes x nproc_per_node. ``launch`` is node 0's;
    # ``node_launches`` are every node's under this plan's executor; harness.planning.launch.node_launches
    # gives them under a scheduler's rendezvous from the fields below.
    nodes: int = 1
    nproc_per_node: int = 1
    python: str = "python"
    worker: tuple[str, ...] = ()  # one rank's command after the interpreter: -m harness.worker --job ...
    master_port: int | None = None  # multi-rank rendezvous; None for one rank
    node_environment: tuple[dict[str, str], ...] = ()  # node i's own variables (HCCL_IF_IP)
    node_launches: tuple[NodeLaunch, ...] = ()
    executor_options: dict[str, str] = field(default_factory=dict)  # e.g. Slurm's partition (execute.planned)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["job"] = self.job.to_dict()
        data["launch"] = self.launch.to_dict()
        data["container"] = self.container.to_dict() if self.container else None
        for key in ("nodes", "nproc_per_node", "python", "worker", "node_environment", "node_launches"):
            del data[key]  # a one-node plan records no node fields; a multi-node one has them under nodes
        if not self.executor_options:
            del data["executor_options"]
        if self.nodes > 1:
            data["nodes"] = describe_nodes(self)
        return data


def describe_nodes(plan: Plan) -> dict:
    """Every node's launch under the plan's executor, and how each scheduler resolves the rendezvous."""
    return {
        "count": plan.nodes,
        "nproc_per_node": plan.nproc_per_node,
        "world_size": plan.world_size,
        "master_port": plan.master_port,
        "launches": [launch.to_dict() for launch in plan.node_launches],
        "rendezvous": {
            name: scheduler_rendezvous(name, plan.master_port).to_dict() for name in SCHEDULERS
        },
    }


def worker_argv(python: str, job_path: str, world_size: int, master_port: int = DEFAULT_MASTER_PORT) -> tuple[str, ...]:
    worker = ("-m", "harness.worker", "--job", job_path)
    if world_size == 1:
        return (python, *worker)
    return (
        python,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={world_size}",
        "--nnodes=1",
        f"--master_addr={MASTER_ADDR}",
        f"--master_port={master_port}",
        *worker,
    )


def _paths(inputs: PlanInputs, layout: PlanLayout) -> dict[str, str | None]:
    """Where the worker sees the run folder, data, weights and checkpoint."""
    if not layout.in_container:
        return {
            "run": inputs.run_dir,
            "data": inputs.dataset_dir,
            "pretrained": inputs.pretrained_host_path,
            "checkpoint": inputs.checkpoint_host_path,
        }
    return {
        "run": CONTAINER_RUN_DIR,
        "data": CONTAINER_DATA_DIR,
        "pretrained": _container_input(inputs.pretrained_host_path, "pretrained"),
        "checkpoint": _container_input(inputs.checkpoint_host_path, "checkpoint"),
    }


def _container_input(host_path: str | None, role: str) -> str | None:
    if host_path is None or "://" in host_path:
        return host_path  # URLs are fetched by mmengine inside the container
    return f"{CONTAINER_INPUTS_DIR}/{role}/{PurePosixPath(host_path).name}"


def build_job(recipe: Recipe, inputs: PlanInputs, layout: PlanLayout | str) -> Job:
    paths = _paths(inputs, PlanLayout(layout))
    run = PurePosixPath(paths["run"])
    train = recipe.train
    pretrained = paths["pretrained"] if inputs.pretrained_host_path else recipe.model.pretrained
    return Job(
        recipe_name=recipe.name,
        mode=recipe.mode,
        device_kind=recipe.device.kind,
        world_size=recipe.device.world_size,
        config=str(run / CONFIGS_DIR / inputs.config_name),
        work_dir=str(run / WORK_DIR),
        data_root=str(PurePosixPath(paths["data"]) / "VOC2012"),
        train=TrainSettings(**train.model_dump(include={f.name for f in fields(TrainSettings)})),
        pretrained=pretrained,
        checkpoint=paths["checkpoint"],
        overrides=dict(recipe.model.overrides),
        resume=inputs.resume,
        tracking=job_tracking(recipe, PurePosixPath(inputs.run_dir).name),
    )


def _container_binds(inputs: PlanInputs) -> tuple[BindMount, ...]:
    binds = [
        BindMount(inputs.dataset_dir, CONTAINER_DATA_DIR, read_only=True),
        BindMount(inputs.run_dir, CONTAINER_RUN_DIR, read_only=False),
    ]
    if inputs.rank_table_host_path:
        binds.append(BindMount(inputs.rank_table_host_path, CONTAINER_RANK_TABLE, read_only=True))
    for host, role in ((inputs.pretrained_host_path, "pretrained"), (inputs.checkpoint_host_path, "checkpoint")):
        if host and "://" not in host:
            binds.append(BindMount(host, _container_input(host, role), read_only=True))
    return tuple(binds)


def service_hostname(recipe_name: str) -> str:
    """A container's hostname from its recipe's name (an RFC 1123 label: no underscores)."""
    return "pspnet-" + recipe_name.replace("_", "-").lower()


def run_network(run_dir: str) -> str:
    """The bridge network of a multi-node run on one Docker engine, named after the run."""
    return "pspnet-" + PurePosixPath(run_dir).name


def node_containers(plan: Plan) -> tuple[ContainerSpec, ...]:
    """One container per node of a multi-node Docker plan: node i's torchrun, environment and
    hostname on the run's network; everything else (image, binds, user, shm) as node 0's."""
    assert plan.container is not None and plan.node_launches, "a multi-node docker plan"
    node0 = plan.node_launches[0].environment
    shared = {k: v for k, v in plan.container.environment.items() if k not in node0}
    return tuple(
        replace(plan.container, command=launch.argv, environment={**shared, **launch.environment},
                hostname=launch.hostname)
        for launch in plan.node_launches
    )


def build_container(recipe: Recipe, inputs: PlanInputs, launch: LaunchSpec) -> ContainerSpec:
    if recipe.image is None:
        raise ValueError(f"recipe {recipe.name!r} names no image; the docker executor needs 'image'")
    kind = recipe.device.kind
    backend = get_backend(kind)
    devices = backend.container_devices(recipe.device.device_ids, recipe.device.runtime, inputs.optional_host_paths)
    environment = {
        "PYTHONUNBUFFERED": "1",
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "HOME": "/tmp",  # any uid may run the image; mmengine and matplotlib write under $HOME
        **launch.environment,
        **devices.environment,
    }
    if recipe.device.nodes > 1:
        # One container per node on the run's own bridge network, on one engine (the Docker
        # executor creates it); node 0's hostname is the master. Across machines NPU/GPU nodes talk
        # over the hosts' NICs with host networking: Slurm or Kubernetes start those, not this.
        network_mode = run_network(inputs.run_dir)
    else:
        network_mode = "none" if recipe.device.count == 1 or kind == "cpu" else "host"
    return ContainerSpec(
        image=recipe.image,
        command=launch.argv,
        environment=environment,
        devices=devices.devices,
        binds=devices.binds + _container_binds(inputs),
        gpu_device_ids=devices.gpu_device_ids,
        runtime=devices.runtime,
        shm_size=f"{SHM_PER_DEVICE_GB[kind] * recipe.device.count}g",
        # The NPU driver's nodes belong to the host's HwHiAiUser, whose uid differs between hosts;
        # CANN containers run as root for that reason. CPU and GPU need no such access.
        user=None if kind == "npu" else inputs.container_user,
        working_dir=CONTAINER_RUN_DIR,
        # Multi-rank NCCL/HCCL use shared memory between ranks beyond /dev/shm's files.
        ipc_mode="host" if kind != "cpu" and recipe.device.count > 1 else None,
        network_mode=network_mode,
        # Stable, so logs and HCCL/NCCL messages name the same host on every run; with the host
        # network the container has the host's name (Docker refuses both).
        hostname=None if network_mode == "host" else (
            NODE_HOSTNAME.format(0) if recipe.device.nodes > 1 else service_hostname(recipe.name)),
        warnings=devices.warnings,
    )


def _multi_node_environment(recipe: Recipe, inputs: PlanInputs, layout: PlanLayout) -> dict[str, str]:
    """RANK_TABLE_FILE when the recipe gives one (else torch_npu negotiates over the TCPStore)."""
    if not inputs.rank_table_host_path:
        return {}
    return {"RANK_TABLE_FILE": inputs.rank_table_host_path if not layout.in_container else CONTAINER_RANK_TABLE}


def build_plan(recipe: Recipe, inputs: PlanInputs, layout: PlanLayout | str) -> Plan:
    """The plan laid out as ``layout`` (an executor class's ``plan_layout``, or its recorded word)."""
    layout = PlanLayout(layout)
    backend = get_backend(recipe.device.kind)
    device = recipe.device
    job = build_job(recipe, inputs, layout)
    job_path = str(PurePosixPath(_paths(inputs, layout)["run"]) / JOB_FILE)
    python = "python" if layout.in_container else inputs.python
    master_port = None if device.world_size == 1 else (device.master_port or inputs.master_port or DEFAULT_MASTER_PORT)
    worker = ("-m", "harness.worker", "--job", job_path)
    environment = {
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        **backend.environment(device.world_size),
        **_multi_node_environment(recipe, inputs, layout),
    }
    if recipe.device.kind == "cpu" and inputs.cpu_threads:
        # Two CPU trainings that each spin a thread per core slow each other down about tenfold
        # (OpenMP busy-waits); sharing a host, each should get its own share of the cores.
        environment["OMP_NUM_THREADS"] = str(inputs.cpu_threads)
    if recipe.device.kind == "cpu" and not inputs.cpu_threads and not inputs.user_thread_settings:
        environment.update(cpu_backend.THREAD_DEFAULTS)
        # Threads on cores another process keeps busy wait for each other at every barrier; one
        # rank on this host takes the cores that were idle (a scheduler's node is not this host).
        if device.world_size == 1 and inputs.free_cpus and layout.on_this_host:
            environment["OMP_NUM_THREADS"] = str(inputs.free_cpus)
    node_environment = tuple(device.hccl.environment(node) if device.hccl else {} for node in range(device.nodes))
    launches: tuple[NodeLaunch, ...] = ()
    if device.nodes > 1:
        launches = build_node_launches(
            python=python, worker=worker, nodes=device.nodes, nproc_per_node=device.count,
            rendezvous=harness_rendezvous(layout, master_port), environment=environment,
            node_environment=node_environment, named_hosts=layout.in_container,
        )
        launch = LaunchSpec(argv=launches[0].argv, environment=launches[0].environment, world_size=device.world_size)
    else:
        launch = LaunchSpec(
            argv=worker_argv(python, job_path, device.count, master_port),
            environment={**environment, **node_environment[0]},
            world_size=device.count,
        )
    container = build_container(recipe, inputs, launch) if layout.in_container else None
    return Plan(
        recipe_name=recipe.name,
        mode=recipe.mode,
        executor=layout.value,
        backend=backend.NAME,
        dist_backend=backend.DIST_BACKEND,
        world_size=device.world_size,
        device_ids=recipe.device.device_ids,
        job=job,
        launch=launch,
        container=container,
        nodes=device.nodes,
        nproc_per_node=device.count,
        python=python,
        worker=worker,
        master_port=master_port,
        node_environment=node_environment,
        node_launches=launches,
    )
