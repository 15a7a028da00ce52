"""A free TCP port on this host: a fact about the machine, probed where plans are made for it
(``execute.plan_inputs``), so that planning itself never opens a socket."""
from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on this host now. The seed's fixed 29688 made two multi-rank runs on one
    host (GPU ids 0-3 and 4-7) collide; each run gets its own unless the recipe names one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]
