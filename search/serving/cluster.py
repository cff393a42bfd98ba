"""What changes when a search runs on a Ray cluster instead of one machine.

Contract:
- :func:`ray_target` is the Ray address a search joins: ``search.ray_address``, else ``RAY_ADDRESS`` from the
  environment (set by ``ray job submit`` and KubeRay's RayJob), else ``RAGSWEEP_RAY_ADDRESS`` (cluster.yaml sets it
  to ``auto`` on the head, so ``ray submit cluster.yaml search/run.py`` joins the cluster), else ``None`` (start a
  Ray of our own); :func:`ray_target_source` says which.
- :func:`driver_node_ip` is the address under which Ray registered the driver's node: what a loopback host is
  replaced with for other nodes (the machine's other interfaces may not be where the head listens).
- :func:`check_cluster` raises :class:`~search.config.ConfigError` before any work when a search that joins a
  cluster would lose results: a tracking URI that is a local file (trials on other nodes would write to their
  own disk). A loopback host in an HTTP tracking URI (or ``pipeline.qdrant_url``) is not an error:
  :func:`for_other_nodes` swaps it for the driver node's IP, so trials on other nodes reach the same server.
- :func:`tune_root` is where Ray Tune keeps the search's experiment folder: ``search.storage_path`` (a URI such
  as ``s3://bucket/prefix`` or a path on shared storage) or ``<storage_dir>/ray``.
- :func:`retries` is how often Tune retries a failed trial: ``search.max_failures``, else 0 on a Ray of our own
  and 2 on a cluster, where a trial fails when its node goes away.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ragsweep.search.config import ConfigError, ExperimentConfig
from ragsweep.search.tracking.runs import TrackingUnreachable, check_tracking, is_local_store

LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
CLUSTER_RETRIES = 2  # a lost node costs a retry; a trial that fails on its own fails again, so keep it small


RAY_ADDRESS_ENV = ("RAY_ADDRESS", "RAGSWEEP_RAY_ADDRESS")


def ray_target(cfg: ExperimentConfig) -> str | None:
    return cfg.search.ray_address or next((os.environ[k] for k in RAY_ADDRESS_ENV if os.environ.get(k)), None)


def ray_target_source(cfg: ExperimentConfig) -> str:
    """Where :func:`ray_target` came from, for the console."""
    if cfg.search.ray_address:
        return "search.ray_address"
    return next((k for k in RAY_ADDRESS_ENV if os.environ.get(k)), "none")


def driver_node_ip() -> str:
    """The IP of the node this driver runs on, as the cluster registered it (needs ray.init)."""
    import ray

    me = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n.get("NodeID") == me), None)
    return str(node["NodeManagerAddress"]) if node else str(ray.util.get_node_ip_address())


def check_cluster(cfg: ExperimentConfig, tracking_uri: str) -> None:
    """Raise ConfigError naming the setting when joining a cluster with a tracking store on the local disk."""
    address = ray_target(cfg)
    if address is None or not is_local_store(tracking_uri):
        return
    source = ray_target_source(cfg)
    raise ConfigError(
        f"{source} is {address!r}: trials may run on other nodes, but mlflow.tracking_uri is {tracking_uri!r}, a "
        "file on this machine that other nodes cannot write to; start an MLflow tracking server (mlflow server "
        "--host 0.0.0.0 --port 5000 ...) and set mlflow.tracking_uri / --tracking-uri to http://<host>:5000"
    )


def reachable_uri(uri: str, node_ip: str) -> str:
    """``uri`` with a loopback host replaced by ``node_ip`` (the driver's node), so other nodes reach it."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        return uri
    host = f"[{node_ip}]" if ":" in node_ip else node_ip
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def for_other_nodes(cfg: ExperimentConfig, tracking_uri: str, node_ip: str) -> tuple[ExperimentConfig, str, list[str]]:
    """The config and tracking URI that trials on other nodes get: loopback hosts in the tracking URI and in
    ``pipeline.qdrant_url`` replaced by ``node_ip`` (the driver's node); plus a console line per replacement."""
    notes = []
    trial_uri = reachable_uri(tracking_uri, node_ip)
    if trial_uri != tracking_uri:
        try:  # the server may listen on loopback only: then nothing is gained by the node's address
            check_tracking(trial_uri)
            notes.append(
                f"trials on other nodes log to {trial_uri} ({tracking_uri} is this node's loopback; "
                f"{node_ip} is this node's address in the Ray cluster)"
            )
        except TrackingUnreachable:
            notes.append(
                f"MLflow does not answer at {trial_uri} ({node_ip} is this node's address in the Ray "
                f"cluster), so trials log to {tracking_uri}: only trials on this node can; start the "
                "server with --host 0.0.0.0 (or give a URI every node reaches) to use other nodes"
            )
            trial_uri = tracking_uri
    qdrant = cfg.pipeline.qdrant_url
    if qdrant and reachable_uri(qdrant, node_ip) != qdrant:
        notes.append(
            f"trials on other nodes use Qdrant at {reachable_uri(qdrant, node_ip)} ({qdrant} is this node's loopback)"
        )
        cfg = cfg.model_copy(
            update={"pipeline": cfg.pipeline.model_copy(update={"qdrant_url": reachable_uri(qdrant, node_ip)})}
        )
    return cfg, trial_uri, notes


def tune_root(cfg: ExperimentConfig, storage: Path) -> str:
    """Folder or URI holding Ray Tune experiment folders (never a Path: ``Path('s3://b')`` loses a slash)."""
    if cfg.search.storage_path:
        return cfg.search.storage_path.rstrip("/")
    return str((storage / "ray").resolve())


def retries(cfg: ExperimentConfig) -> int:
    if cfg.search.max_failures is not None:
        return cfg.search.max_failures
    return CLUSTER_RETRIES if ray_target(cfg) else 0
