"""Pure: the per-node containers of a multi-node Docker plan (hostnames, the run's network,
environment, binds) and the docker-py arguments each node is created with. No engine needed."""
from __future__ import annotations

import docker

from harness.executors import get_executor
from harness.executors.docker_nodes import LABEL_NODE, LABEL_RUN, node_create_kwargs
from harness.planning.plan import PlanInputs, build_plan, node_containers
from harness.planning.recipe import load_recipe
from support import RECIPES

INPUTS = PlanInputs(run_dir="/srv/results/runs/20261201T000000Z-smoke_cpu_2node-a1b2c3",
                    dataset_dir="/srv/data/VOCdevkit", config_name="c.py", master_port=29511)
NETWORK = "pspnet-20261201T000000Z-smoke_cpu_2node-a1b2c3"


def two_node_plan(*sets: str):
    return build_plan(load_recipe(RECIPES / "smoke_cpu_2node.yaml", list(sets)).recipe, INPUTS, "docker")


def flag(argv, name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    return value


def test_one_container_per_node_on_the_runs_network():
    plan = two_node_plan()
    specs = node_containers(plan)
    assert [s.hostname for s in specs] == ["node0", "node1"]
    assert {s.network_mode for s in specs} == {NETWORK}  # never "none": the nodes must reach node0
    assert [flag(s.command, "node_rank") for s in specs] == ["0", "1"]
    assert {flag(s.command, "master_addr") for s in specs} == {"node0"}
    assert {flag(s.command, "master_port") for s in specs} == {"29511"}
    assert {flag(s.command, "nnodes") for s in specs} == {"2"}
    # the same run folder, data and user on every node; the worker's environment on every node
    assert specs[0].binds == specs[1].binds == plan.container.binds
    assert {b.container_path: b.read_only for b in specs[1].binds} == {"/data/VOCdevkit": True, "/workspace/run": False}
    assert specs[0].environment == specs[1].environment == plan.container.environment
    assert specs[1].environment["PYTHONUNBUFFERED"] == "1" and specs[1].user == plan.container.user
    assert specs[0] == plan.container  # node 0's container is the plan's


def test_node_environment_is_each_nodes_own():
    plan = two_node_plan("device.kind=npu", "device.hccl.if_ip=[10.0.0.1,10.0.0.2]", "image=pspnet-repro/npu:latest")
    specs = node_containers(plan)
    assert [s.environment["HCCL_IF_IP"] for s in specs] == ["10.0.0.1", "10.0.0.2"]
    assert {s.network_mode for s in specs} == {NETWORK}


def test_one_node_plans_keep_their_network():
    plan = build_plan(load_recipe(RECIPES / "smoke_cpu.yaml", []).recipe, INPUTS, "docker")
    assert plan.container.network_mode == "none" and plan.container.hostname == "pspnet-smoke-cpu"


def test_create_arguments_name_alias_and_label_each_node():
    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")  # builds, never connects
    specs = node_containers(two_node_plan())
    kwargs = node_create_kwargs(specs[1], run_id="R1", rank=1, client=client)
    assert "network_mode" not in kwargs and kwargs["network"] == NETWORK
    assert kwargs["name"] == f"{NETWORK}-node1" and kwargs["hostname"] == "node1"
    assert kwargs["networking_config"][NETWORK]["Aliases"] == ["node1"]
    assert kwargs["labels"] == {LABEL_RUN: "R1", LABEL_NODE: "1"}
    assert kwargs["privileged"] is False and kwargs["init"] is True


def test_a_multi_node_recipe_defaults_to_docker():
    from harness.executors import default_executor

    assert default_executor(load_recipe(RECIPES / "smoke_cpu_2node.yaml", []).recipe) == "docker"
    assert default_executor(load_recipe(RECIPES / "smoke_cpu.yaml", []).recipe) == "local"


def test_only_multi_node_executors_take_several_nodes():
    # the CLI's refusal for the others: test_multinode_plan.py
    assert get_executor("docker").multi_node is True
    assert not getattr(get_executor("local"), "multi_node", False)
