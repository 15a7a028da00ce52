"""The GPU image, built for real on the local Debian base (opt-in: PSPNET_BUILD_GPU_IMAGE=1).

PyPI's x86_64 torch is the CUDA build: the first build downloads ~3 GB of wheels (about 6
minutes here; see README), so this is not part of the default CI run. It proves the GPU lock
installs with hashes required, and that torch (CUDA build) and mmseg import inside the image on a
machine without a GPU.
"""
from __future__ import annotations

import os

import pytest

from harness.executors import images

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("PSPNET_BUILD_GPU_IMAGE") != "1",
                       reason="opt-in: PSPNET_BUILD_GPU_IMAGE=1 builds the multi-GB GPU image"),
]


def test_gpu_image_builds_and_imports_mmseg_and_cuda_torch(client, cpu_image):
    # cpu_image makes sure the local base exists (and the CPU image with it).
    tag = images.build_image("gpu", images.LOCAL_BASE, client, log=lambda line: None)
    code = ("import mmseg, torch, numpy; "
            "print('OK', torch.__version__, torch.version.cuda, torch.cuda.is_available(), mmseg.__version__)")
    out = client.containers.run(tag, ["python3", "-c", code], remove=True, network_mode="none").decode()
    line = next(l for l in out.splitlines() if l.startswith("OK "))
    _, torch_version, cuda, available, mmseg_version = line.split()
    assert torch_version == "2.6.0+cu124" and cuda == "12.4"
    assert available == "False"  # no GPU here; the CUDA runtime libs load regardless
    assert mmseg_version == "1.2.2"
    # the harness itself is installed and its worker entry point answers
    out = client.containers.run(tag, ["python3", "-m", "harness.worker", "--help"], remove=True,
                                network_mode="none").decode()
    assert "--job" in out
