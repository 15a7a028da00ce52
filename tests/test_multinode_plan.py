"""Multi-node plans: world size over all nodes, one torchrun per node with an explicit rendezvous,
resolved per environment (harness-run nodes, Slurm, each Kubernetes operator); rank tables and
HCCL interface settings for NPUs. One-node plans stay exactly as they were (test_plan.py)."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from harness.core.errors import BadInput
from harness.planning.launch import SCHEDULER_VARIABLES, SCHEDULERS, node_launches, scheduler_rendezvous
from harness.planning.plan import PlanInputs, build_plan
from harness.planning.ranktable import CONTAINER_RANK_TABLE, RankTable
from harness.planning.recipe import load_recipe
from support import RECIPES, run_cli

INPUTS = PlanInputs(run_dir="/srv/results/runs/R", dataset_dir="/srv/data/VOCdevkit", config_name="c.py", python="/usr/bin/python3")


def plan_for(name: str, executor: str = "docker", *sets: str, inputs: PlanInputs = INPUTS):
    return build_plan(load_recipe(RECIPES / f"{name}.yaml", list(sets)).recipe, inputs, executor)


def flag(argv, name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def test_full_8p_on_two_nodes_through_the_cli():
    # The done-when: 16 ranks, two launches, --nnodes=2, node ranks 0 and 1, master per executor.
    proc = run_cli("plan", str(RECIPES / "full_8p.yaml"), "--set", "device.nodes=2")
    assert proc.returncode == 0, proc.stderr
    plan = yaml.safe_load(proc.stdout)
    assert plan["world_size"] == 16 and plan["job"]["world_size"] == 16
    nodes = plan["nodes"]
    assert nodes["count"] == 2 and nodes["nproc_per_node"] == 8 and nodes["world_size"] == 16
    launches = nodes["launches"]
    assert [flag(l["argv"], "node_rank") for l in launches] == ["0", "1"]
    assert {flag(l["argv"], "nnodes") for l in launches} == {"2"}
    assert {flag(l["argv"], "nproc_per_node") for l in launches} == {"8"}
    # Docker: node 0's container hostname is the master for both nodes.
    assert {flag(l["argv"], "master_addr") for l in launches} == {"node0"}
    assert [l["hostname"] for l in launches] == ["node0", "node1"]
    assert plan["launch"]["argv"] == launches[0]["argv"]
    assert set(nodes["rendezvous"]) == set(SCHEDULERS)
    assert nodes["rendezvous"]["slurm"]["node_rank"] == "$SLURM_NODEID"
    assert "NodeAddr" in nodes["rendezvous"]["slurm"]["setup"][0]
    assert nodes["rendezvous"]["volcano"]["node_rank"] == "$VC_TASK_INDEX"
    assert nodes["rendezvous"]["pytorchjob"]["node_rank"] == "$RANK"
    assert nodes["rendezvous"]["ascendjob"]["master_port"] == "$MASTER_PORT"
    assert nodes["rendezvous"]["trainjob"]["node_rank"] == "$PET_NODE_RANK"
    assert nodes["rendezvous"]["trainjob"]["master_addr"] == "$PET_MASTER_ADDR"
    for rendezvous in nodes["rendezvous"].values():
        assert "WORLD_SIZE" not in json.dumps(rendezvous["node_rank"])  # never the operators' WORLD_SIZE


def test_one_node_plans_have_no_node_section_and_keep_their_launch():
    plan = plan_for("full_8p")
    assert "nodes" not in plan.to_dict()
    assert "--nnodes=1" in plan.launch.argv and plan.node_launches == ()
    assert plan_for("smoke_cpu", "local").launch.argv == ("/usr/bin/python3", "-m", "harness.worker", "--job", "/srv/results/runs/R/job.json")


def test_smoke_cpu_2node_recipe_is_two_nodes_of_one_process():
    plan = plan_for("smoke_cpu_2node", "local")
    assert plan.nodes == 2 and plan.nproc_per_node == 1 and plan.world_size == 2 and plan.dist_backend == "gloo"
    # Global batch = 2 images per device x 1 device x 2 nodes = smoke_cpu's 4.
    assert plan.job.train.batch_per_device * plan.world_size == 4
    assert [flag(l.argv, "master_addr") for l in plan.node_launches] == ["127.0.0.1", "127.0.0.1"]
    assert plan.job.world_size == 2  # the worker starts DDP (launcher pytorch) for one process per node


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_scheduler_scripts_resolve_rank_and_master_from_the_schedulers_variables(scheduler):
    plan = plan_for("gpu_full_8p", "docker", "device.nodes=2")
    launches = node_launches(plan, scheduler_rendezvous(scheduler, plan.master_port))
    assert len(launches) == 2
    env = {
        "slurm": {"SLURM_NODEID": "1"},
        "pytorchjob": {"MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456", "RANK": "1", "WORLD_SIZE": "16"},
        "volcano": {"VC_NODE_HOSTS": "job-node-0.job,job-node-1.job", "VC_TASK_INDEX": "1"},
        "ascendjob": {"MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "2222", "RANK": "1", "WORLD_SIZE": "2"},
        # Kubeflow Trainer v2's torch plugin (pkg/runtime/framework/plugins/torch/torch.go, v2.3.0)
        "trainjob": {"PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29500", "PET_NODE_RANK": "1",
                     "PET_NNODES": "2", "PET_NPROC_PER_NODE": "8"},
    }[scheduler]
    script = launches[1].script()
    if scheduler == "slurm":
        # A real sh runs the script; scontrol is stood in by a function printing what Slurm prints.
        script = script.replace("set -eu\n", "set -eu\nscontrol() { case \"$2\" in hostnames) echo n1; echo n2;; *) echo "
                                "'NodeName=n1 Arch=x86_64 NodeAddr=127.0.0.1 NodeHostName=h';; esac; }\n", 1)
    # Replace exec torchrun by printing its arguments: the shell's real expansion is what is checked.
    script = script.replace("exec python -m torch.distributed.run", "printf '%s\\n'")
    out = subprocess.run(["sh", "-c", script], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, check=True).stdout
    args = out.split()
    master = {"slurm": "127.0.0.1", "pytorchjob": "job-master-0", "volcano": "job-node-0.job", "ascendjob": "10.0.0.5",
              "trainjob": "job-node-0-0.job"}[scheduler]
    assert flag(args, "node_rank") == "1" and flag(args, "nnodes") == "2" and flag(args, "nproc_per_node") == "8"
    assert flag(args, "master_addr") == master
    assert flag(args, "master_port") == {"pytorchjob": "23456", "ascendjob": "2222", "trainjob": "29500"}.get(scheduler, str(plan.master_port))


def rank_table(nodes: int, per_node: int) -> dict:
    return {
        "version": "1.0", "server_count": str(nodes), "status": "completed",
        "server_list": [
            {"server_id": f"10.0.0.{s}", "device": [
                {"device_id": str(d), "device_ip": f"192.168.{s}.{d}", "rank_id": str(s * per_node + d)} for d in range(per_node)
            ]} for s in range(nodes)
        ],
    }


def npu_recipe(tmp_path, **device):
    data = yaml.safe_load((RECIPES / "full_8p.yaml").read_text())
    data["device"].update(device)
    data["model"]["config"] = str(RECIPES / data["model"]["config"])
    data["dataset"]["root"] = str(tmp_path)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_rank_table_is_checked_mounted_read_only_and_exported(tmp_path):
    (tmp_path / "rt.json").write_text(json.dumps(rank_table(2, 8)))
    loaded = load_recipe(npu_recipe(tmp_path, nodes=2, rank_table="rt.json"), for_run=True)
    inputs = PlanInputs(**{**INPUTS.__dict__, "rank_table_host_path": str(tmp_path / "rt.json")})
    plan = build_plan(loaded.recipe, inputs, "docker")
    assert all(l.environment["RANK_TABLE_FILE"] == CONTAINER_RANK_TABLE for l in plan.node_launches)
    bind = [b for b in plan.container.binds if b.container_path == CONTAINER_RANK_TABLE]
    assert len(bind) == 1 and bind[0].read_only and bind[0].host_path == str(tmp_path / "rt.json")
    assert RankTable.model_validate(rank_table(2, 8)).problems(2, 8) == []


def test_without_a_rank_table_no_rank_table_file_is_set():
    plan = plan_for("full_8p", "docker", "device.nodes=2")
    assert all("RANK_TABLE_FILE" not in l.environment for l in plan.node_launches)


@pytest.mark.parametrize("broken, message", [
    (lambda t: t.update(status="initializing"), "status"),
    (lambda t: t["server_list"].pop(), "server_count 2 but server_list has 1"),
    (lambda t: t["server_list"][1]["device"].pop(), "lists 7 devices, the recipe 8 per node"),
    (lambda t: t["server_list"][1]["device"][0].update(rank_id="0"), "rank_ids must be 0..15"),
    (lambda t: t.pop("version"), "version"),
])
def test_a_wrong_rank_table_is_bad_input_naming_the_problem(tmp_path, broken, message):
    table = rank_table(2, 8)
    broken(table)
    (tmp_path / "rt.json").write_text(json.dumps(table))
    with pytest.raises(BadInput, match="device.rank_table") as error:
        load_recipe(npu_recipe(tmp_path, nodes=2, rank_table="rt.json"), for_run=True)
    assert message in str(error.value)


def test_hccl_interface_settings_reach_each_node(tmp_path):
    loaded = load_recipe(npu_recipe(tmp_path, nodes=2, hccl={"if_ip": ["10.0.0.1", "10.0.0.2"], "socket_ifname": "eth0"}))
    plan = build_plan(loaded.recipe, INPUTS, "docker")
    assert [l.environment["HCCL_IF_IP"] for l in plan.node_launches] == ["10.0.0.1", "10.0.0.2"]
    assert {l.environment["HCCL_SOCKET_IFNAME"] for l in plan.node_launches} == {"eth0"}


@pytest.mark.parametrize("sets, message", [
    (["device.nodes=0"], "device.nodes"),
    (["device.nodes=2", "device.hccl.if_ip=[10.0.0.1]"], "one IP per node"),
])
def test_bad_node_settings_are_one_line_errors(sets, message):
    proc = run_cli("plan", str(RECIPES / "full_8p.yaml"), *sum((["--set", s] for s in sets), []))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_hccl_on_a_gpu_recipe_is_rejected():
    proc = run_cli("plan", str(RECIPES / "gpu_full_8p.yaml"), "--set", "device.hccl.socket_ifname=eth0")
    assert proc.returncode == 2 and "only for device.kind 'npu'" in proc.stderr


def test_running_more_nodes_than_the_executor_starts_is_refused_before_anything_is_written(tmp_path):
    # local starts one node (docker, the multi-node recipe's default, starts every node)
    proc = run_cli("run", str(RECIPES / "smoke_cpu_2node.yaml"), "--executor", "local", "--results",
                   str(tmp_path / "results"), "--no-report")
    assert proc.returncode == 2 and "device.nodes" in proc.stderr and "--executor docker" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_fps_counts_every_rank_of_every_node(tmp_path):
    # A real mmseg log judged as a 2-node x 1-process run: global batch = 2 per device x 1 x 2 nodes.
    import shutil
    from pathlib import Path

    from harness.results.logs import parse_logs
    from harness.results.run_result import build_result
    from harness.store.runs import RunStore

    fixture = Path(__file__).parent / "fixtures" / "logs" / "own_smoke_cpu_1p" / "20261125_202313"
    run = RunStore(tmp_path).create("smoke_cpu_2node")
    shutil.copytree(fixture, run.work_dir / fixture.name)
    plan = plan_for("smoke_cpu_2node", "local")
    recipe = load_recipe(RECIPES / "smoke_cpu_2node.yaml").recipe
    result = build_result(run, recipe, plan.world_size)
    one_rank = parse_logs([run.work_dir / fixture.name], batch_per_device=2, devices=1).fps
    assert result.device.count == 2 and result.fps == pytest.approx(2 * one_rank)
    from harness.store.records import PlanRecord

    recorded = PlanRecord.model_validate(json.loads(json.dumps(plan.to_dict())))
    assert build_result(run, recipe, recorded.world_size).fps == result.fps  # from plan.json too


@pytest.mark.parametrize("recipe, sets, label", [
    ("smoke_cpu", [], "CPU-1p"),
    ("full_8p", [], "NPU-8p"),
    ("smoke_cpu_2node", [], "CPU-2p (2 nodes)"),
    ("full_8p", ["device.nodes=2"], "NPU-16p (2 nodes)"),
])
def test_the_device_column_counts_every_rank_and_names_the_nodes(recipe, sets, label):
    # the seed's table says NPU-8p for one server of 8; a run over nodes must not read as one node's share
    assert load_recipe(RECIPES / f"{recipe}.yaml", sets).recipe.device.label == label


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_schedulers_rendezvous_variables_expand_in_the_launch(scheduler):
    """A scheduler added to the table must also list its variables as expandable: otherwise its
    launch quotes '$PET_NODE_RANK' literally and every node claims the same rank."""
    import re

    rendezvous = scheduler_rendezvous(scheduler, 29500)
    for value in (rendezvous.master_addr, rendezvous.master_port, rendezvous.node_rank or ""):
        for name in re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", value):
            assert name in SCHEDULER_VARIABLES, f"{scheduler}: ${name} would be quoted literally"
