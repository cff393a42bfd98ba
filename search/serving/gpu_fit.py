"""Will each vLLM server fit in its share of a GPU? Checked from the model's shape before anything starts.

vLLM takes ``gpu_memory_utilization`` x the GPU's memory, loads the weights, keeps room for activations and the
CUDA context, and gives the rest to the KV cache; it refuses to start when the KV cache cannot hold one sequence
of ``max_model_len`` tokens. The estimate here mirrors that:

    budget   = gpu_memory_utilization x GPU memory
    needed   = weights + OVERHEAD_GB + KV bytes per token x max_model_len
    fits     = budget >= needed

Servers also share GPUs: Ray packs replicas onto a GPU while their ``num_gpus`` shares sum to at most 1, and each
vLLM process holds, beside its ``gpu_memory_utilization`` share, a CUDA context and CUDA-graph pools that the share
does not count (PROCESS_OVERHEAD_GB). So every set of replicas Ray may put on one GPU must fit together:

    sum of (gpu_memory_utilization x GPU memory + PROCESS_OVERHEAD_GB) <= GPU memory

Weights come from the model folder's ``*.safetensors`` sizes when the model is a local folder (exact, quantized
models included), else from the parameter count x bytes per parameter of its dtype. The shape (layers, KV heads,
head size, dtype, context) comes from the folder's or Hugging Face cache's ``config.json``, else from
``KNOWN_MODELS``. A model found nowhere is reported as not checked, never guessed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragsweep.search.config import GPU_MEMORY_GB, ExperimentConfig, ModelEndpoint

GB = 1e9
OVERHEAD_GB = 1.5  # CUDA context, activations at vLLM's default batch budget, CUDA graphs: measured ~1-2 GB
# Per vLLM process, outside its gpu_memory_utilization share: the CUDA context (~0.5 GB) and CUDA-graph pools
# (~0.5 GB at vLLM's default capture sizes). Only matters where servers share a GPU.
PROCESS_OVERHEAD_GB = 1.0
MAX_EXACT_REPLICAS = 16  # above this many fractional replicas, the worst shared GPU is found greedily
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "auto": 2}

# Where a GPU type is named outside ragsweep's config: AWS instance families (cluster.yaml) and the
# `nvidia.com/gpu.product` label of NVIDIA's GPU feature discovery (k8s/gpu-nodes.yaml).
AWS_FAMILY_GPU = {
    "g4dn": "T4",
    "g5": "A10G",
    "g6": "L4",
    "g6e": "L40S",
    "p4d": "A100-40GB",
    "p4de": "A100-80GB",
    "p5": "H100",
    "p5e": "H200",
}
GFD_PRODUCT_GPU = {
    "NVIDIA-A10G": "A10G",
    "NVIDIA-L4": "L4",
    "NVIDIA-L40S": "L40S",
    "Tesla-T4": "T4",
    "NVIDIA-A100-SXM4-40GB": "A100-40GB",
    "NVIDIA-A100-SXM4-80GB": "A100-80GB",
    "NVIDIA-H100-80GB-HBM3": "H100",
}


@dataclass(kw_only=True, frozen=True)
class ModelShape:
    """What the fit needs to know about a model (from its config.json, or KNOWN_MODELS)."""

    params_b: float  # parameters, billions
    layers: int
    kv_heads: int
    head_dim: int
    max_context: int
    dtype: str = "bfloat16"
    weights_gb: float | None = None  # exact, from the safetensors files, when the model is a local folder

    @property
    def weight_bytes(self) -> float:
        return self.weights_gb * GB if self.weights_gb is not None else self.params_b * 1e9 * DTYPE_BYTES[self.dtype]


# Models the shipped configs name, for machines that have not downloaded them (values from their config.json).
KNOWN_MODELS: dict[str, ModelShape] = {
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(params_b=0.494, layers=24, kv_heads=2, head_dim=64, max_context=32768),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelShape(params_b=1.54, layers=28, kv_heads=2, head_dim=128, max_context=32768),
    "Qwen/Qwen2.5-3B-Instruct": ModelShape(params_b=3.09, layers=36, kv_heads=2, head_dim=128, max_context=32768),
    "Qwen/Qwen2.5-7B-Instruct": ModelShape(params_b=7.62, layers=28, kv_heads=4, head_dim=128, max_context=32768),
    "Qwen/Qwen2.5-14B-Instruct": ModelShape(params_b=14.7, layers=48, kv_heads=8, head_dim=128, max_context=32768),
    "meta-llama/Llama-3.1-8B-Instruct": ModelShape(
        params_b=8.03, layers=32, kv_heads=8, head_dim=128, max_context=131072
    ),
    "mistralai/Mistral-7B-Instruct-v0.3": ModelShape(
        params_b=7.25, layers=32, kv_heads=8, head_dim=128, max_context=32768
    ),
}


@dataclass(kw_only=True, frozen=True)
class Fit:
    """One server's verdict. ``shape`` None = the model could not be found: not checked."""

    where: str
    model: str
    replicas: int
    utilization: float
    gpu_gb: float
    max_model_len: int
    shape: ModelShape | None
    kv_dtype: str

    @property
    def budget_gb(self) -> float:
        return self.utilization * self.gpu_gb

    @property
    def kv_per_token(self) -> float:
        assert self.shape is not None
        return 2 * self.shape.layers * self.shape.kv_heads * self.shape.head_dim * DTYPE_BYTES[self.kv_dtype]

    @property
    def needed_gb(self) -> float:
        assert self.shape is not None
        return (self.shape.weight_bytes + self.kv_per_token * self.max_model_len) / GB + OVERHEAD_GB

    @property
    def fits(self) -> bool | None:
        return None if self.shape is None else self.budget_gb >= self.needed_gb

    def line(self) -> str:
        head = (
            f"{self.where} {self.model} (x{self.replicas}): {self.utilization:g} x {self.gpu_gb:g} GB = "
            f"{self.budget_gb:.1f} GB"
        )
        if self.shape is None:
            return (
                f"{head}; not checked: {self.model!r} is not a local folder, not in the Hugging Face cache "
                "and not a known model"
            )
        s = self.shape
        weights = s.weight_bytes / GB
        kv_gb = self.kv_per_token * self.max_model_len / GB
        parts = f"weights {weights:.1f} + overhead {OVERHEAD_GB:g} + KV {kv_gb:.2f} ({self.max_model_len} tokens)"
        if self.fits:
            room = (self.budget_gb - weights - OVERHEAD_GB) * GB / (self.kv_per_token * self.max_model_len)
            return f"{head} >= {parts} = {self.needed_gb:.1f} GB: fits, KV room for {room:.0f} full-length sequences"
        return (
            f"{head} < {parts} = {self.needed_gb:.1f} GB: does NOT fit; raise gpu_memory_utilization (and "
            f"num_gpus) to at least {min(1.0, self.needed_gb / self.gpu_gb):.2f}, lower max_model_len, or use a "
            "GPU with more memory"
        )


def _hf_cache_folder(model: str) -> Path | None:
    """The newest snapshot of ``model`` in the Hugging Face cache, if it was downloaded (no network)."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{model.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1].parent if found else None


def _shape_from_folder(folder: Path) -> ModelShape | None:
    try:
        cfg: dict[str, Any] = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    cfg = {**cfg.get("text_config", {}), **cfg}  # multimodal configs keep the language model's shape inside
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        return None
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    files = list(folder.glob("*.safetensors"))
    weights = sum(f.stat().st_size for f in files) / GB if files else None
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    vocab = int(cfg.get("vocab_size", 0))
    inter = int(cfg.get("intermediate_size", 4 * hidden))
    kv_heads = int(cfg.get("num_key_value_heads", heads))
    # Parameters, for when there are no weight files: attention (q, o full; k, v per KV head), a gated MLP, and
    # the embeddings (twice unless tied). Qwen2.5-7B: 7.62 B, as published.
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    params = (layers * (attention + 3 * hidden * inter) + embeddings) / 1e9
    return ModelShape(
        params_b=params,
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        max_context=int(cfg.get("max_position_embeddings", 4096)),
        dtype=dtype if dtype in DTYPE_BYTES else "bfloat16",
        weights_gb=weights,
    )


def model_shape(model: str) -> ModelShape | None:
    """The shape of ``model`` (a local folder, a model id in the Hugging Face cache, or a known id), else None."""
    path = Path(model).expanduser()
    for folder in (path if path.is_dir() else None, _hf_cache_folder(model)):
        if folder is not None and (shape := _shape_from_folder(folder)) is not None:
            return shape
    return KNOWN_MODELS.get(model)


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def local_gpu_gb() -> float | None:
    """Memory of this machine's first GPU (nvidia-smi), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 2**20 / GB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def gpu_memory_gb(cfg: ExperimentConfig) -> tuple[float | None, str]:
    """(GB per GPU, where that number came from): ``llm.gpu.memory_gb``, ``llm.gpu.type``, else this machine."""
    gpu = cfg.llm.gpu
    if gpu.memory_gb is not None:
        return gpu.memory_gb, "llm.gpu.memory_gb"
    if gpu.type is not None:
        return float(GPU_MEMORY_GB[gpu.type]), f"llm.gpu.type {gpu.type}"
    local = local_gpu_gb()
    return (local, "this machine's GPU") if local is not None else (None, "")


def endpoint_fit(ep: ModelEndpoint, where: str, gpu_gb: float) -> Fit:
    shape = model_shape(ep.model)
    length = ep.max_model_len or (int(v) if (v := _flag(ep.extra_args, "--max-model-len")) else None)
    kv = _flag(ep.extra_args, "--kv-cache-dtype") or "auto"
    dtype = _flag(ep.extra_args, "--dtype")
    if shape is not None and dtype in DTYPE_BYTES and dtype != "auto" and shape.weights_gb is None:
        shape = ModelShape(**{**shape.__dict__, "dtype": dtype})
    if shape is not None and kv == "auto":
        kv = shape.dtype
    return Fit(
        where=where,
        model=ep.model,
        replicas=ep.replicas,
        utilization=ep.gpu_memory_utilization,
        gpu_gb=gpu_gb,
        max_model_len=length or (shape.max_context if shape else 0),
        shape=shape,
        kv_dtype=kv if kv in DTYPE_BYTES else "bfloat16",
    )


def gpu_fit(cfg: ExperimentConfig) -> tuple[list[str], list[str]]:
    """(report lines, problems) for every vLLM server of ``cfg``. No vLLM server, no lines. A problem is a server
    that does not fit, or one whose Ray GPU share (num_gpus) is below its memory share, so Ray could put servers
    that need more than the whole GPU on it."""
    endpoints = [(w, ep) for w, ep in cfg.llm.servers() if ep.engine == "vllm"]
    if not endpoints:
        return [], []
    gb, source = gpu_memory_gb(cfg)
    problems = [
        f"{w}: num_gpus {ep.gpus_per_replica:g} is below gpu_memory_utilization {ep.gpu_memory_utilization:g}"
        "; Ray places servers by num_gpus, so set num_gpus >= gpu_memory_utilization"
        for w, ep in endpoints
        if ep.gpus_per_replica < ep.gpu_memory_utilization
    ]
    if gb is None:
        return [
            "GPU fit: not checked (set llm.gpu.type or llm.gpu.memory_gb, or run where nvidia-smi sees a GPU)"
        ], problems
    fits = [endpoint_fit(ep, w, gb) for w, ep in endpoints]
    lines = [f"GPU fit ({gb:g} GB per GPU, from {source}):", *(f"  {f.line()}" for f in fits)]
    problems += [f.line() for f in fits if f.fits is False]
    shared = shared_gpu(endpoints, gb)
    if shared.replicas:
        lines.append(f"  {shared.line()}")
        if not shared.fits:
            problems.append(shared.line())
    return lines, problems


@dataclass(kw_only=True, frozen=True)
class SharedGpu:
    """The most memory one shared GPU may have to hold: the replicas Ray may pack onto it (``num_gpus`` summing to
    at most 1) with the largest memory shares, each with its process overhead. No replicas: no GPU is shared."""

    gpu_gb: float
    replicas: list[tuple[str, float, float]]  # (config key, num_gpus, gpu_memory_utilization), one per replica

    @property
    def needed_gb(self) -> float:
        return sum(util * self.gpu_gb + PROCESS_OVERHEAD_GB for _, _, util in self.replicas)

    @property
    def fits(self) -> bool:
        return self.needed_gb <= self.gpu_gb

    def line(self) -> str:
        if not self.replicas:
            return "no GPU is shared: no two vLLM replicas have num_gpus that fit on one GPU together"
        names: dict[str, int] = {}
        for where, _, _ in self.replicas:
            names[where] = names.get(where, 0) + 1
        who = " + ".join(f"{w} x{n}" if n > 1 else w for w, n in names.items())
        shares = sum(util for _, _, util in self.replicas)
        head = (
            f"one GPU may hold {who}: {shares:.2f} x {self.gpu_gb:g} GB + {len(self.replicas)} x "
            f"{PROCESS_OVERHEAD_GB:g} GB per process (CUDA context and graphs, outside the shares) = "
            f"{self.needed_gb:.1f} GB"
        )
        if self.fits:
            return f"{head} <= {self.gpu_gb:g} GB: fits together, {self.gpu_gb - self.needed_gb:.1f} GB to spare"
        over = self.needed_gb - self.gpu_gb
        return (
            f"{head} > {self.gpu_gb:g} GB: does NOT fit together; lower their gpu_memory_utilization (and num_gpus) "
            f"by {over / self.gpu_gb:.2f} in all, or raise num_gpus so that fewer share a GPU"
        )


def shared_gpu(endpoints: list[tuple[str, ModelEndpoint]], gpu_gb: float) -> SharedGpu:
    """The worst shared GPU: of every set of two or more replicas whose ``num_gpus`` sum to at most 1 (what Ray may
    place together), the one that needs the most memory. A replica alone on its GPU is checked by :class:`Fit`."""
    replicas = [(w, ep.gpus_per_replica, ep.gpu_memory_utilization) for w, ep in endpoints for _ in range(ep.replicas)]
    parts = [r for r in replicas if 0 < r[1] < 1]  # in config order: the report names them that way

    def need(rs: list[tuple[str, float, float]]) -> float:
        return sum(u * gpu_gb + PROCESS_OVERHEAD_GB for _, _, u in rs)

    candidates: list[list[tuple[str, float, float]]] = []
    if len(parts) <= MAX_EXACT_REPLICAS:
        for mask in range(1, 2 ** len(parts)):
            subset = [r for i, r in enumerate(parts) if mask >> i & 1]
            if len(subset) > 1 and sum(r[1] for r in subset) <= 1 + 1e-9:
                candidates.append(subset)
    else:  # greedy: the largest shares first, while they fit in one GPU's num_gpus
        greedy: list[tuple[str, float, float]] = []
        for r in sorted(parts, key=lambda r: -r[2]):
            if sum(c[1] for c in greedy) + r[1] <= 1 + 1e-9:
                greedy.append(r)
        if len(greedy) > 1:
            candidates.append(greedy)
    return SharedGpu(gpu_gb=gpu_gb, replicas=max(candidates, key=need) if candidates else [])
