"""The container files without an engine: content tags, build contexts, pins that must agree with
pyproject.toml, compose.yaml's services, and ContainerSpec -> docker-py arguments."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from harness.executors import images, image_locks as locks
from harness.executors import docker as dx
from harness.planning.spec import BindMount, ContainerSpec, DeviceMapping

REPO = Path(__file__).resolve().parent.parent


def _pyproject_pins() -> dict[str, str]:
    train = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    return dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", req).groups() for req in train if "==" in req)


def _arg(dockerfile: str, name: str) -> str:
    text = (REPO / "docker" / dockerfile / "Dockerfile").read_text()
    return re.search(rf"^ARG {name}=(\S+)", text, re.MULTILINE).group(1)


# --- pins -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", images.KINDS)
def test_image_locks_hold_pyproject_train_pins(kind):
    pins = _pyproject_pins()
    for lock in locks.lock_paths(kind, REPO):
        versions = locks.locked_versions(lock)
        for name in ("setuptools", "mmengine", "mmsegmentation", "mmcv-lite"):
            assert versions[name] == pins[name], (lock.name, name)
        assert "mmcv" not in versions and "opencv-python" not in versions, lock.name
        assert "opencv-python-headless" in versions, lock.name


def test_cpu_lock_torch_matches_pyproject():
    versions = locks.locked_versions(locks.lock_path("cpu", "linux-x86_64", REPO))
    assert versions["torch"] == f"{_pyproject_pins()['torch']}+cpu" == f"{images.TORCH_VERSION}+cpu"


@pytest.mark.parametrize("kind", images.KINDS)
def test_dockerfiles_install_their_locks_with_hashes(kind):
    code = _code(kind)
    for lock in locks.lock_paths(kind, REPO):
        assert f"docker/{kind}/{lock.name}" in code, lock.name
    installs = [step for step in _run_steps(kind) if re.search(r"\bpip install\b[^&]*-r ", step)]
    assert installs and all("--require-hashes" in step and "--no-deps" in step for step in installs)


def _code(kind: str) -> str:
    text = images.dockerfile_path(kind).read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _run_steps(kind: str) -> list[str]:
    """Each RUN instruction of a Dockerfile, continuation lines joined."""
    steps, current = [], None
    for line in _code(kind).splitlines():
        if current is None and line.startswith("RUN "):
            current = line[4:]
        elif current is not None:
            current += " " + line.strip()
        if current is not None and not line.rstrip().endswith("\\"):
            steps.append(current)
            current = None
    return steps


def _commands(step: str) -> list[str]:
    return [c.strip() for c in re.split(r"&&|;|\|\|", step) if c.strip()]


def test_npu_build_steps_import_torch_npu_only_with_cann_stub_libs():
    """No driver in `docker build`: a step importing torch_npu (or torch, which auto-loads it)
    needs CANN's devlib stubs on LD_LIBRARY_PATH, or torch_npu's autoload switched off."""
    importing = 0
    for step in _run_steps("npu"):
        for command in _commands(step):
            imports = re.search(r"python3? -c .*import [^\"']*\b(torch_npu|torch)\b", command)
            if not imports:
                continue
            importing += 1
            if "torch_npu" in command.split("import", 1)[1]:
                assert re.search(r"LD_LIBRARY_PATH=\S*\$\{ASCEND_STUBS\}/\$\{arch\}-linux/devlib", command), command
                assert "source /usr/local/bin/ascend-env.sh" in step.split(command)[0], command
            else:
                assert "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in command or "devlib" in command, command
    assert importing >= 2  # the check line imports torch_npu; the numpy<2 check only torch
    assert re.search(r"^ARG ASCEND_STUBS=/usr/local/Ascend/ascend-toolkit/latest$", _code("npu"), re.MULTILINE)


def test_no_image_puts_build_stubs_in_its_runtime_environment():
    for kind in images.KINDS:
        code = _code(kind)
        env_blocks = re.findall(r"^ENV (?:.*\\\n)*.*$", code, re.MULTILINE)
        assert env_blocks, kind
        for block in env_blocks:
            assert "LD_LIBRARY_PATH" not in block and "devlib" not in block, (kind, block)
            assert "TORCH_DEVICE_BACKEND_AUTOLOAD" not in block, (kind, block)


def test_npu_image_builds_no_mmcv_ops():
    code = _code("npu")
    assert "MMCV_FLAVOR" not in code and "FORCE_NPU" not in code and "mmcv-patches" not in code
    assert "mmcv-lite" in locks.locked_versions(locks.lock_path("npu", "linux-aarch64", REPO))


@pytest.mark.parametrize("kind", images.KINDS)
def test_dockerfiles_take_their_base_as_an_arg_and_never_pull(kind):
    text = images.dockerfile_path(kind).read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.MULTILINE)
    assert "FROM ${BASE_IMAGE}" in text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "--pull" not in code
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1" in text
    assert "COPY certs/ /usr/local/share/ca-certificates/" in text


def test_npu_mmcv_choice_is_explained_and_no_patch_ships_unapplied():
    patches = REPO / "docker" / "npu" / "patches"
    readme = (patches / "README.md").read_text()
    assert "mmcv-lite" in readme and "#2998" in readme
    # Nothing applies patches any more; a patch file here would be dead weight.
    assert sorted(p.name for p in patches.iterdir()) == ["README.md"]


# --- tags and contexts ------------------------------------------------------------------------


def _mini_repo(root: Path) -> Path:
    (root / "docker" / "cpu").mkdir(parents=True)
    (root / "docker" / "cpu" / "Dockerfile").write_text("ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n")
    (root / "harness").mkdir()
    (root / "harness" / "a.py").write_text("x = 1\n")
    (root / "harness" / "__pycache__").mkdir()
    (root / "harness" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    return root


def test_content_tag_is_stable_and_tracks_content(tmp_path):
    repo = _mini_repo(tmp_path)
    tag = images.content_tag("cpu", "base:1", repo_root=repo)
    assert re.fullmatch(r"pspnet-repro/cpu:[0-9a-f]{12}", tag)
    assert images.content_tag("cpu", "base:1", repo_root=repo) == tag
    (repo / "harness" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"other junk")
    assert images.content_tag("cpu", "base:1", repo_root=repo) == tag, "bytecode must not change the tag"
    assert images.content_tag("cpu", "base:2", repo_root=repo) != tag, "the base is part of the tag"
    (repo / "harness" / "a.py").write_text("x = 2\n")
    assert images.content_tag("cpu", "base:1", repo_root=repo) != tag


def test_content_tag_counts_wheels_by_name_and_size(tmp_path):
    repo = _mini_repo(tmp_path / "repo")
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"1234")
    tag = images.content_tag("cpu", "b", repo_root=repo, wheels=[wheel])
    assert tag != images.content_tag("cpu", "b", repo_root=repo)
    wheel.write_bytes(b"12345")
    assert images.content_tag("cpu", "b", repo_root=repo, wheels=[wheel]) != tag


def test_assemble_context_mirrors_the_repo_with_certs_and_wheels(tmp_path):
    repo = _mini_repo(tmp_path / "repo")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "proxy.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"w")
    (tmp_path / "ctx").mkdir()
    ctx = images.assemble_context(
        "cpu", tmp_path / "ctx", repo_root=repo, certs=images.cert_files([certs]), wheels=[wheel]
    )
    assert (ctx / "Dockerfile").is_file() and (ctx / "docker" / "cpu" / "Dockerfile").is_file()
    assert (ctx / "harness" / "a.py").is_file() and not (ctx / "harness" / "__pycache__").exists()
    assert [p.name for p in (ctx / "certs").iterdir()] == ["00-proxy.crt"]  # update-ca-certificates wants .crt
    assert (ctx / "wheels" / wheel.name).is_file()


def test_find_links_and_torch_wheel_from_pip_config(tmp_path):
    text = "global.find-links='/opt/wheels'\n:env:.find-links='/opt/wheels /other'\nglobal.cert='/x'\n"
    assert images.find_links_from_pip_config(text) == ["/opt/wheels", "/other"]
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"")
    found = images.find_torch_wheel(["/nonexistent", f"file://{tmp_path}"])
    assert found is not None and "cp311" in found.name
    assert images.find_torch_wheel([str(tmp_path)], version="9.9.9") is None


def test_missing_image_message_names_the_build_command():
    msg = images.missing_image_message("pspnet-repro/cpu:abc")
    assert "harness image build cpu --base pspnet-repro/base:bookworm" in msg and "\n" not in msg
    assert "harness image build npu --base ascendai/cann:" in images.missing_image_message("pspnet-repro/npu:latest")
    assert "not present" in images.missing_image_message("someone/else:1")


def test_default_base_comes_from_the_dockerfile():
    assert images.default_base("gpu") == "debian:bookworm-slim"  # torch's CUDA wheels carry CUDA
    assert images.default_base("npu").startswith("ascendai/cann:")
    with pytest.raises(images.ImageError):
        images.check_kind("tpu")


def test_image_command_registers_build_and_tag():
    import argparse

    from harness.commands import image

    parser = argparse.ArgumentParser()
    image.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["image", "build", "cpu", "--base", "b", "--certs", "/c"])
    assert (args.kind, args.base, args.certs, args.func) == ("cpu", "b", [Path("/c")], image.run)
    args = parser.parse_args(["image", "tag", "npu"])
    assert args.image_action == "tag"


# --- spec -> docker-py -------------------------------------------------------------------------


def _spec(**kw) -> ContainerSpec:
    base = dict(image="img:1", command=("python3", "-V"), environment={"A": "1"})
    return ContainerSpec(**{**base, **kw})


def test_container_kwargs_maps_every_field():
    spec = _spec(
        devices=(DeviceMapping("/dev/null", "/dev/davinci0"),),
        binds=(BindMount("/a", "/x", True), BindMount("/a", "/y", False)),
        gpu_device_ids=("0", "3"),
        runtime="nvidia",
        shm_size="8g",
        user="1000:1000",
        ipc_mode="host",
        network_mode="host",
    )
    kw = dx.container_kwargs(spec)
    assert kw["devices"] == ["/dev/null:/dev/davinci0:rwm"]
    assert kw["volumes"] == ["/a:/x:ro", "/a:/y:rw"]  # the same source twice survives
    assert kw["device_requests"][0]["DeviceIDs"] == ["0", "3"]
    assert kw["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert (kw["runtime"], kw["shm_size"], kw["user"], kw["ipc_mode"], kw["network_mode"]) == (
        "nvidia", "8g", "1000:1000", "host", "host")
    assert kw["privileged"] is False and "cap_add" not in kw and kw["init"] is True
    assert kw["command"] == ["python3", "-V"] and kw["environment"] == {"A": "1"}


def test_container_kwargs_leaves_unset_options_out():
    kw = dx.container_kwargs(_spec())
    assert not {"runtime", "user", "ipc_mode", "device_requests"} & kw.keys()
    assert kw["network_mode"] == "none" and kw["working_dir"] == "/workspace"


@pytest.mark.parametrize("bad", [dict(privileged=True), dict(cap_add=("SYS_ADMIN",))])
def test_privileged_specs_are_refused(bad):
    with pytest.raises(dx.PreflightError):
        dx.container_kwargs(_spec(**bad))


def test_preflight_problems_lists_each_problem(tmp_path):
    spec = _spec(
        image="pspnet-repro/npu:abc",
        devices=(DeviceMapping("/dev/null", "/dev/null"), DeviceMapping("/dev/davinci9", "/dev/davinci9")),
        binds=(BindMount(str(tmp_path), "/ok"), BindMount(str(tmp_path / "missing"), "/etc/ascend_install.info")),
        runtime="ascend",
    )
    problems = dx.preflight_problems(spec, image_present=False, runtimes={"runc"})
    assert len(problems) == 4
    assert "harness image build npu" in problems[0]
    assert "/dev/davinci9" in problems[1]
    assert "missing" in problems[2] and "/etc/ascend_install.info" in problems[2]
    assert "'ascend' runtime" in problems[3]
    assert dx.preflight_problems(_spec(), image_present=True, runtimes={"runc"}) == []


def test_engine_url_prefers_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert dx.engine_url() == "tcp://127.0.0.1:1"


# --- compose ----------------------------------------------------------------------------------

SERVICES = {
    "train-1p": "full_1p", "perf-1p": "perf_1p", "train-8p": "full_8p", "perf-8p": "perf_8p",
    "eval-8p": "eval_8p", "gpu-train-8p": "gpu_full_8p", "gpu-perf-8p": "gpu_perf_8p", "smoke": "smoke_cpu",
}


def _compose() -> dict:
    """compose.yaml with every ``${VAR:-default}`` at its documented default (as compose does)."""
    text = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", (REPO / "compose.yaml").read_text())
    return yaml.safe_load(text)


def test_compose_services_run_the_worker_on_their_recipe():
    services = _compose()["services"]
    assert set(services) == set(SERVICES)
    for name, recipe in SERVICES.items():
        cmd = services[name]["command"]
        assert cmd[:7] == ["harness", "run", f"recipes/{recipe}.yaml", "--executor", "local",
                           "--results", "/workspace/results"], name
        if recipe == "smoke_cpu":
            assert cmd[7:] == ["--set", "train.iterations=400"], name
        else:
            assert cmd[7:9] == ["--set", "dataset.root=/data/VOCdevkit"], name
        assert (REPO / "recipes" / f"{recipe}.yaml").is_file(), f"{name}: recipe {recipe} missing"
        assert not services[name].get("privileged") and not services[name].get("cap_add"), name


def test_compose_npu_services_mount_devices_and_read_only_driver():
    services = _compose()["services"]
    for name in ("train-1p", "perf-1p", "train-8p", "perf-8p", "eval-8p"):
        svc = services[name]
        targets = [d.split(":")[1] for d in svc["devices"]]
        assert {"/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"} <= set(targets), name
        # eval-8p evaluates in one process on one NPU, as the seed's train_val_8p.sh does.
        eight = name in ("train-8p", "perf-8p")
        assert sum(t.startswith("/dev/davinci") and t[12:].isdigit() for t in targets) == (8 if eight else 1), name
        for path in ("/usr/local/Ascend/driver/lib64", "/usr/local/Ascend/driver/version.info",
                     "/etc/ascend_install.info"):
            assert f"{path}:{path}:ro" in svc["volumes"], (name, path)
        assert any(v.endswith(":/data/VOCdevkit:ro") for v in svc["volumes"]), name
        # Container numbering: 0..n-1 whatever host NPUs are mounted.
        assert svc["environment"]["ASCEND_RT_VISIBLE_DEVICES"] == ("0,1,2,3,4,5,6,7" if eight else "0")
        assert svc["environment"]["HCCL_EXEC_TIMEOUT"] == "1800", name


def test_compose_gpu_services_reserve_gpus():
    services = _compose()["services"]
    for name in ("gpu-train-8p", "gpu-perf-8p"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"], name
        assert devices[0]["device_ids"] == [str(i) for i in range(8)], name


def test_env_example_documents_every_compose_variable():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO / "compose.yaml").read_text()))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    assert used <= documented, used - documented
