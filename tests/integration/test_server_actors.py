"""Server actors with the real llama.cpp server: crash and restart, replicas, clean stop."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from ragsweep.pipelines.llm_client.client import ChatRequest, ChatResponse
from ragsweep.search.config import ModelEndpoint
from ragsweep.search.serving.servers import serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # "local": a Ray of its own, never a cluster another test started (plain ray.init() joins the newest `ray start`)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _gone(pid: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a dead child of ours is a zombie until reaped
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return True
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest((("user", f"Count to {i + 3}."),), max_tokens=24) for i in range(n)]


def test_killed_server_restarts_and_in_flight_requests_complete(local_ray: None, tmp_path: Path) -> None:
    cfg = ModelEndpoint(max_restarts=2, max_retries=5)
    with serve(cfg, None, tmp_path, ray_prefix="t-restart") as eps:
        actor = ray.get_actor(eps.generator.actor_names[0])
        first_pid = ray.get(actor.pid.remote())
        client = eps.generator.resolved().client()
        out: list[ChatResponse] = []
        worker = threading.Thread(target=lambda: out.extend(client.complete(_requests(8))))
        worker.start()
        time.sleep(1.0)
        os.kill(first_pid, signal.SIGKILL)  # mid-batch
        worker.join(timeout=120)
        assert not worker.is_alive() and len(out) == 8  # every request answered, some after the restart
        status = ray.get(actor.status.remote())
        assert status["restarts"] == 1 and status["alive"]
        assert any("exited with code -9" in e for e in status["events"])
        assert any("restarted at" in e for e in status["events"])
        new_pid = ray.get(actor.pid.remote())
        assert new_pid != first_pid
        assert eps.generator.resolved().base_urls == eps.generator.base_urls  # same port after the restart
    assert _gone(new_pid)  # a clean stop leaves no server behind


def test_replicas_share_requests_and_survive_one_loss(local_ray: None, tmp_path: Path) -> None:
    cfg = ModelEndpoint(replicas=2, max_restarts=0, max_retries=1)
    with serve(cfg, None, tmp_path, ray_prefix="t-replicas") as eps:
        assert len(eps.generator.base_urls) == 2
        client = eps.generator.resolved().client()
        client.complete(_requests(6))
        assert sorted(client.stats.by_url.values()) == [3, 3]  # spread over both
        dead = ray.get_actor(eps.generator.actor_names[0])
        pids = [ray.get(ray.get_actor(n).pid.remote()) for n in eps.generator.actor_names]
        os.kill(pids[0], signal.SIGKILL)
        assert _gone(pids[0])
        survivor = eps.generator.resolved().client()
        out = survivor.complete(_requests(4))
        assert len(out) == 4 and all(r.completion_tokens > 0 for r in out)
        assert survivor.stats.failovers >= 1
        assert set(survivor.stats.by_url) == {eps.generator.base_urls[1]}
        assert not ray.get(dead.status.remote())["alive"]
    assert _gone(pids[1])


def test_port_in_use_is_a_clear_start_up_error(tmp_path: Path) -> None:
    import socket

    from ragsweep.search.serving.engines import LlamaCppServer, ServerError, resolve_gguf

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LlamaCppServer(resolve_gguf("default"), tmp_path / "server.log", startup_timeout_s=60)
        with pytest.raises(ServerError, match=r"exited with code \d+ during start-up(.|\n)*address already in use"):
            server.start(port=port)
