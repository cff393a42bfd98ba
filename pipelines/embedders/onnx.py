"""A sentence-transformers model run by ONNX Runtime, exported once from the local folder (fp32 or int8).

Contract: :func:`onnx_encoder` returns a callable ``texts -> float32 (n, dim)`` unit vectors that match the
PyTorch model's (fp32: to float rounding; int8: dynamic quantization of the weights, see the tolerance measured
by benchmarks/corpus_scale.py). The export (``torch.onnx``) and the quantization (``onnxruntime.quantization``)
run once per model and variant into ``cache_dir`` under a file lock; later processes only load the file.
Only models whose pipeline is a transformer, mean or CLS pooling and optional normalisation are supported; any
other raises :class:`OnnxUnsupported` naming the module, before any export.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxUnsupported(ValueError):
    """The model's sentence-transformers pipeline has a module this runner does not reproduce."""


def _pooling(model: Any) -> str:
    modules = [type(m).__name__ for m in model]
    if modules[0] != "Transformer" or any(m not in ("Pooling", "Normalize") for m in modules[1:]):
        raise OnnxUnsupported(f"ONNX embedding supports Transformer + Pooling (+ Normalize); this model has {modules}")
    pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
    mode = getattr(pooling, "pooling_mode", None) or ("mean" if pooling is None else None)
    if mode is None:  # older sentence-transformers keep flags instead of a mode name
        cfg = pooling.get_config_dict() if pooling is not None else {}
        mode = "cls" if cfg.get("pooling_mode_cls_token") else "mean" if cfg.get("pooling_mode_mean_tokens") else None
    if mode not in ("mean", "cls"):
        raise OnnxUnsupported(f"ONNX embedding supports mean or CLS pooling; this model pools by {mode!r}")
    return str(mode)


def _export(model: Any, target: Path, int8: bool) -> None:
    import torch

    tmp = target.with_suffix(".tmp.onnx")
    hf = model[0].auto_model.eval()
    sample = model.tokenizer(["an example sentence"], return_tensors="pt")
    names = [n for n in INPUTS if n in sample]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}

    class _ByName(torch.nn.Module):  # the exporter passes inputs by position; models take them by name
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf  # a submodule, so its weights export as weights

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.hf(**dict(zip(names, inputs, strict=True))).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            _ByName(),
            tuple(sample[n] for n in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(tmp), str(target), weight_type=QuantType.QInt8, per_channel=True)
        tmp.unlink()
    else:
        tmp.rename(target)


def onnx_encoder(
    model: Any, model_dir: Path, cache_dir: Path, int8: bool, batch_size: int = 64
) -> Callable[[list[str]], np.ndarray]:
    """An ONNX Runtime twin of the loaded sentence-transformers ``model`` (from ``model_dir``)."""
    import onnxruntime as ort

    pooling = _pooling(model)
    weights = sorted(p for p in model_dir.rglob("*") if p.suffix in (".safetensors", ".bin"))
    stamp = json.dumps([str(model_dir), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights], int8])
    target = cache_dir / f"{hashlib.sha256(stamp.encode()).hexdigest()[:16]}{'-int8' if int8 else ''}.onnx"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            _export(model, target, int8)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    tokenizer, max_len = model.tokenizer, model.max_seq_length

    def encode(texts: list[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths pad least
        out: np.ndarray | None = None
        for lo in range(0, len(texts), batch_size):
            idx = order[lo : lo + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="np"
            )
            hidden = session.run(None, {n: enc[n].astype(np.int64) for n in INPUTS if n in wanted})[0]
            if pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = enc["attention_mask"][..., None].astype(np.float32)
                vec = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if out is None:
                out = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    return encode
