"""ray_cluster.yaml: valid for Ray's cluster launcher (checked offline), secure defaults,
a GPU worker type, and setup commands that install this project with the right PyTorch."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CPU_TORCH = re.compile(
    r"pip install torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/cpu\b"
)
INSTALL_PROJECT = re.compile(r"cd ~/snn-dse && pip install (-q )?-e \"\.\[postgres\]\"")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` validates: the config merged with the provider's defaults (no cloud call)."""
    return prepare_config(copy.deepcopy(raw))


def index_of(commands: list[str], pattern: re.Pattern[str]) -> int:
    hits = [i for i, c in enumerate(commands) if pattern.search(c)]
    assert hits, f"no command matches {pattern.pattern!r} in {commands}"
    return hits[0]


def test_ray_validation_passes(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    validate_config(raw)  # the file as written (JSON schema + cross-field checks)
    validate_config(prepared)
    assert raw["provider"]["type"] in {"aws", "gcp"}
    assert raw["head_node_type"] in raw["available_node_types"]
    assert prepared["available_node_types"][raw["head_node_type"]]["max_workers"] == 0


def test_dashboard_bound_to_localhost(raw: dict[str, Any]) -> None:
    head = " ".join(raw["head_start_ray_commands"])
    assert "ray stop" in raw["head_start_ray_commands"][0]
    assert "ray start --head" in head and "--port=6379" in head
    assert "--dashboard-host=127.0.0.1" in head
    everything = yaml.safe_dump(raw)
    assert "0.0.0.0" not in everything
    assert "--dashboard-host" not in " ".join(raw["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(raw["worker_start_ray_commands"])


def test_security_group_opens_nothing_extra(raw: dict[str, Any]) -> None:
    for rule in raw["provider"].get("security_group", {}).get("IpPermissions", []):
        world = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        world |= any(r.get("CidrIpv6") == "::/0" for r in rule.get("Ipv6Ranges", []))
        if world:
            assert rule.get("FromPort") == rule.get("ToPort") == 22, rule


def test_gpu_and_cpu_worker_types(raw: dict[str, Any]) -> None:
    types = raw["available_node_types"]
    workers = {k: v for k, v in types.items() if k != raw["head_node_type"]}
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) >= 1]
    cpu = [v for v in workers.values() if v["resources"].get("GPU", 0) == 0]
    assert gpu and cpu
    assert all(v["resources"].get("CPU", 0) >= 1 for v in workers.values())
    assert all(v["node_config"]["InstanceType"].startswith(("g", "p")) for v in gpu)
    assert all(v.get("max_workers", 1) >= 1 for v in workers.values())
    assert sum(v.get("min_workers", 0) for v in workers.values()) <= raw["max_workers"]


def test_cpu_nodes_install_project_with_pinned_cpu_torch(
    raw: dict[str, Any], prepared: dict[str, Any]
) -> None:
    assert raw["file_mounts"].get("~/snn-dse") == "."  # the repository itself
    for cmds in (prepared["head_setup_commands"], prepared["worker_setup_commands"]):
        torch_at = index_of(cmds, CPU_TORCH)
        assert index_of(cmds, INSTALL_PROJECT) > torch_at  # torch first: pip keeps the CPU build
        assert not any(re.search(r"torch(?!==2\.13\.0)[=<>]", c) for c in cmds)
    # CPU worker types use the global setup (no per-type override).
    for name, node in raw["available_node_types"].items():
        if node["resources"].get("GPU", 0) == 0 and name != raw["head_node_type"]:
            assert "worker_setup_commands" not in node


def test_gpu_nodes_install_cuda_torch_and_project(raw: dict[str, Any]) -> None:
    for node in raw["available_node_types"].values():
        if node["resources"].get("GPU", 0) >= 1:
            cmds = node["worker_setup_commands"]
            torch_at = index_of(cmds, re.compile(r"pip install torch==2\.13\.0"))
            assert not CPU_TORCH.search(cmds[torch_at])
            assert index_of(cmds, INSTALL_PROJECT) > torch_at
            assert any("ray[default]==" in c for c in cmds)


def test_head_runs_postgres_on_private_address(raw: dict[str, Any]) -> None:
    head = "\n".join(raw["head_setup_commands"])
    assert "postgresql" in head and "listen_addresses" in head
    assert "listen_addresses = '*'" not in head
    assert "createdb -O optuna optuna" in head and "createuser optuna" in head
    assert "scram-sha-256" in head and "trust" not in head
    assert "optuna_storage_url" in head
