"""GPU fit before any work (serving/gpu_fit.py): each vLLM server's weights + KV cache against its share of the GPU,
from a local model folder's files, the Hugging Face cache, or the known models; `ragsweep validate` prints the
numbers and a config that cannot fit exits 2 before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragsweep.search.cli import main
from ragsweep.search.config import load_config
from ragsweep.search.serving.gpu_fit import GB, KNOWN_MODELS, gpu_fit, model_shape
from tests.conftest import write_jsonl

# Qwen2.5-7B-Instruct's config.json (the fields the fit reads)
QWEN7B = {
    "hidden_size": 3584,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "num_hidden_layers": 28,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
}


def _config(tmp_path: Path, llm: str) -> Path:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "d1", "title": "t", "text": "Cats sleep a lot."}])
    qs = write_jsonl(
        tmp_path / "questions.jsonl",
        [{"id": f"q{i}", "question": "Do cats sleep?", "answers": ["a lot"], "gold_doc_ids": ["d1"]} for i in range(8)],
    )
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"dataset: {{corpus: {corpus}, questions: {qs}}}\n"
        "space: {chunk_size: [200], chunk_overlap: [0], retriever: [bm25], top_k: [2]}\n"
        f"judges: {{suite: []}}\nstorage_dir: {tmp_path / 'runs'}\nllm:\n{llm}"
    )
    return path


def _folder(tmp_path: Path, weights_bytes: int) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN7B))
    with open(folder / "model.safetensors", "wb") as f:  # sparse: only its size counts
        f.truncate(weights_bytes)
    return folder


def test_a_local_folder_is_measured_by_its_files(tmp_path: Path) -> None:
    shape = model_shape(str(_folder(tmp_path, 5_500_000_000)))  # an AWQ 7B is about 5.5 GB
    assert shape is not None and shape.weights_gb == pytest.approx(5.5)
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (28, 4, 128)
    known = KNOWN_MODELS["Qwen/Qwen2.5-7B-Instruct"]
    assert known.weight_bytes / GB == pytest.approx(15.24)


def test_a_model_in_the_hugging_face_cache_is_read_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--acme--tiny-7b" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(QWEN7B))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    shape = model_shape("acme/tiny-7b")
    assert shape is not None and shape.layers == 28 and shape.params_b == pytest.approx(7.6, rel=0.05)
    assert model_shape("acme/never-downloaded") is None


@pytest.mark.parametrize(("gpu", "util", "fits"), [("A10G", 0.5, False), ("A10G", 0.8, True), ("L40S", 0.5, True)])
def test_known_model_against_gpu_types(tmp_path: Path, gpu: str, util: float, fits: bool) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            f"""\
  gpu: {{type: {gpu}}}
  generator: {{engine: vllm, model: Qwen/Qwen2.5-7B-Instruct, gpu_memory_utilization: {util}, num_gpus: {util},
              max_model_len: 8192}}
""",
        )
    )
    lines, problems = gpu_fit(cfg)
    assert lines[0].startswith(f"GPU fit ({'24' if gpu == 'A10G' else '48'} GB per GPU, from llm.gpu.type {gpu})")
    assert ("does NOT fit" in lines[1]) is (not fits) and (problems == []) is fits
    assert "weights 15.2" in lines[1] and "KV 0.47 (8192 tokens)" in lines[1]


def test_kv_cache_dtype_and_context_from_extra_args(tmp_path: Path) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            """\
  gpu: {memory_gb: 24}
  generator: {engine: vllm, model: Qwen/Qwen2.5-7B-Instruct, gpu_memory_utilization: 0.9,
              extra_args: [--max-model-len, "32768", --kv-cache-dtype, fp8]}
""",
        )
    )
    (line,) = gpu_fit(cfg)[0][1:]
    assert "KV 0.94 (32768 tokens)" in line  # 28 layers x 4 heads x 128 x 2 (K,V) x 1 byte x 32768


def test_ray_share_below_memory_share_is_refused(tmp_path: Path) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            """\
  gpu: {type: L40S}
  generator: {engine: vllm, model: Qwen/Qwen2.5-1.5B-Instruct, gpu_memory_utilization: 0.4, num_gpus: 0.25}
""",
        )
    )
    assert "num_gpus 0.25 is below gpu_memory_utilization 0.4" in gpu_fit(cfg)[1][0]


def test_unknown_model_or_gpu_is_reported_not_guessed(tmp_path: Path) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            """\
  gpu: {type: L4}
  generator: {engine: vllm, model: acme/unheard-of}
""",
        )
    )
    lines, problems = gpu_fit(cfg)
    assert problems == [] and "not checked: 'acme/unheard-of'" in lines[1]
    no_gpu = (
        load_config(_config(tmp_path / "b", "  generator: {engine: vllm, model: Qwen/Qwen2.5-1.5B-Instruct}\n"))
        if (tmp_path / "b").mkdir() is None
        else None
    )
    assert no_gpu is not None and gpu_fit(no_gpu)[0][0].startswith("GPU fit: not checked")
    cpu = load_config(_config(tmp_path / "c", "  generator: {}\n")) if (tmp_path / "c").mkdir() is None else None
    assert cpu is not None and gpu_fit(cpu) == ([], [])  # llama.cpp: nothing to fit


def test_validate_prints_the_fit_and_refuses_what_cannot_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAGSWEEP_RAY_ADDRESS", "auto")  # a cluster's vLLM: this machine needs no vllm command
    ok = _config(
        tmp_path,
        """\
  gpu: {type: L40S}
  generator: {engine: vllm, model: Qwen/Qwen2.5-7B-Instruct, gpu_memory_utilization: 0.55, num_gpus: 0.55,
              max_model_len: 8192}
""",
    )
    assert main(["validate", "--config", str(ok)]) == 0
    assert "llm.generator Qwen/Qwen2.5-7B-Instruct (x1): 0.55 x 48 GB = 26.4 GB >= " in capsys.readouterr().out
    bad = ok.read_text().replace("type: L40S", "type: A10G")
    ok.write_text(bad)
    assert main(["validate", "--config", str(ok)]) == 2
    err = capsys.readouterr().err
    assert "GPU fit: llm.generator" in err and "12.0 GB" not in err and "13.2 GB < weights 15.2" in err
    assert "at least 0.72" in err


THREE_ON_ONE = """\
  gpu: {type: L40S}
  generator: {engine: vllm, model: Qwen/Qwen2.5-1.5B-Instruct, replicas: 2, num_gpus: %(g)s,
              gpu_memory_utilization: %(g)s, max_model_len: 8192}
  judge: {engine: vllm, model: Qwen/Qwen2.5-7B-Instruct, num_gpus: %(j)s, gpu_memory_utilization: %(j)s,
          max_model_len: 8192}
"""


def test_servers_sharing_a_gpu_must_fit_together_with_their_process_overhead(tmp_path: Path) -> None:
    """2 x 0.2 + 0.55 = 0.95 of an L40S: each server fits its share, but the three CUDA contexts and graph pools
    outside the shares (3 x 1 GB) do not fit in the 2.4 GB left: refused, naming the servers and the sum."""
    cfg = load_config(_config(tmp_path, THREE_ON_ONE % {"g": 0.2, "j": 0.55}))
    lines, problems = gpu_fit(cfg)
    assert all("fits" in line for line in lines[1:3])  # alone, each one fits
    (problem,) = problems
    assert problem.startswith("one GPU may hold llm.generator x2 + llm.judge: 0.95 x 48 GB + 3 x 1 GB per process")
    assert "= 48.6 GB > 48 GB: does NOT fit together" in problem
    ok = tmp_path / "ok"
    ok.mkdir()
    lines, problems = gpu_fit(load_config(_config(ok, THREE_ON_ONE % {"g": 0.18, "j": 0.5})))
    assert problems == [] and "= 44.3 GB <= 48 GB: fits together, 3.7 GB to spare" in lines[-1]


def test_servers_that_cannot_share_a_gpu_are_checked_alone(tmp_path: Path) -> None:
    """num_gpus that sum past 1 are never packed together by Ray: only the sets that can be are summed."""
    cfg = load_config(_config(tmp_path, THREE_ON_ONE % {"g": 0.45, "j": 0.6}))
    lines, problems = gpu_fit(cfg)
    # the two generator replicas (0.45 + 0.45) may share a GPU; the judge (0.6) shares with neither
    assert problems == [] and lines[-1].startswith("  one GPU may hold llm.generator x2: 0.90 x 48 GB")
    whole = tmp_path / "whole"
    whole.mkdir()
    lines, _ = gpu_fit(load_config(_config(whole, THREE_ON_ONE % {"g": 1, "j": 1})))
    assert len(lines) == 3 and not any("one GPU may hold" in line for line in lines)  # nothing shares a GPU


def test_vllm_servers_wait_for_a_cold_start_by_default(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, "  generator: {engine: vllm, model: Qwen/Qwen2.5-1.5B-Instruct}\n"))
    assert cfg.llm.generator.startup_timeout_s == 900  # vLLM's own default; llama.cpp keeps 180
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    assert load_config(_config(cpu, "  generator: {}\n")).llm.generator.startup_timeout_s == 180
    set_ = tmp_path / "set"
    set_.mkdir()
    ep = "  generator: {engine: vllm, model: Qwen/Qwen2.5-1.5B-Instruct, startup_timeout_s: 1200}\n"
    assert load_config(_config(set_, ep)).llm.generator.startup_timeout_s == 1200
