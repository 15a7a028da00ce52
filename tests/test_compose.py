"""compose.yaml is generated from the plans (`harness compose > compose.yaml`): the committed file
must be exactly the generator's output, and the generator must agree with the Docker executor."""
from __future__ import annotations

from pathlib import Path

import yaml

from harness.executors import compose
from harness.planning.plan import PlanInputs, build_plan
from harness.planning.recipe import load_recipe
from support import RECIPES, run_cli

REPO = Path(__file__).resolve().parent.parent


def test_committed_compose_yaml_is_the_generated_one():
    proc = run_cli("compose")
    assert proc.returncode == 0, proc.stderr
    committed = (REPO / "compose.yaml").read_text()
    assert committed == proc.stdout, "compose.yaml is stale: run `harness compose > compose.yaml`"


def test_compose_services_carry_the_docker_executors_container_spec():
    services = compose.compose_document(RECIPES)["services"]
    inputs = PlanInputs(run_dir="/r", dataset_dir="/d", config_name="c.py")
    for service in compose.SERVICES:
        spec = build_plan(load_recipe(RECIPES / service.recipe).recipe, inputs, "docker").container
        svc = services[service.name]
        # CPU services run the harness inside, which plans the run: the host's thread setting goes in
        threads = {"PSPNET_CPU_THREADS": "${PSPNET_CPU_THREADS:-}"} if "/cpu:" in spec.image else {}
        assert svc["environment"] == {**spec.environment, **threads}, service.name
        assert svc["shm_size"] == spec.shm_size and svc["network_mode"] == spec.network_mode, service.name
        assert svc.get("ipc") == spec.ipc_mode and svc.get("hostname") == spec.hostname, service.name
        assert ("user" in svc) == (spec.user is not None), service.name
        devices = [d.as_docker() for d in spec.devices]
        if devices and len([d for d in devices if d[12:13].isdigit()]) == 1:
            # One NPU: its host id is the NPU_1P_DEVICE_ID variable (default: the recipe's).
            devices[0] = devices[0].replace("/dev/davinci0", "/dev/davinci${NPU_1P_DEVICE_ID:-0}")
        assert svc.get("devices", []) == devices, service.name


def test_one_p_npu_device_variable_keeps_container_id_0():
    svc = compose.compose_document(RECIPES)["services"]["train-1p"]
    assert svc["devices"][0] == "/dev/davinci${NPU_1P_DEVICE_ID:-0}:/dev/davinci${NPU_1P_DEVICE_ID:-0}:rwm"
    assert svc["environment"]["ASCEND_RT_VISIBLE_DEVICES"] == "0"


def test_generated_compose_is_valid_yaml_with_the_readme_services(tmp_path):
    data = yaml.safe_load(compose.render(RECIPES))
    assert list(data["services"]) == ["train-1p", "perf-1p", "train-8p", "perf-8p", "eval-8p",
                                      "gpu-train-8p", "gpu-perf-8p", "smoke"]
    assert all(not svc.get("privileged") and not svc.get("cap_add") for svc in data["services"].values())


def test_compose_command_refuses_a_recipes_folder_without_the_services(tmp_path):
    proc = run_cli("compose", "--recipes", str(tmp_path))
    assert proc.returncode == 2 and "full_1p.yaml" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
