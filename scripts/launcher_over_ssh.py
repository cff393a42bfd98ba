"""The real Ray cluster launcher on this machine: `ray up`, `ray submit cluster.yaml search/run.py` (no arguments)
and `ray down`, through Ray's local node provider over SSH to 127.0.0.1, with cluster.yaml's own commands.

    sudo .venv/bin/python scripts/launcher_over_ssh.py      # root: it adds a user and runs sshd on port 22

Needs openssh-server and rsync (Debian: apt-get install openssh-server rsync). Not part of the test suite: it
needs root, an sshd and the ports Ray's head uses (6379, 8265, 5000), and takes minutes; the launcher test in
tests/integration/test_launcher.py runs the same commands in CI without SSH. docs/cluster.md has its measured time.

What is cluster.yaml's and what is this script's:
- cluster.yaml's: file_mounts, setup_commands, head_setup_commands, head_start_ray_commands (Ray and the MLflow
  server, exactly as written), and the no-argument `ray submit ... search/run.py`.
- this script's: the provider (local, head 127.0.0.1, no workers), the SSH user and key, the installed project
  (~/venv links to this checkout's .venv instead of `pip install` with the gpu extra, which needs vLLM), and the
  experiment (configs/gpu.yaml needs GPUs: a small CPU search is written in its place in the copied project).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
USER = "ragsweep-launcher"
BIN = Path(sys.executable).parent
TINY = """\
dataset: {corpus: ../data/xquad_en/corpus.jsonl, questions: ../data/xquad_en/questions.jsonl, holdout: 0.1}
space: {chunk_size: [400], chunk_overlap: [0], retriever: [bm25], top_k: [2], prompt: [concise]}
pipeline: {max_tokens: 8}
judges: {suite: []}
search: {num_samples: 2, questions_per_trial: 4, scheduler: fifo, finalists: 1, holdout_questions: 4}
mlflow: {experiment: launcher-ssh, model_name: launcher-ssh-model}
"""


def step(msg: str) -> None:
    print(f"[launcher-ssh {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    step("$ " + " ".join(cmd))
    return subprocess.run(cmd, text=True, check=True, **kw)  # type: ignore[call-overload,no-any-return]


def remove_user() -> None:
    """The throwaway user and its processes (Ray, MLflow) from an earlier run, if any."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return
    subprocess.run(["pkill", "-u", USER], capture_output=True)
    time.sleep(1)
    subprocess.run(["userdel", "-f", USER], capture_output=True)


def user_home(work: Path) -> Path:
    """A throwaway user whose home is under ``work``, reachable over SSH with a fresh key."""
    home = work / "home"
    remove_user()
    run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/bash", USER])
    run(["usermod", "-p", "*", USER])  # no password, but not locked: sshd refuses locked accounts even with a key
    key = work / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(f"{key}.pub", ssh / "authorized_keys")
    # Ubuntu's ~/.profile (a login shell reads it; it reads ~/.bashrc), as on the AMI cluster.yaml names.
    (home / ".profile").write_text('if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi\n')
    (home / "venv").symlink_to(REPO / ".venv")  # the installed project (see the module docstring)
    run(["chown", "-R", f"{USER}:{USER}", str(home)])
    os.chmod(work, 0o755)
    return home


def start_sshd(work: Path) -> subprocess.Popen[bytes]:
    host_key = work / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    conf = work / "sshd_config"
    conf.write_text(
        f"Port 22\nListenAddress 127.0.0.1\nHostKey {host_key}\nPasswordAuthentication no\n"
        f"PubkeyAuthentication yes\nAllowUsers {USER}\nUsePAM no\nPidFile {work}/sshd.pid\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(conf), "-E", str(work / "sshd.log")])
    time.sleep(1)
    if proc.poll() is not None:
        sys.exit(f"sshd did not start: {(work / 'sshd.log').read_text()}")
    return proc


def cluster_config(work: Path, project: Path) -> Path:
    """cluster.yaml with the local provider; its commands as written, but the pip install (see the docstring)."""
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cfg["provider"] = {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    cfg["auth"] = {"ssh_user": USER, "ssh_private_key": str(work / "id_ed25519")}
    for key in (
        "available_node_types",
        "head_node_type",
        "max_workers",
        "upscaling_speed",
        "idle_timeout_minutes",
    ):  # cloud-only fields: Ray refuses them for on-premise clusters
        cfg.pop(key, None)
    cfg["file_mounts"] = {"~/ragsweep": str(project)}
    for key in ("setup_commands", "head_setup_commands"):
        cfg[key] = [c for c in cfg[key] if "pip install" not in c]
    for key in ("worker_start_ray_commands",):
        cfg[key] = []
    path = work / "cluster-local.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("run as root: the script adds a user and starts sshd on 127.0.0.1:22")
    for tool in ("sshd", "rsync"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install openssh-server rsync")
    t0 = time.monotonic()
    # The user runs this checkout's .venv, whose Python may live under a home other users cannot enter (pyenv in
    # /root): let them traverse it (not list it) for the run, and put the mode back after.
    python_home = Path(os.path.realpath(REPO / ".venv" / "bin" / "python")).parents[3]
    saved_modes = {p: p.stat().st_mode & 0o777 for p in (python_home, *python_home.parents) if p != Path("/")}
    for p, mode in saved_modes.items():
        os.chmod(p, mode | 0o011)
    work = Path(tempfile.mkdtemp(prefix="ragsweep-launcher-"))
    home = user_home(work)
    sshd = start_sshd(work)
    project = work / "project"  # what file_mounts copies: this checkout, with a CPU experiment as configs/gpu.yaml
    shutil.copytree(
        REPO,
        project,
        ignore=shutil.ignore_patterns(
            ".venv*", ".git", "ragsweep-runs", "__pycache__", ".mypy_cache", ".ruff_cache", ".typecheck"
        ),
    )
    (project / "configs" / "gpu.yaml").write_text(TINY)
    config = cluster_config(work, project)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    times: dict[str, float] = {}
    try:
        submit = ["ray", "submit", str(config), str(REPO / "search" / "run.py"), "--no-config-cache"]
        for name, cmd in (("ray up", ["ray", "up", str(config), "-y", "--no-config-cache"]), ("ray submit", submit)):
            t = time.monotonic()
            step("$ " + " ".join(cmd))
            out = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, capture_output=True, text=True)
            times[name] = time.monotonic() - t
            print(out.stdout[-8000:] + out.stderr[-4000:], flush=True)
            if out.returncode != 0:
                sys.exit(f"`{name}` failed ({out.returncode})")
        text = out.stdout + out.stderr
        for expected in (
            "(from RAGSWEEP_CONFIG",
            "MLflow tracking URI from MLFLOW_TRACKING_URI",
            "joined Ray cluster auto (RAGSWEEP_RAY_ADDRESS)",
            "champion",
        ):
            if expected not in text:
                sys.exit(f"`ray submit` output lacks {expected!r}")
    finally:
        t = time.monotonic()
        subprocess.run([str(BIN / "ray"), "down", str(config), "-y"], env=env, text=True)
        times["ray down"] = time.monotonic() - t
        sshd.terminate()
        remove_user()
        for p, mode in saved_modes.items():
            os.chmod(p, mode)
    step(
        "times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        + f", total {time.monotonic() - t0:.0f} s (home: {home})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
