"""LLM servers as Ray actors: one named actor per replica owns one server process on its node.

Contract: :func:`start_replicas` places ``cfg.replicas`` actors (pinned by ``num_gpus`` / ``num_cpus``), waits until
every server is healthy and returns their handles, names and URLs. Each actor watches its process and restarts
it on the same port when it dies (at most ``cfg.max_restarts`` times, with exponential backoff), logging every
event. :func:`stop_replicas` stops the processes and kills the actors; a server process also dies with its actor
(PR_SET_PDEATHSIG), so a killed driver leaves nothing behind.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragsweep.search.config import ModelEndpoint
from ragsweep.search.serving.engines import ServerError, build_server


@dataclass(frozen=True)
class ServerSpec:
    cfg: ModelEndpoint
    log_path: Path
    seed: int
    public: bool  # bind the node's IP (multi-node cluster) instead of 127.0.0.1
    label: str  # e.g. "generator-0", for log lines


class ServerActor:
    """Runs inside a Ray actor process; methods are called through ``ray.get(handle.method.remote())``."""

    def __init__(self, spec: ServerSpec) -> None:
        import ray

        host = ray.util.get_node_ip_address() if spec.public else "127.0.0.1"
        self.server, self.fingerprint = build_server(spec.cfg, spec.log_path, spec.seed, host=host)
        self.label = spec.label
        self.max_restarts = spec.cfg.max_restarts
        self.restarts = 0
        self.events: list[str] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> str:
        self.server.start()
        self._event(f"ready at {self.server.base_url}")
        self._watcher = threading.Thread(target=self._watch, name=f"watch-{self.label}", daemon=True)
        self._watcher.start()
        return self.server.base_url

    def base_url(self) -> str:
        return self.server.base_url

    def model_fingerprint(self) -> str:
        return self.fingerprint

    def pid(self) -> int | None:
        return self.server.proc.pid if self.server.proc is not None else None

    def status(self) -> dict[str, Any]:
        proc = self.server.proc
        return {
            "label": self.label,
            "restarts": self.restarts,
            "alive": proc is not None and proc.poll() is None,
            "events": list(self.events),
        }

    def stop(self) -> None:
        self._stopping.set()
        self.server.stop()
        self._event("stopped")

    def _event(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {self.label}: {msg}"
        self.events.append(line)
        print(f"[ragsweep] server {line}", flush=True)  # Ray forwards actor output to the driver's console

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            proc = self.server.proc
            if proc is None or proc.poll() is None:
                continue
            if self.restarts >= self.max_restarts:
                self._event(f"exited with code {proc.returncode}; restart budget ({self.max_restarts}) spent")
                return
            delay = min(2.0**self.restarts, 30.0)
            self._event(
                f"exited with code {proc.returncode}; restart {self.restarts + 1}/{self.max_restarts} in {delay:.0f}s"
            )
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            try:
                self.server.start(port=self.server.port)
                self._event(f"restarted at {self.server.base_url}")
            except ServerError as e:
                self._event(f"restart failed: {e}")


def start_replicas(
    cfg: ModelEndpoint, role: str, log_dir: Path, seed: int, public: bool, name_prefix: str
) -> tuple[list[Any], list[str], list[str], str]:
    """Start ``cfg.replicas`` server actors; return (handles, names, base URLs, model fingerprint)."""
    import ray

    actor_cls = ray.remote(ServerActor)
    num_gpus = cfg.gpus_per_replica
    placement: dict[str, Any] = {}
    if not num_gpus:
        # A CPU server goes on the driver's node: that is where preflight found its model file, and on a cluster
        # it keeps the server off worker nodes that may go away (every trial would lose it). Hard affinity:
        # a soft one still spilled servers to other nodes. GPU servers go wherever Ray finds the GPUs.
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        placement["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        )
    handles: list[Any] = []
    names: list[str] = []
    for i in range(cfg.replicas):
        name = f"{name_prefix}-{role}-{i}"
        spec = ServerSpec(cfg, log_dir / f"{role}-{cfg.engine}-{i}.log", seed, public, f"{role}-{i}")
        handles.append(
            actor_cls.options(
                name=name, num_cpus=cfg.num_cpus, num_gpus=num_gpus, max_concurrency=4, **placement
            ).remote(spec)
        )
        names.append(name)
    # Placement can wait for resources (e.g. GPUs an autoscaler adds); start-up itself has its own timeout.
    try:
        urls = ray.get([h.start.remote() for h in handles], timeout=cfg.startup_timeout_s + cfg.placement_timeout_s)
        fingerprint = ray.get(handles[0].model_fingerprint.remote())
    except ray.exceptions.GetTimeoutError:
        stop_replicas(handles)
        waited = cfg.startup_timeout_s + cfg.placement_timeout_s
        raise ServerError(
            f"{role} server ({cfg.engine}, {cfg.model}) not up within {waited:.0f}s: each replica needs "
            f"num_gpus={num_gpus}, num_cpus={cfg.num_cpus}; cluster resources: {ray.cluster_resources()}"
        ) from None
    except ray.exceptions.RayTaskError as e:
        stop_replicas(handles)
        cause = e.cause if isinstance(e.cause, Exception) else e
        raise ServerError(str(cause)) from None
    return handles, names, list(urls), fingerprint


def stop_replicas(handles: list[Any]) -> None:
    """Stop every server process, then the actors. Never raises: it runs on every way out of a search."""
    import ray

    for h in handles:
        try:
            ray.get(h.stop.remote(), timeout=60)
        except Exception:  # noqa: BLE001 - the actor may already be gone; killing it below is enough
            pass
        try:
            ray.kill(h)
        except Exception:  # noqa: BLE001
            pass


def replica_statuses(names: list[str]) -> list[dict[str, Any]]:
    import ray

    return ray.get([ray.get_actor(n).status.remote() for n in names])
