"""``python -m harness.worker --job RUN_DIR/job.json``: one training (or evaluation) process.

Under torchrun there is one of these per rank; rank 0 also writes the resolved config next to
the job so the run folder shows exactly what was trained.
"""
from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
from pathlib import Path

from harness.core.errors import BadInput
from harness.store.job import Job, read_job
from harness.store.provenance import host_provenance
from harness.worker import device_info
from harness.worker.checkpoints import install_atomic_local_backend, pick_resume_checkpoint

from harness.store.layout import RESOLVED_CONFIG
CANN_VERSION_FILES = (
    "/usr/local/Ascend/ascend-toolkit/latest/version.cfg",
    "/usr/local/Ascend/driver/version.info",
)


def worker_environment(job: Job) -> dict:
    """What the training process itself ran with (inside the container, under Docker)."""
    import torch

    info = host_provenance()
    info["torch_threads"] = torch.get_num_threads()
    if job.device_kind == "gpu" and torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    for path in CANN_VERSION_FILES:
        if os.path.isfile(path):
            info.setdefault("ascend_versions", {})[path] = Path(path).read_text(errors="replace")[:2000]
    info["environment_settings"] = device_info.recorded_environment()
    if job.device_kind == "npu":
        info["npu"] = device_info.npu_facts()
    return info


def _prepare_device(kind: str) -> None:
    if kind == "npu":
        # torch_npu registers the NPU device with torch; mmengine then picks it before CUDA.
        import torch_npu  # noqa: F401


def choose_resume_checkpoint(cfg, work_dir: Path) -> list[str]:
    """Point mmengine at the newest complete checkpoint (it would take ``last_checkpoint`` as is,
    damaged or not); notes name what was skipped."""
    chosen, skipped = pick_resume_checkpoint(work_dir)
    notes = [f"checkpoint {path} is incomplete (truncated); skipped" for path in skipped]
    if chosen is None:
        cfg["resume"] = False
        notes.append(f"no complete checkpoint in {work_dir}; training starts from iteration 0")
    else:
        cfg["load_from"] = str(chosen)
        notes.append(f"resuming from {chosen}")
    return notes


def _init_distributed(job: Job) -> None:
    if job.world_size > 1 and job.device_kind == "cpu":
        # mmengine 0.10.7 calls torch.cuda.set_device in its own init even on the CPU; a process
        # group that already exists makes it skip that.
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")


def run_job(job: Job, job_path: Path) -> int:
    # torch >= 2.6 loads with weights_only=True, which cannot read mmengine checkpoints (resume, test).
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    _prepare_device(job.device_kind)
    from harness.worker import mmcv_shim

    mmcv_shim.install()
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    from harness.planning.mmseg_config import build_config

    cfg, notes = build_config(job)
    events_hook = _events_hook(cfg, notes)
    install_atomic_local_backend()  # checkpoints are whole or absent, never truncated
    if job.resume and job.mode != "eval":
        notes.extend(choose_resume_checkpoint(cfg, Path(job.work_dir)))
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    print(f"harness.worker: rank {rank} of {world} started (pid {os.getpid()}, {job.device_kind})", flush=True)
    if rank == 0:
        cfg.dump(str(job_path.parent / RESOLVED_CONFIG))
        from harness.store.runs import write_worker_env

        write_worker_env(job_path.parent, worker_environment(job))
        for note in notes:
            print(f"harness.worker: {note}", flush=True)
    _init_distributed(job)
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    if rank == 0 and job.mode != "eval":
        # What mmengine really builds can differ from the config (AMP forced on SoCs < 910B).
        requested = (cfg.get("optim_wrapper") or {}).get("type", "OptimWrapper")
        runner.register_hook(device_info.optim_wrapper_hook(job_path.parent, requested))
    with events_hook.events_on_failure(runner) if events_hook else nullcontext():
        if job.mode == "eval":
            runner.test()
        else:
            runner.train()
    _finish_distributed()
    return 0


def _finish_distributed() -> None:
    """Leave the process group together: a gloo group left to the interpreter's exit can abort
    (SIGABRT) on one node while the other is still tearing down (seen across two Slurm nodes)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _events_hook(cfg, notes: list[str]):
    """The event stream's hook module, added to ``cfg``; None (results then come from the text
    logs) where the image lacks ``mlperf-logging``."""
    try:
        from harness.worker import events_hook
    except ImportError as exc:
        notes.append(f"no event stream (events.mllog): {exc}; results come from the text logs")
        return None
    events_hook.add_events_hook(cfg)
    return events_hook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worker", description=__doc__)
    parser.add_argument("--job", required=True, type=Path, help="the run's job.json")
    args = parser.parse_args(argv)
    from harness.store.lifeline import install_from_environment

    install_from_environment()  # die with the harness that runs us (harness.store.lifeline)
    if not args.job.is_file():
        raise BadInput(f"{args.job}: job file does not exist")
    job = read_job(args.job)
    return run_job(job, args.job)
