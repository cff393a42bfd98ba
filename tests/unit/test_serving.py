"""The vLLM path shares everything with llama.cpp but its launch command and structured-output dialect:
both are checked here, since no machine in CI has a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragsweep.pipelines.llm_client.client import structured_output_params
from ragsweep.search.config import ModelEndpoint, load_config
from ragsweep.search.serving.engines import LlamaCppServer, ServingSetupError, VllmServer, preflight, resolve_gguf
from tests.conftest import REPO

SCHEMA = {"type": "object", "properties": {"correct": {"type": "boolean"}}, "required": ["correct"]}


def test_vllm_command_line(tmp_path: Path) -> None:
    server = VllmServer(
        "Qwen/Qwen2.5-7B-Instruct",
        tmp_path / "log",
        gpu_memory_utilization=0.45,
        max_model_len=8192,
        seed=3,
        extra_args=["--max-num-seqs", "64"],
    )
    assert server.model_id == "Qwen2.5-7B-Instruct"
    assert server.command(8011) == [
        "vllm",
        "serve",
        "Qwen/Qwen2.5-7B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "8011",
        "--served-model-name",
        "Qwen2.5-7B-Instruct",
        "--gpu-memory-utilization",
        "0.45",
        "--seed",
        "3",
        "--generation-config",
        "vllm",
        "--max-model-len",
        "8192",
    ]
    assert server.extra_args == ["--max-num-seqs", "64"]


def test_vllm_may_download_a_model_id_but_a_folder_stays_offline(tmp_path: Path) -> None:
    # trial workers run with HF_HUB_OFFLINE=1; a model id is meant to be fetched by vLLM on first start
    by_id = VllmServer("Qwen/Qwen2.5-7B-Instruct", tmp_path / "log")
    assert by_id.env["HF_HUB_OFFLINE"] == "0"
    assert "HF_HUB_OFFLINE" not in VllmServer(str(tmp_path), tmp_path / "log").env
    pinned = VllmServer("Qwen/Qwen2.5-7B-Instruct", tmp_path / "log", env={"HF_HUB_OFFLINE": "1"})
    assert pinned.env["HF_HUB_OFFLINE"] == "1"  # the user's env wins


def test_llama_cpp_command_line(tmp_path: Path) -> None:
    path = resolve_gguf("default")
    server = LlamaCppServer(path, tmp_path / "log", n_ctx=2048, n_threads=2)
    cmd = server.command(9000)
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    assert cmd[3:] == [
        "--model",
        str(path),
        "--model_alias",
        path.stem,
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        "--n_threads_batch",  # prompt processing keeps to n_threads too (llama-cpp-python's default: every core)
        "2",
    ]


def test_structured_output_dialects_never_send_guided_fields() -> None:
    vllm = structured_output_params("vllm", SCHEMA)
    assert vllm == {"response_format": {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}}
    llama = structured_output_params("llama.cpp", SCHEMA)
    assert llama == {"response_format": {"type": "json_object", "schema": SCHEMA}}
    for body in (vllm, llama):
        assert not any(k.startswith("guided_") for k in body)


@pytest.mark.skipif(shutil.which("vllm") is not None, reason="vllm is installed here")
def test_vllm_missing_is_a_setup_error() -> None:
    with pytest.raises(ServingSetupError, match=r"needs the vllm command.*ragsweep\[gpu\]"):
        preflight(ModelEndpoint(engine="vllm", model="Qwen/Qwen2.5-1.5B-Instruct"))


def test_vllm_needs_a_model() -> None:
    with pytest.raises(ValueError, match="engine 'vllm' needs model"):
        ModelEndpoint(engine="vllm")


def test_gpu_config_is_valid() -> None:
    cfg = load_config(REPO / "configs" / "gpu.yaml")
    assert cfg.llm.generator.engine == "vllm" and cfg.llm.judge is not None and cfg.llm.judge.engine == "vllm"
    for m in (cfg.llm.generator, cfg.llm.judge):
        assert m.gpus_per_replica == m.gpu_memory_utilization  # Ray's share matches vLLM's memory fraction


def test_llama_threads_default_to_every_core_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from ragsweep.search.serving.engines import THREADS_ENV, default_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv(THREADS_ENV, "1")
    assert default_threads() == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ValueError, match=f"{THREADS_ENV}='{bad}'"):
            default_threads()
