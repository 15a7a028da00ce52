"""Plans are pure: the exact launch and container spec each shipped recipe would produce.

NPU and GPU runs cannot happen here; these tests pin what the harness would start on such a host.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from harness.commands.execute import plan_inputs
from harness.executors.planned import describe_plan
from harness.planning.plan import PlanInputs, build_plan
from harness.planning.recipe import load_recipe
from support import RECIPES, run_cli

INPUTS = PlanInputs(run_dir="/srv/results/runs/R", dataset_dir="/srv/data/VOCdevkit", config_name="c.py", python="/usr/bin/python3",
                    optional_host_paths=("/usr/local/sbin/npu-smi", "/usr/local/dcmi", "/var/log/npu"),
                    master_port=29500)


def plan_for(name: str, executor: str = "docker", *sets: str, inputs: PlanInputs = INPUTS):
    return build_plan(load_recipe(RECIPES / f"{name}.yaml", list(sets)).recipe, inputs, executor)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_prints_a_plan(path):
    proc = run_cli("plan", str(path))
    assert proc.returncode == 0, proc.stderr
    plan = yaml.safe_load(proc.stdout)
    assert plan["recipe_name"] == path.stem
    assert plan["launch"]["argv"]
    proc = run_cli("plan", str(path), "--json")
    assert json.loads(proc.stdout)["world_size"] >= 1


def test_npu_8p_plan():
    plan = plan_for("full_8p")
    described = describe_plan(plan)
    assert plan.world_size == 8 and plan.backend == "npu" and plan.dist_backend == "hccl"
    assert plan.launch.argv == (
        "python", "-m", "torch.distributed.run", "--nproc_per_node=8", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={plan.master_port}", "-m", "harness.worker", "--job", "/workspace/run/job.json",
    )
    changes = described["config_changes"]
    assert changes["train_dataloader.batch_size"] == 16
    assert changes["train_cfg.max_iters"] == 10000 and changes["param_scheduler.0.end"] == 10000
    assert changes["model.backbone.norm_cfg.type"] == "BN" and changes["model.decode_head.norm_cfg.type"] == "BN"
    assert changes["optim_wrapper.type"] == "AmpOptimWrapper" and changes["optim_wrapper.loss_scale"] == 128.0
    assert changes["env_cfg.dist_cfg.backend"] == "hccl"
    assert changes["default_hooks.checkpoint.interval"] == 1000 and changes["train_cfg.val_interval"] == 1000


def test_npu_8p_container_spec_pinned():
    spec = plan_for("full_8p").container
    assert [d.as_docker() for d in spec.devices] == [f"/dev/davinci{i}:/dev/davinci{i}:rwm" for i in range(8)] + [
        "/dev/davinci_manager:/dev/davinci_manager:rwm",
        "/dev/devmm_svm:/dev/devmm_svm:rwm",
        "/dev/hisi_hdc:/dev/hisi_hdc:rwm",
    ]
    assert [(b.host_path, b.container_path, b.read_only) for b in spec.binds] == [
        ("/usr/local/Ascend/driver/lib64", "/usr/local/Ascend/driver/lib64", True),
        ("/usr/local/Ascend/driver/version.info", "/usr/local/Ascend/driver/version.info", True),
        ("/etc/ascend_install.info", "/etc/ascend_install.info", True),
        ("/usr/local/sbin/npu-smi", "/usr/local/sbin/npu-smi", True),
        ("/usr/local/dcmi", "/usr/local/dcmi", True),
        ("/var/log/npu", "/var/log/npu", True),
        ("/srv/data/VOCdevkit", "/data/VOCdevkit", True),
        ("/srv/results/runs/R", "/workspace/run", False),
    ]
    assert spec.environment["ASCEND_RT_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert spec.environment["HCCL_WHITELIST_DISABLE"] == "1" and spec.environment["TASK_QUEUE_ENABLE"] == "1"
    assert spec.environment["HCCL_CONNECT_TIMEOUT"] == "1200" and spec.environment["HCCL_EXEC_TIMEOUT"] == "1800"
    assert spec.warnings == ()
    assert spec.runtime is None and spec.gpu_device_ids == ()
    assert spec.shm_size == "32g" and spec.ipc_mode == "host" and spec.network_mode == "host"
    assert spec.privileged is False and spec.cap_add == ()
    assert spec.image == "pspnet-repro/npu:latest"


def _npu_nodes(spec) -> list[str]:
    return [d.host_path for d in spec.devices if d.host_path.startswith("/dev/davinci") and d.host_path[12:].isdigit()]


def test_npu_1p_device_3_maps_only_davinci3():
    spec = plan_for("full_1p", "docker", "device.ids=3").container
    assert _npu_nodes(spec) == ["/dev/davinci3"]
    # CANN numbers the NPUs a container sees 0..n-1: the one mounted NPU is 0 inside.
    assert spec.environment["ASCEND_RT_VISIBLE_DEVICES"] == "0"
    assert plan_for("full_1p", "docker", "device.ids=3").launch.argv[:3] == ("python", "-m", "harness.worker")


@pytest.mark.parametrize("ids, nodes, visible", [
    ("5", ["/dev/davinci5"], "0"),
    ("4,5", ["/dev/davinci4", "/dev/davinci5"], "0,1"),
])
def test_hand_mounted_npus_use_container_numbering(ids, nodes, visible):
    spec = plan_for("full_1p" if "," not in ids else "full_8p", "docker", f"device.ids={ids}",
                    f"device.count={len(nodes)}").container
    assert _npu_nodes(spec) == nodes
    assert spec.environment["ASCEND_RT_VISIBLE_DEVICES"] == visible


def test_plan_cli_device_5_mounts_davinci5_as_container_id_0():
    proc = run_cli("plan", str(RECIPES / "full_1p.yaml"), "--set", "device.ids=5", "--json")
    assert proc.returncode == 0, proc.stderr
    container = json.loads(proc.stdout)["container"]
    nodes = [d["host_path"] for d in container["devices"] if d["host_path"][12:].isdigit()]
    assert nodes == ["/dev/davinci5"]
    assert container["environment"]["ASCEND_RT_VISIBLE_DEVICES"] == "0"
    assert container["environment"]["HCCL_EXEC_TIMEOUT"] == "1800"


def test_optional_driver_tools_missing_are_warned_not_mounted():
    inputs = PlanInputs(run_dir="/r", dataset_dir="/d", config_name="c.py", optional_host_paths=())
    spec = build_plan(load_recipe(RECIPES / "full_1p.yaml").recipe, inputs, "docker").container
    mounted = {b.container_path for b in spec.binds}
    assert not mounted & {"/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi", "/usr/local/dcmi", "/var/log/npu"}
    assert len(spec.warnings) == 3 and "npu-smi not found" in spec.warnings[0]
    # The required driver pieces are still there: training needs them.
    assert "/usr/local/Ascend/driver/lib64" in mounted


def test_npu_smi_from_bin_preferred_when_both_exist():
    from harness.planning.backends import npu

    binds, warnings = npu.optional_binds(["/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi"])
    assert [b.host_path for b in binds] == ["/usr/local/bin/npu-smi"]
    assert len(warnings) == 2 and all(b.read_only for b in binds)


def test_npu_ascend_runtime_spec():
    spec = plan_for("full_8p", "docker", "device.runtime=ascend", "device.ids=0-3,6-9").container
    assert spec.runtime == "ascend"
    assert spec.environment["ASCEND_VISIBLE_DEVICES"] == "0,1,2,3,6,7,8,9"
    assert spec.devices == ()  # the runtime mounts devices and driver itself
    assert "ASCEND_RT_VISIBLE_DEVICES" not in spec.environment  # host ids go to the runtime
    assert [b.container_path for b in spec.binds] == ["/data/VOCdevkit", "/workspace/run"]


def test_gpu_8p_plan_and_spec_pinned():
    plan = plan_for("gpu_full_8p")
    changes = describe_plan(plan)["config_changes"]
    assert plan.world_size == 8 and plan.dist_backend == "nccl"
    assert changes["model.backbone.norm_cfg.type"] == "SyncBN"
    assert changes["train_dataloader.batch_size"] == 4 and changes["train_cfg.max_iters"] == 20000
    spec = plan.container
    assert spec.gpu_device_ids == tuple(str(i) for i in range(8))
    assert spec.devices == () and spec.runtime is None
    assert spec.user == "1000:1000" and spec.shm_size == "32g" and spec.ipc_mode == "host"
    assert [(b.container_path, b.read_only) for b in spec.binds] == [("/data/VOCdevkit", True), ("/workspace/run", False)]
    assert spec.privileged is False


def test_cpu_smoke_plans():
    local = plan_for("smoke_cpu", "local")
    assert local.container is None
    assert local.launch.argv == ("/usr/bin/python3", "-m", "harness.worker", "--job", "/srv/results/runs/R/job.json")
    assert local.job.data_root == "/srv/data/VOCdevkit/VOC2012"
    two = plan_for("smoke_cpu_2p", "local")
    assert two.world_size == 2 and two.dist_backend == "gloo"
    assert "--nproc_per_node=2" in two.launch.argv and two.launch.environment["OMP_NUM_THREADS"] == "1"
    docker = plan_for("smoke_cpu", "docker").container
    assert docker.devices == () and docker.gpu_device_ids == () and docker.user == "1000:1000"
    assert docker.network_mode == "none" and docker.shm_size == "1g"


# Each input that reaches an NPU container plan (python and container_user are for local / CPU-GPU).
NPU_PLAN_INPUTS = dict(run_dir="/x/R2", dataset_dir="/x/VOC", config_name="d.py", pretrained_host_path="/w/p.pth",
                       checkpoint_host_path="/w/c.pth", resume=True, rank_table_host_path="/etc/rt.json",
                       optional_host_paths=(), master_port=29600)


def test_plan_depends_on_its_inputs_only(tmp_path, monkeypatch):
    """Pure: the same inputs give the same plan wherever and whenever it is built (another cwd,
    other device variables), each input that matters changes it, and planning does no I/O."""
    first = plan_for("full_8p").to_dict()
    monkeypatch.chdir(tmp_path)
    for name in ("ASCEND_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "MASTER_PORT", "HOME"):
        monkeypatch.setenv(name, "7")
    recipe = load_recipe(RECIPES / "full_8p.yaml").recipe
    events: list[str] = []
    watching = [True]

    def audit(event: str, args) -> None:  # audit hooks stay for the process: only record while watching
        if watching[-1] and event.split(".")[0] in ("open", "os", "socket", "subprocess", "shutil"):
            events.append(event)

    sys.addaudithook(audit)
    try:
        again = build_plan(recipe, INPUTS, "docker").to_dict()
    finally:
        watching.append(False)
    assert events == []
    assert again == first
    for field, value in NPU_PLAN_INPUTS.items():
        assert plan_for("full_8p", inputs=replace(INPUTS, **{field: value})).to_dict() != first, field
    assert plan_for("full_8p", "docker", "train.iterations=10").to_dict() != first


def test_each_multi_rank_plan_gets_its_own_free_port():
    """Two 4-rank runs on one host (GPU ids 0-3 and 4-7) must not share a rendezvous port."""
    def as_run_plans(*sets: str):  # `harness run`: execute.plan_inputs probes the port, planning does not
        loaded = load_recipe(RECIPES / "gpu_full_8p.yaml", list(sets))
        return build_plan(loaded.recipe, plan_inputs(loaded, Path("/srv/results/runs/R"), Path("/srv/data")), "docker")

    first = as_run_plans("device.count=4", "device.ids=0-3")
    second = as_run_plans("device.count=4", "device.ids=4-7")
    assert first.master_port != second.master_port
    for plan in (first, second):
        assert 1024 <= plan.master_port <= 65535
        assert f"--master_port={plan.master_port}" in plan.launch.argv
        assert plan.to_dict()["master_port"] == plan.master_port  # recorded in plan.json


def test_a_port_the_recipe_names_is_used_as_is():
    plan = plan_for("gpu_full_8p", "docker", "device.master_port=29688")
    assert plan.master_port == 29688 and "--master_port=29688" in plan.launch.argv


def test_single_rank_plans_need_no_port():
    assert plan_for("smoke_cpu", "local").master_port is None


@pytest.mark.parametrize("port", ["0", "80", "70000", "abc"])
def test_bad_master_port_is_refused(port):
    from harness.planning.recipe import BadInput

    with pytest.raises(BadInput, match="device.master_port"):
        load_recipe(RECIPES / "gpu_full_8p.yaml", [f"device.master_port={port}"])


def test_cpu_threads_setting_reaches_every_cpu_rank_and_nothing_else():
    # PSPNET_CPU_THREADS (plan_inputs) for hosts that run several trainings at once
    threaded = replace(INPUTS, cpu_threads=1)
    assert "OMP_NUM_THREADS" not in plan_for("smoke_cpu", "local").launch.environment  # torch's default
    assert plan_for("smoke_cpu", "local", inputs=threaded).launch.environment["OMP_NUM_THREADS"] == "1"
    assert plan_for("smoke_cpu", "docker", inputs=threaded).container.environment["OMP_NUM_THREADS"] == "1"
    two_nodes = plan_for("smoke_cpu_2node", "docker", inputs=replace(INPUTS, cpu_threads=3))
    assert {launch.environment["OMP_NUM_THREADS"] for launch in two_nodes.node_launches} == {"3"}
    assert "OMP_NUM_THREADS" not in plan_for("full_8p", inputs=threaded).launch.environment  # NPUs: not ours to set


@pytest.mark.parametrize("value", ["0", "two", "-1", "4096"])
def test_a_bad_cpu_threads_setting_is_one_line_exit_2(value, tmp_path):
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(tmp_path / "results"),
                   env={**os.environ, "PSPNET_CPU_THREADS": value})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"harness: error: PSPNET_CPU_THREADS={value}: expected a whole number of threads from 1 to 1024"
    assert not (tmp_path / "results").exists()


def test_cpu_ranks_get_the_bounded_spin_unless_the_user_chose_threads_themselves():
    """OpenMP threads that spin at every barrier collapse beside one busy process (README:
    'CPU threads'); a CPU rank gets ``backends.cpu.THREAD_DEFAULTS`` unless the harness's caller
    set PSPNET_CPU_THREADS or an OpenMP variable themselves. NPU/GPU ranks: not ours to set."""
    from harness.planning.backends.cpu import THREAD_DEFAULTS

    assert THREAD_DEFAULTS and all(k.startswith(("OMP_", "GOMP_")) for k in THREAD_DEFAULTS)
    for executor in ("local", "docker"):
        plan = plan_for("smoke_cpu", executor)
        env = plan.launch.environment if executor == "local" else plan.container.environment
        assert {k: env[k] for k in THREAD_DEFAULTS} == THREAD_DEFAULTS, executor
    two_nodes = plan_for("smoke_cpu_2node", "docker")
    assert all(THREAD_DEFAULTS.items() <= launch.environment.items() for launch in two_nodes.node_launches)
    for chose in (replace(INPUTS, cpu_threads=1), replace(INPUTS, user_thread_settings=("OMP_WAIT_POLICY",))):
        assert not THREAD_DEFAULTS.keys() & plan_for("smoke_cpu", "local", inputs=chose).launch.environment.keys()
    assert not THREAD_DEFAULTS.keys() & plan_for("full_8p").launch.environment.keys()
    assert not THREAD_DEFAULTS.keys() & plan_for("gpu_full_8p").launch.environment.keys()


def test_the_users_own_thread_variables_are_found_in_the_environment():
    from harness.commands.execute import user_thread_settings

    assert user_thread_settings({"PATH": "/bin", "OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": "0"}) == (
        "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
    assert user_thread_settings({"PSPNET_CPU_THREADS": "2", "HOME": "/root"}) == ("PSPNET_CPU_THREADS",)
    assert user_thread_settings({"PATH": "/bin", "OMP_NUM_THREADS": ""}) == ()  # empty: not set


def test_plan_json_records_the_thread_default(tmp_path):
    from harness.planning.backends.cpu import THREAD_DEFAULTS

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "PSPNET_CPU_THREADS"))}
    shown = run_cli("plan", str(RECIPES / "smoke_cpu.yaml"), env=env)
    assert shown.returncode == 0, shown.stderr
    assert all(f"{k}: '{v}'" in shown.stdout or f"{k}: {v}" in shown.stdout for k, v in THREAD_DEFAULTS.items())
    chosen = run_cli("plan", str(RECIPES / "smoke_cpu.yaml"), env={**env, "OMP_NUM_THREADS": "2"})
    assert chosen.returncode == 0 and not any(k in chosen.stdout for k in THREAD_DEFAULTS)


def test_a_single_cpu_rank_uses_the_cores_that_were_idle_at_start():
    """Beside a busy process, two spinning threads on two cores collapse (40x); one thread keeps
    half the solo speed (issue 17). ``free_cpus``: the cores idle when the run started, when fewer
    than this process may use (execute.free_cpus); None when all were idle."""
    from harness.planning.backends.cpu import THREAD_DEFAULTS

    busy = replace(INPUTS, free_cpus=1)
    env = plan_for("smoke_cpu", "local", inputs=busy).launch.environment
    assert env["OMP_NUM_THREADS"] == "1" and THREAD_DEFAULTS.items() <= env.items()
    assert plan_for("smoke_cpu", "docker", inputs=busy).container.environment["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in plan_for("smoke_cpu", "local").launch.environment  # all idle: torch's default
    # the caller's choice wins; several ranks already get 1 each; a scheduler's node is not this host
    assert plan_for("smoke_cpu", "local", inputs=replace(busy, cpu_threads=2)).launch.environment["OMP_NUM_THREADS"] == "2"
    chose = replace(busy, user_thread_settings=("OMP_WAIT_POLICY",))
    assert "OMP_NUM_THREADS" not in plan_for("smoke_cpu", "local", inputs=chose).launch.environment
    assert plan_for("smoke_cpu_2p", "local", inputs=replace(INPUTS, free_cpus=3)).launch.environment["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in plan_for("smoke_cpu", "slurm", inputs=busy).launch.environment
    assert "OMP_NUM_THREADS" not in plan_for("full_8p", inputs=busy).launch.environment


def test_free_cpus_from_two_samples_of_proc_stat():
    from harness.commands.execute import free_cpus_between

    # /proc/stat's first line: user nice system idle iowait irq softirq steal ... (jiffies)
    before = "cpu  1000 0 500 8000 100 0 0 0 0 0"
    half = "cpu  1050 0 500 8050 100 0 0 0 0 0"  # 100 jiffies passed, 50 idle: one of 2 cores busy
    assert free_cpus_between(before, half, usable=2) == 1
    idle = "cpu  1000 0 500 8100 100 0 0 0 0 0"
    assert free_cpus_between(before, idle, usable=2) is None  # every core idle: torch's default
    full = "cpu  1100 0 500 8000 100 0 0 0 0 0"
    assert free_cpus_between(before, full, usable=2) == 1  # none idle: still one thread
    assert free_cpus_between(before, "garbage", usable=2) is None and free_cpus_between(before, before, usable=2) is None
