"""The servers a search shares: started once (local processes or Ray actors), stopped at the end, whatever the end.

Contract: :func:`serve` is a context manager yielding :class:`Endpoints` (generator, judge and the named generators
a search samples) whose servers are healthy, one server per distinct setting; on exit every server it started is
stopped (also on error or Ctrl-C). An :class:`Endpoint` is what a trial needs to reach one model (URLs, model name,
engine, key, fingerprint); it pickles into Ray workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ragsweep.pipelines.llm_client.cache import RequestCache
from ragsweep.pipelines.llm_client.client import Engine, LLMClient, LLMError, check_endpoint
from ragsweep.search.config import ModelEndpoint
from ragsweep.search.console import logger
from ragsweep.search.registries import ENGINES
from ragsweep.search.serving.actors import start_replicas, stop_replicas
from ragsweep.search.serving.engines import ServerError, api_key, build_server

log = logger("serving")


@dataclass(kw_only=True, frozen=True)
class Endpoint:
    """How a trial reaches one model's servers (one URL per replica); picklable, so it travels to Ray workers.

    ``actor_names`` name the Ray actors that own the servers: :meth:`resolved` asks them for their current URLs.
    """

    base_urls: tuple[str, ...]
    model: str
    engine: Engine
    api_key: str = "not-needed"
    max_concurrency: int = 2
    timeout_s: float = 120.0
    max_retries: int = 3
    model_fingerprint: str = ""  # identifies the weights for the request cache (never the URL)
    actor_names: tuple[str, ...] = ()

    def resolved(self) -> Endpoint:
        """This endpoint with the URLs its server actors report now (unchanged when it has no actors)."""
        if not self.actor_names:
            return self
        import ray

        urls = ray.get([ray.get_actor(n).base_url.remote() for n in self.actor_names])
        return dataclasses.replace(self, base_urls=tuple(urls))

    def client(self, cache: RequestCache | None = None) -> LLMClient:
        return LLMClient(
            self.base_urls,
            self.model,
            engine=self.engine,
            api_key=self.api_key,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            cache=cache,
            model_fingerprint=self.model_fingerprint or f"{self.engine}:{self.model}",
        )


@dataclass(frozen=True)
class Endpoints:
    generator: Endpoint
    judge: Endpoint
    generators: dict[str, Endpoint] = dataclasses.field(default_factory=dict)  # llm.generators, by name

    def generator_for(self, name: str | None) -> Endpoint:
        """The endpoint of a trial's generator: a named one, or the default when the trial samples none."""
        return self.generator if name is None else self.generators[name]


def _start(
    cfg: ModelEndpoint,
    log_dir: Path,
    role: str,
    stack: contextlib.ExitStack,
    seed: int,
    ray_prefix: str | None,
    public: bool,
) -> Endpoint:
    names: list[str] = []
    if ENGINES.get(cfg.engine) is None:  # an endpoint someone else runs: check it answers
        assert cfg.base_url is not None
        try:
            check_endpoint(cfg.base_url)
        except LLMError as e:
            raise ServerError(f"{role} endpoint: {e}") from None
        urls, model, fingerprint = [cfg.base_url], cfg.model, f"external:{cfg.model}"
    else:
        model = ENGINES.get(cfg.engine).served_model(cfg)
        where = f"{cfg.replicas} Ray actor(s)" if ray_prefix else "a local process"
        log.info(f"starting {cfg.engine} server for the {role} ({model}) as {where} ...")
        t0 = time.perf_counter()
        if ray_prefix is not None:
            handles, names, urls, fingerprint = start_replicas(cfg, role, log_dir, seed, public, ray_prefix)
            stack.callback(stop_replicas, handles)
        else:
            server, fingerprint = build_server(cfg, log_dir / f"{role}-{cfg.engine}.log", seed)
            stack.callback(server.stop)
            server.start()
            urls = [server.base_url]
        log.info(f"{role} server ready at {', '.join(urls)} in {time.perf_counter() - t0:.1f}s")
    return Endpoint(
        base_urls=tuple(urls),
        model=model,
        engine=cfg.engine,
        api_key=api_key(cfg),
        max_concurrency=cfg.max_concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        model_fingerprint=fingerprint,
        actor_names=tuple(names),
    )


@contextlib.contextmanager
def serve(
    generator: ModelEndpoint,
    judge: ModelEndpoint | None,
    log_dir: Path,
    seed: int = 0,
    *,
    ray_prefix: str | None = None,
    public: bool = False,
    first_role: str = "generator",
    generators: dict[str, ModelEndpoint] | None = None,
) -> Iterator[Endpoints]:
    """Start (or check) the generator and judge servers and stop them on exit, whatever the exit.

    With ``ray_prefix`` (Ray initialised) each server is a named Ray actor ``<prefix>-<role>-<i>``; without it,
    a process of this one (the champion model does that). One server serves both roles when settings match.
    ``first_role`` names the first server in messages and logs (calibration starts only a judge). Each of
    ``generators`` (role ``generator-<name>``) reuses the server of an identical setting already started.
    """
    with contextlib.ExitStack() as stack:
        gen = _start(generator, log_dir, first_role, stack, seed, ray_prefix, public)
        same = judge is None or judge == generator
        jud = gen if same else _start(judge, log_dir, "judge", stack, seed, ray_prefix, public)  # type: ignore[arg-type]
        started: list[tuple[ModelEndpoint, Endpoint]] = [(generator, gen), (judge or generator, jud)]
        named: dict[str, Endpoint] = {}
        for name, cfg in (generators or {}).items():
            found = next((ep for c, ep in started if c == cfg), None)
            if found is None:
                found = _start(cfg, log_dir, f"generator-{name}", stack, seed, ray_prefix, public)
                started.append((cfg, found))
            named[name] = found
        yield Endpoints(gen, jud, named)
