"""`ray submit cluster.yaml search/run.py`, as Ray runs it on the head: cluster.yaml's head set-up commands run in
a home of their own, the script is copied there alone and run with no arguments in a login shell, against a real
`ray start --head` and a real `mlflow server` listening on 127.0.0.1 only. It must join the cluster, find its config
and the tracking server, say where each came from, and register a champion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, start_mlflow_server
from tests.integration.local_cluster import LocalCluster

pytestmark = pytest.mark.integration


def test_ray_submit_with_no_arguments_runs_the_clusters_search(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    (home / "ragsweep" / "configs").mkdir(parents=True)
    proc, uri = start_mlflow_server(tmp_path)
    try:
        # cluster.yaml's set-up for the head, as written, in this home. The install step is pointed at this test's
        # environment (~/venv is it) instead of pip-installing the project again; MLflow's port is the test server's.
        (home / "venv").symlink_to(Path(sys.executable).parent.parent)
        # A cloud image's ~/.profile (Ubuntu's, as on the AMI): a login shell reads it, and it reads ~/.bashrc.
        profile = 'if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi\n'
        (home / ".profile").write_text(profile)
        cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
        commands = [c for c in cluster["setup_commands"] + cluster["head_setup_commands"] if "pip install" not in c]
        for cmd in commands:
            subprocess.run(["bash", "-c", cmd], env={**os.environ, "HOME": str(home)}, check=True, timeout=30)
        bashrc = (home / ".bashrc").read_text()
        assert "source ~/venv/bin/activate" in bashrc and "RAGSWEEP_RAY_ADDRESS=auto" in bashrc
        (home / ".bashrc").write_text(bashrc.replace("http://127.0.0.1:5000", uri))
        # The cluster's config where cluster.yaml's file_mounts put the project (a small CPU search here).
        (home / "ragsweep" / "configs" / "gpu.yaml").write_text(f"""
dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}, holdout: 0}}
space: {{chunk_size: [400], chunk_overlap: [0], retriever: [bm25], top_k: [2], prompt: [concise]}}
pipeline: {{max_tokens: 8}}
judges: {{suite: []}}
search: {{num_samples: 1, questions_per_trial: 3, scheduler: fifo, finalists: 1, oracle: false}}
mlflow: {{experiment: launcher, model_name: launcher-model}}
""")
        shutil.copy(REPO / "search" / "run.py", home / "run.py")  # what ray submit does: the script alone
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAGSWEEP_CONFIG", "RAGSWEEP_RAY_ADDRESS")
        }
        env.update(
            {
                "HOME": str(home),
                "RAY_AUTH_MODE": "disabled",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "PATH": "/usr/local/bin:/usr/bin:/bin",
            }
        )  # a login shell's; ~/.bashrc adds the venv
        with LocalCluster(head_cpus=2):
            out = subprocess.run(
                ["bash", "--login", "-c", "-i", "python ~/run.py"],
                cwd=home,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
        text = out.stdout + out.stderr
        assert out.returncode == 0, text[-4000:]
        assert f"config: {home}/ragsweep/configs/gpu.yaml (from RAGSWEEP_CONFIG" in text, text[-3000:]
        assert "MLflow tracking URI from MLFLOW_TRACKING_URI" in text
        assert "joined Ray cluster auto (RAGSWEEP_RAY_ADDRESS)" in text
        # MLflow listens on loopback only: the head's cluster address does not answer, so trials keep the loopback
        # URI (they run on the head here) and the search says what other nodes would need.
        assert "so trials log to " + uri in text and "--host 0.0.0.0" in text
        version = MlflowClient(uri).get_model_version_by_alias("launcher-model", "champion")
        assert version.version == "1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_run_py_from_any_directory_finds_the_projects_default_config(tmp_path: Path) -> None:
    """Without --config and RAGSWEEP_CONFIG, the project's configs/default.yaml, not the working directory's."""
    env = {k: v for k, v in os.environ.items() if k != "RAGSWEEP_CONFIG"}
    out = subprocess.run(
        [sys.executable, str(REPO / "search" / "run.py"), "--num-samples", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert f"config: {REPO / 'configs' / 'default.yaml'} (from the project's default" in out.stdout
    assert "flag --num-samples" in out.stderr  # the project's config was read; the flag is what is wrong


def _head_home(tmp_path: Path) -> tuple[Path, dict[str, str], list[str], int]:
    """A head's home as `ray up` leaves it (the project where file_mounts puts it), the environment its commands
    run in, cluster.yaml's MLflow start command on a free port, and that port."""
    from tests.integration.local_cluster import free_port

    port = free_port()
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    commands = [c.replace("5000", str(port)) for c in cluster["head_start_ray_commands"] if "head_mlflow.sh" in c]
    assert len(commands) == 1
    home = tmp_path / "home"
    home.mkdir()
    (home / "ragsweep").symlink_to(REPO)
    # what the head's ~/.bashrc exports (its own server's URI), which must not stop the server from starting
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
    }
    return home, env, commands, port


def _stop_head_mlflow(home: Path) -> None:
    pid_file = home / "mlflow" / "server.pid"
    if pid_file.exists():
        subprocess.run(["bash", "-c", f"kill -- -$(cat {pid_file}) 2>/dev/null || kill $(cat {pid_file})"])


def test_head_start_commands_start_mlflow_once_and_wait_for_it(tmp_path: Path) -> None:
    """cluster.yaml's MLflow line as `ray up` runs it on the head: the server starts detached, `ray up` returns
    only when it answers, and running it again (a second `ray up`) starts no second server. (The first version
    never started it: `pgrep -f "mlflow server"` matched its own command line; seen through the real launcher,
    scripts/launcher_over_ssh.py.) With no cluster-secrets it says that the server takes no login."""
    home, env, commands, port = _head_home(tmp_path)
    try:
        for _ in range(2):
            for cmd in commands:
                out = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=240)
                assert out.returncode == 0, out.stdout + out.stderr
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
            pids = (home / "mlflow" / "server.pid").read_text().split()
        assert len(pids) == 1
        # one server: the pid file's process is alive and no other mlflow server listens for this home
        out = subprocess.run(["pgrep", "-f", "--", f"mlflow server .*--port {port}"], capture_output=True, text=True)
        assert out.stdout.split().count(pids[0]) == 1
        assert (home / "mlflow" / "mlflow.db").is_file()
    finally:
        _stop_head_mlflow(home)


def test_cluster_secrets_give_the_head_an_authenticated_mlflow_and_every_node_its_login(tmp_path: Path) -> None:
    """scripts/cluster_secrets.sh's files, where file_mounts puts them: the head's server takes MLflow's basic-auth
    login, no password is on its command line, a shell that sources mlflow-client as cluster.yaml's `ray start`
    lines do logs with it; and an mlflow-client naming a server of your own makes the head start none."""
    home, env, commands, port = _head_home(tmp_path)
    secrets = home / "ragsweep-secrets"
    made = subprocess.run(["bash", str(REPO / "scripts" / "cluster_secrets.sh"), str(secrets)], capture_output=True)
    assert made.returncode == 0, made.stderr
    assert oct((secrets / "mlflow-client").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(["bash", str(REPO / "scripts" / "cluster_secrets.sh"), str(secrets)], capture_output=True)
    assert again.returncode == 1 and b"nothing written" in again.stderr  # never overwrites a user's file
    password = dict(line.split("=", 1) for line in (secrets / "mlflow-client").read_text().splitlines() if "=" in line)[
        "MLFLOW_TRACKING_PASSWORD"
    ]
    uri = f"http://127.0.0.1:{port}"
    try:
        for cmd in commands:
            subprocess.run(["bash", "-c", cmd], env=env, check=True, timeout=240)
        assert httpx.get(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code == 401
        pid = (home / "mlflow" / "server.pid").read_text().strip()
        assert password not in Path(f"/proc/{pid}/cmdline").read_text()
        cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
        (start,) = [c for c in cluster["worker_start_ray_commands"] if "ray start" in c]
        login = start[: start.index("ray start")]  # what runs before `ray start`: the login into the environment
        check = f'{login} python -c "from mlflow import MlflowClient; MlflowClient({uri!r}).search_experiments()"'
        clean = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")}
        out = subprocess.run(["bash", "-c", check], env=clean, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        # A server of your own in mlflow-client: the head starts none and waits for that one.
        other = tmp_path / "other"
        other.mkdir()
        (other / "ragsweep").symlink_to(REPO)
        (other / "ragsweep-secrets").mkdir()
        (other / "ragsweep-secrets" / "mlflow-client").write_text(f"MLFLOW_TRACKING_URI={uri}\n")
        out = subprocess.run(
            ["bash", "-c", commands[0].replace(str(port), "1")],
            env={**env, "HOME": str(other)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and "starting none" in out.stdout, out.stdout + out.stderr
        assert not (other / "mlflow" / "server.pid").exists()
    finally:
        _stop_head_mlflow(home)
