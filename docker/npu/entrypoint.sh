#!/bin/bash
# Put CANN's environment (LD_LIBRARY_PATH, ASCEND_*_PATH, PYTHONPATH for te/tbe...) in effect for
# the container's main process and everything it starts (torchrun ranks inherit it). Without it
# `import torch_npu` fails to find libascendcl.so. Same lookup as the seed's env_npu.sh.
source /usr/local/bin/ascend-env.sh
exec "$@"
