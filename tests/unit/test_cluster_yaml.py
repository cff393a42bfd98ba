"""cluster.yaml against Ray's own launcher schema and config preparation (offline: no cloud call)."""

from __future__ import annotations

import copy
import json
import re
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from ragsweep.search.serving.gpu_fit import AWS_FAMILY_GPU
from tests.conftest import REPO

CLUSTER = REPO / "cluster.yaml"
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
# Top-level EC2 RunInstances parameters (what Ray's AWS provider passes node_config through as). Ray's schema
# leaves node_config free-form, so a typo there would only surface at `ray up`.
EC2_RUN_INSTANCES = {
    "InstanceType",
    "ImageId",
    "BlockDeviceMappings",
    "InstanceMarketOptions",
    "IamInstanceProfile",
    "SubnetIds",
    "SecurityGroupIds",
    "KeyName",
    "TagSpecifications",
    "Placement",
    "UserData",
    "NetworkInterfaces",
    "EbsOptimized",
    "CapacityReservationSpecification",
    "MetadataOptions",
}


def _load() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def _check(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does first: schema on the file as written, then defaults merged and validated again."""
    jsonschema.validate(config, SCHEMA)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_schema_and_preparation() -> None:
    prepared = _check(_load())
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and types["head"]["resources"] == {"GPU": 0}
    assert types["gpu_worker"]["min_workers"] >= 1 and types["gpu_worker"]["max_workers"] >= 1
    assert types["cpu_worker"]["min_workers"] == 0  # optional
    assert prepared["provider"]["type"] == "aws"
    for name, node in types.items():
        unknown = set(node["node_config"]) - EC2_RUN_INSTANCES
        assert not unknown, f"{name}.node_config: not EC2 RunInstances parameters: {unknown}"


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        ((), "setup_comands"),  # top level
        (("available_node_types", "gpu_worker"), "min_worker"),  # a node type
        (("docker",), "imag"),  # docker section
    ],
)
def test_a_typo_fails_validation(path: tuple[str, ...], typo: str) -> None:
    config = _load()
    node = config
    for key in path:
        node = node.setdefault(key, {})
    node[typo] = 1
    with pytest.raises(jsonschema.ValidationError, match=typo):
        _check(config)


def _installs(config: dict[str, Any]) -> dict[str, str]:
    """Node type -> the pip install its node runs (a worker type's own worker_setup_commands override the
    top-level ones, as in Ray's launcher)."""
    out = {}
    for name, node in config["available_node_types"].items():
        if name == config["head_node_type"]:
            commands = config["setup_commands"] + config["head_setup_commands"]
        else:
            commands = config["setup_commands"] + node.get(
                "worker_setup_commands", config.get("worker_setup_commands", [])
            )
        (install,) = [c for c in commands if "pip install" in c]
        out[name] = install
    return out


def test_every_node_gets_the_project_installed() -> None:
    config = _load()
    assert config["file_mounts"] == {"~/ragsweep": ".", "~/ragsweep-secrets": "./cluster-secrets"}
    assert (REPO / "cluster-secrets").is_dir()  # `ray up` fails on a file mount whose folder is missing
    extras = set(metadata("ragsweep").get_all("Provides-Extra"))
    for name, install in _installs(config).items():
        node = config["available_node_types"][name]
        assert '-c "$HOME/ragsweep/constraints.txt"' in install, name  # one lock on every node
        (wanted,) = re.findall(r'"\$HOME/ragsweep\[([a-z,-]+)\]"', install)
        assert "cluster" in wanted.split(",") and set(wanted.split(",")) <= extras, name
        # vLLM and CUDA torch only where a GPU is; everywhere else the CPU build of torch
        gpu = node["node_config"]["InstanceType"].split(".")[0] in AWS_FAMILY_GPU
        assert ("gpu" in wanted.split(",")) is gpu, name
        assert gpu or "download.pytorch.org/whl/cpu" in install, name
        # a disk that holds the environment (the stock root disk is 8 GiB) and, off the head, credentials
        (disk,) = node["node_config"]["BlockDeviceMappings"]
        assert disk["Ebs"]["VolumeSize"] >= (200 if gpu else 50), name
        if name != config["head_node_type"]:
            assert node["node_config"]["IamInstanceProfile"], name  # Ray gives only the head a profile
    assert "tracking-server" in _installs(config)[config["head_node_type"]]  # the head's MLflow server
    heads = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in heads and 'bash "$HOME/ragsweep/scripts/head_mlflow.sh" 5000' in heads
    assert "--dashboard-host=0.0.0.0" in heads  # ray job submit from outside the head


def test_readme_cluster_commands_point_at_real_files() -> None:
    readme = (REPO / "README.md").read_text()
    assert "ray up cluster.yaml" in readme and "ray down cluster.yaml" in readme
    assert "ray submit --tmux cluster.yaml search/run.py " in readme
    assert (REPO / "configs" / "gpu.yaml").is_file() and (REPO / "search" / "run.py").is_file()
    # the config the head uses without arguments is the project's gpu.yaml, where file_mounts puts it
    setup = " ".join(_load()["head_setup_commands"])
    assert 'RAGSWEEP_CONFIG="$HOME/ragsweep/configs/gpu.yaml"' in setup and _load()["file_mounts"]["~/ragsweep"] == "."
    # an unquoted ~ in a documented remote path is expanded by the laptop's shell, not the head's
    for doc in (REPO / "README.md", REPO / "docs" / "cluster.md", REPO / "cluster.yaml"):
        for line in doc.read_text().splitlines():
            if "ray submit" in line:
                assert " ~/" not in line, f"{doc.name}: unquoted remote ~ path: {line}"


COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


def test_every_launcher_command_is_valid_bash() -> None:
    """YAML ends a plain scalar at " #": a command cut there (an unclosed quote) fails only at `ray up`."""
    import subprocess

    config = _load()
    commands = [c for key in COMMAND_LISTS for c in config.get(key) or []]
    assert commands
    for cmd in commands:
        out = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"{cmd!r}: {out.stderr}"


def _documented_commands() -> list[tuple[str, str]]:
    """(file, line) for every shell line of the docs, README and cluster.yaml's comments."""
    out = []
    for f in [REPO / "README.md", REPO / "cluster.yaml", *sorted((REPO / "docs").glob("*.md"))]:
        for line in f.read_text().splitlines():
            if f.suffix == ".yaml" and not line.lstrip().startswith("#"):
                continue  # YAML values are the launcher's, which expands a remote ~ itself
            out.append((f.name, line.lstrip("# ").strip()))
    return out


def test_every_documented_ray_submit_survives_a_dropped_connection() -> None:
    """`ray submit` runs the driver in the laptop's SSH session unless --tmux (or --screen) keeps it on the head."""
    submits = [(f, line) for f, line in _documented_commands() if re.match(r"ray submit\b", line)]
    assert len(submits) >= 6
    assert [(f, line) for f, line in submits if not re.search(r"--(tmux|screen)\b", line)] == []


def test_no_documented_command_quotes_a_tilde_the_shell_must_expand() -> None:
    """`"~/x"` is never expanded (a literal ~ folder); remote paths go in single quotes, local ones bare."""
    quoted = [(f, line) for f, line in _documented_commands() if re.search(r'(?<![`\'])"~', line)]
    assert quoted == []


def test_mlflow_login_reaches_every_ray_node_and_the_driver_never_the_repository_copy() -> None:
    """The login in cluster-secrets/mlflow-client is in the environment of every `ray start` (trials inherit it;
    runtime_env never carries it) and of the driver's shell; the folder is copied on its own, never with the
    project, and git ignores it."""
    config = _load()
    source = "test -f ~/ragsweep-secrets/mlflow-client && { set -a; . ~/ragsweep-secrets/mlflow-client; set +a; }"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert start.index(source) < start.index("ray start"), key
    assert any(source in c for c in config["head_setup_commands"])
    # (rsync and docker leave it behind: test_shipping_excludes)
    assert "cluster-secrets/*" in (REPO / ".gitignore").read_text().splitlines()
