"""What leaves a user's machine: `docker build` (the Dockerfile's context, filtered by .dockerignore) and `ray up`
(cluster.yaml's file_mounts, filtered by rsync_exclude) must leave behind every virtual environment, whatever its
name, build and test leftovers, run output, and every secret file, while shipping the project itself."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

import pytest
import yaml

from tests.conftest import REPO

LOCAL_ONLY = [
    ".venv/bin/python",
    ".venv-checks/bin/checkov",
    ".venv-py312/lib/site.py",
    "venv/bin/python",
    "tools/.venv/pyvenv.cfg",
    "ragsweep.egg-info/PKG-INFO",
    "k8s/postgres.env",
    "k8s/mlflow-auth.env",
    "mlflow-auth.env",
    ".env",
    "deploy/.env",
    "cluster-secrets/mlflow-client",  # copied on its own, to ~/ragsweep-secrets, never with the project
    "cluster-secrets/mlflow-server",
    "ragsweep-runs/mlflow.db",
    ".git/config",
    "search/__pycache__/cli.cpython-311.pyc",
]
SHIPPED = [
    "pyproject.toml",
    "constraints.txt",
    "search/run.py",
    "search/serving/engines.py",
    "pipelines/base/files.py",
    "judges/builtin.py",
    "configs/default.yaml",
    "data/xquad_en/corpus.jsonl",
    "scripts/install.sh",
    "k8s/experiment.yaml",
]


def _excluded(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` or a folder above it matches a pattern (Docker's and rsync's common ground: ``*`` within a
    name, ``**/`` for any depth, a pattern without a slash also matching a name at the top)."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for p in patterns:
        p = p.strip().rstrip("/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, p):
                return True
            if p.startswith("**/") and any(
                fnmatch.fnmatchcase("/".join(prefix.split("/")[i:]), p[3:]) for i in range(prefix.count("/") + 1)
            ):
                return True
    return False


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _rsync_exclude() -> list[str]:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())["rsync_exclude"]


@pytest.mark.parametrize("source", ["dockerignore", "rsync_exclude"])
def test_local_environments_and_secrets_stay_behind(source: str) -> None:
    patterns = _dockerignore() if source == "dockerignore" else _rsync_exclude()
    assert not [p for p in patterns if p.startswith("!")], "no re-inclusion: it would need its own review"
    assert [f for f in LOCAL_ONLY if not _excluded(f, patterns)] == []
    assert [f for f in SHIPPED if _excluded(f, patterns)] == []


def test_every_secret_file_the_docs_create_is_covered() -> None:
    """The secret files kustomization.yaml tells users to write are git-ignored and never shipped."""
    text = (REPO / "k8s" / "kustomization.yaml").read_text()
    secrets = sorted({line.split("> ")[-1].strip() for line in text.splitlines() if "> k8s/" in line})
    assert secrets == ["k8s/mlflow-auth.env", "k8s/postgres.env"]
    for f in secrets:
        assert _excluded(f, _dockerignore()) and _excluded(f, _rsync_exclude()), f
