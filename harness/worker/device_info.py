"""What the accelerator really was, for worker_env.json: NPU name and SoC version, CANN, driver
and torch_npu versions, the HCCL/ASCEND settings in effect, and the optimizer wrapper mmengine
really built (it forces AMP on SoCs older than 910B whatever the recipe asked).

The parsers are pure and tested on the CPU; ``npu_facts`` needs torch_npu and runs only on NPUs.
"""
from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path

ASCEND_ROOT = Path("/usr/local/Ascend")
DRIVER_VERSION_FILE = ASCEND_ROOT / "driver" / "version.info"
# mmengine 0.10.7 device/utils.py: SoC versions >= 220 (Atlas A2, 910B) train in full precision;
# older ones (910A/910ProB) get AmpOptimWrapper forced by optim/optimizer/builder.py.
MMENGINE_FULL_PRECISION_SOC = 220
RECORDED_ENV_PREFIXES = ("HCCL_", "ASCEND_", "TASK_QUEUE_ENABLE")


def read_key_value(text: str, key: str) -> str | None:
    """The value of ``key=value`` / ``key = value`` / ``key: value`` in an Ascend info file."""
    for line in text.splitlines():
        for sep in ("=", ":"):
            name, found, value = line.partition(sep)
            if found and name.strip().lower() == key.lower():
                return value.strip().strip('"') or None
    return None


def cann_version_files(root: Path = ASCEND_ROOT, machine: str | None = None) -> list[Path]:
    arch = machine or platform.machine()
    latest = root / "ascend-toolkit" / "latest"
    return [latest / f"{arch}-linux" / "ascend_toolkit_install.info", latest / "version.cfg",
            root / "cann" / f"{arch}-linux" / "ascend_toolkit_install.info"]


def cann_version(root: Path = ASCEND_ROOT, machine: str | None = None) -> str | None:
    for path in cann_version_files(root, machine):
        if path.is_file():
            text = path.read_text(errors="replace")
            # ascend_toolkit_install.info: version=8.2.RC1; version.cfg: [...] toolkit_installed_version=...
            value = read_key_value(text, "version") or read_key_value(text, "toolkit_installed_version")
            if value:
                return value.strip("[]").split(":")[-1]
    return None


def driver_version(path: Path = DRIVER_VERSION_FILE) -> str | None:
    return read_key_value(path.read_text(errors="replace"), "Version") if path.is_file() else None


def mmengine_forces_amp(soc_version: int | None) -> bool | None:
    """True where mmengine 0.10.7 turns any optim wrapper into AmpOptimWrapper (SoC < 220)."""
    return None if soc_version is None else soc_version < MMENGINE_FULL_PRECISION_SOC


def recorded_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The HCCL/Ascend settings the process really had (the harness sets some; hosts add more)."""
    return {k: v for k, v in sorted(environ.items()) if k.startswith(RECORDED_ENV_PREFIXES)}


def npu_facts() -> dict:
    """On an NPU host: name, SoC version, versions, and whether mmengine will force AMP."""
    import torch
    import torch_npu

    soc = None
    try:
        soc = int(torch_npu.npu.utils.get_soc_version())
    except Exception as exc:  # an old torch_npu without it: record why, do not fail the run
        soc_error = f"{type(exc).__name__}: {exc}"
    else:
        soc_error = None
    facts = {
        "npu_name": torch.npu.get_device_name(0) if torch.npu.is_available() else None,
        "npu_count": torch.npu.device_count(),
        "soc_version": soc,
        "cann_version": cann_version(),
        "driver_version": driver_version(),
        "torch_npu_version": getattr(torch_npu, "__version__", None),
        "mmengine_forces_amp": mmengine_forces_amp(soc),
    }
    if soc_error:
        facts["soc_version_error"] = soc_error
    return facts


def optim_wrapper_hook(run_path: Path, requested: str):
    """An mmengine hook that records the built optim wrapper before the first iteration."""
    from mmengine.hooks import Hook

    class RecordOptimWrapper(Hook):
        priority = "LOWEST"

        def before_train(self, runner) -> None:
            from harness.store.runs import record_optim_wrapper

            record_optim_wrapper(run_path, requested, type(runner.optim_wrapper).__name__)

    return RecordOptimWrapper()
