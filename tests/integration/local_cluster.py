"""A real multi-node Ray cluster on one machine, and a tracking server all its nodes reach (tests, benchmarks).

Each node is started with the ``ray`` CLI as on a real cluster (``ray start --head``, ``ray start --address``),
so the nodes are separate raylets with their own resources; the head runs the dashboard, so searches are
submitted as Ray jobs. No pytest here: benchmarks use it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

BIN = Path(sys.executable).parent
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


# MLflow's server-side job runner (four huey consumers, for its GenAI jobs) polls its store all the time: 20 CPU
# seconds in a 150-second search on 2 cores. ragsweep starts no server job.
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_ip() -> str:
    """The address Ray gives this machine's nodes (what trials on other nodes would use)."""
    import ray

    return str(ray.util.get_node_ip_address())


def start_mlflow(
    root: Path,
    host: str = "127.0.0.1",
    allowed_hosts: list[str] | None = None,
    timeout_s: float = 120,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``mlflow server`` with a sqlite store and artifacts in ``root`` (its own process group).

    Returns the process and a loopback URI. ``host='0.0.0.0'`` plus ``allowed_hosts`` is how a cluster's head
    serves it to other nodes; ``extra_args`` and ``env`` add to its command line and environment (e.g.
    ``--app-name basic-auth``); raises RuntimeError with the server's log if it does not come up.
    """
    port = free_port()
    log = open(root / "server.log", "wb")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "art"),
        "--workers",
        "1",
        *(extra_args or []),
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", ",".join([*allowed_hosts, *(f"{h}:{port}" for h in allowed_hosts)])]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**ENV, **NO_JOBS, **(env or {})}
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{uri}/health", timeout=2).text.strip() == "OK":
                return proc, uri
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)


def _ray(*args: str, timeout: float = 120) -> str:
    out = subprocess.run([str(BIN / "ray"), *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed ({out.returncode}): {out.stdout[-1500:]}{out.stderr[-3000:]}")
    return out.stdout


@dataclass
class LocalCluster:
    """A head node and any number of worker nodes on this machine. Use as a context manager."""

    head_cpus: float = 1
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    workers: dict[str, int] = field(default_factory=dict)  # label -> node manager port
    _lock: IO[str] | None = field(default=None, repr=False)  # held from start to stop

    @property
    def address(self) -> str:
        return f"{node_ip()}:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def __enter__(self) -> LocalCluster:
        # One such cluster at a time on this machine (tests on other xdist workers wait here): `ray start` records the
        # newest cluster in /tmp/ray/ray_current_cluster, which ray.init("auto") and RAGSWEEP_RAY_ADDRESS=auto join.
        self._lock = open(Path(tempfile.gettempdir()) / "ragsweep-tests-ray-cli-cluster.lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            _ray(
                "start",
                "--head",
                f"--port={self.gcs_port}",
                f"--num-cpus={self.head_cpus:g}",
                "--num-gpus=0",
                "--include-dashboard=true",
                f"--dashboard-port={self.dashboard_port}",
                # the agent's HTTP port (what the job API submits through) defaults to 52365, which the dashboard
                # agent of any other Ray on this machine (another test's search) may hold: then no job is accepted
                f"--dashboard-agent-listen-port={free_port()}",
                "--disable-usage-stats",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_worker(self, label: str, cpus: float) -> None:
        port = free_port()
        # the marker resource tells this node apart in the GCS's node list
        _ray(
            "start",
            f"--address={self.address}",
            f"--num-cpus={cpus:g}",
            "--num-gpus=0",
            f"--resources={json.dumps({self._marker(label): 1})}",
            f"--node-manager-port={port}",
            f"--dashboard-agent-listen-port={free_port()}",  # see __enter__
            "--disable-usage-stats",
        )
        self.workers[label] = port
        self.wait_for_nodes(1 + len(self.workers))

    @staticmethod
    def _marker(label: str) -> str:
        return f"ragsweep_test_node_{label}"

    def nodes(self) -> list[Any]:
        """Alive nodes as the GCS sees them (Ray's NodeState: node_id, is_head_node, resources_total, ...)."""
        from ray.util.state import list_nodes

        return list(list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")]))

    def node_id(self, label: str) -> str:
        """The Ray node id of worker ``label``."""
        for n in self.nodes():
            if self._marker(label) in n.resources_total:
                return str(n.node_id)
        raise RuntimeError(f"worker {label} is not alive; nodes: {self.nodes()}")

    def head_id(self) -> str:
        return next(str(n.node_id) for n in self.nodes() if n.is_head_node)

    def wait_for_nodes(self, n: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.nodes()) != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"expected {n} alive Ray nodes, have {len(self.nodes())}")
            time.sleep(0.5)

    def kill_worker(self, label: str) -> None:
        """SIGKILL worker ``label``'s raylet, as when a machine goes away; its worker processes die with it."""
        import psutil

        node_id = self.node_id(label)
        raylets = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(a == f"--node_id={node_id}" for a in p.info["cmdline"] or [])
            and "raylet" in (p.info["cmdline"] or [""])[0]
        ]
        if not raylets:
            raise RuntimeError(f"no raylet process for node {node_id} (worker {label})")
        for p in raylets:
            p.send_signal(signal.SIGKILL)
        del self.workers[label]

    def start_job(self, entrypoint: list[str], wait_for_agent_s: float = 120) -> subprocess.Popen[str]:
        """``ray job submit`` in the background (its output: the job's logs, then its exit code). A head that is
        still starting its job agent refuses a job ("No available agent"), more often on a loaded machine: the
        submission is retried until ``wait_for_agent_s``."""
        deadline = time.monotonic() + wait_for_agent_s
        while True:
            job = subprocess.Popen(
                [str(BIN / "ray"), "job", "submit", "--address", self.dashboard, "--", *entrypoint],
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                out, _ = job.communicate(timeout=20)  # a refused job ends within seconds; a search runs longer
            except subprocess.TimeoutExpired:
                return job  # accepted and running (communicate() later still gets all of its output)
            if "No available agent" not in out or time.monotonic() > deadline:
                raise RuntimeError(f"ray job submit failed ({job.returncode}): {out[-3000:]}")
            time.sleep(2)

    def submit(self, entrypoint: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        """``ray job submit``, waited for: the job's logs (stdout and stderr together) and its exit code; the job's
        driver runs on the head."""
        job = self.start_job(entrypoint)
        out, _ = job.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(job.args, job.returncode, out, "")

    def stop(self) -> None:
        """Stop this cluster's nodes, and nothing else: ``ray stop --force`` would also kill every other Ray on the
        machine (another test's search, under xdist). Its processes are those that name its GCS port, and their
        children (workers, whose titles no longer show their arguments); then ``ray_current_cluster`` is removed if
        it still names this cluster, as ``ray stop`` does."""
        __import__("ray")  # Ray puts the psutil it ships on sys.path (psutil itself is not installed)
        import psutil

        own = re.compile(rf"(:|--gcs_server_port=){self.gcs_port}\b")
        roots = [p for p in psutil.process_iter(["cmdline"]) if any(own.search(a) for a in p.info["cmdline"] or [])]
        procs = list({p.pid: p for r in roots for p in (r, *_children(r))}.values())
        for p in procs:  # SIGKILL, as `ray stop --force` does (the GCS takes seconds to honour SIGTERM)
            with contextlib.suppress(psutil.Error):
                p.kill()
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{self.gcs_port}"):
                current.unlink()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _alive(proc: Any) -> bool:
    """Running, not a zombie: ``ray start``'s daemons outlive it and are reaped by no one here."""
    import psutil

    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _children(proc: Any) -> list[Any]:
    import psutil

    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []
