"""Ascend rank tables (``RANK_TABLE_FILE``), v1.0 shape: optional for torch_npu.

Without one, torch_npu negotiates HCCL links over the TCPStore (the default here); with one, HCCL
sets links up from the table, and a wrong table only fails at communication time, minutes into a
run. So a recipe's table is checked up front against the recipe's nodes x devices.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.core.errors import BadInput, first_problem

CONTAINER_RANK_TABLE = "/workspace/inputs/rank_table/rank_table.json"


class _Table(BaseModel):
    # Tools add fields (host_nic_ip, pod_name, super_pod_list...); only the v1.0 core is checked.
    model_config = ConfigDict(extra="allow", frozen=True)


class RankDevice(_Table):
    device_id: str = Field(pattern=r"^\d+$")
    device_ip: str = Field(min_length=1)
    rank_id: str = Field(pattern=r"^\d+$")


class Server(_Table):
    server_id: str = Field(min_length=1)
    device: list[RankDevice] = Field(min_length=1)


class RankTable(_Table):
    version: Literal["1.0"]
    server_count: str = Field(pattern=r"^\d+$")
    server_list: list[Server] = Field(min_length=1)
    status: Literal["completed"]

    @field_validator("server_count", mode="before")
    @classmethod
    def _count_as_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def problems(self, nodes: int, per_node: int) -> list[str]:
        """What does not match a run of ``nodes`` x ``per_node`` ranks (empty when it fits)."""
        found = []
        if int(self.server_count) != len(self.server_list):
            found.append(f"server_count {self.server_count} but server_list has {len(self.server_list)} servers")
        if len(self.server_list) != nodes:
            found.append(f"{len(self.server_list)} servers but the recipe has {nodes} nodes")
        for server in self.server_list:
            if len(server.device) != per_node:
                found.append(f"server {server.server_id} lists {len(server.device)} devices, the recipe {per_node} per node")
        ranks = sorted(int(d.rank_id) for s in self.server_list for d in s.device)
        if ranks != list(range(nodes * per_node)):
            found.append(f"rank_ids must be 0..{nodes * per_node - 1} once each, got {ranks}")
        return found


def load_rank_table(path: Path, device, *, where: str) -> RankTable:
    """Read and check a rank table for ``device`` (a recipe Device); BadInput names what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{where}: file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{where}: {path} is not a readable JSON rank table ({exc.__class__.__name__})") from None
    try:
        table = RankTable.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"{where}: {path}: {first_problem(exc)} (expected the v1.0 rank table shape)") from None
    problems = table.problems(device.nodes, device.count)
    if problems:
        raise BadInput(f"{where}: {path}: {problems[0]}")
    return table
