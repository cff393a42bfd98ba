"""Opt-in: a 2-trial search served by vLLM. Runs only where the vllm command and a CUDA GPU exist.

Model: $RAGSWEEP_TEST_VLLM_MODEL (default Qwen/Qwen2.5-0.5B-Instruct; a local folder works offline).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.searches import run_cli, search_config, search_runs


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("vllm") is None or not _has_gpu(), reason="needs the vllm command and a GPU"),
]


def test_two_trial_search_on_vllm(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    model = os.environ.get("RAGSWEEP_TEST_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    extra = f"llm:\n  generator: {{engine: vllm, model: '{model}', gpu_memory_utilization: 0.5, max_model_len: 4096}}\n"
    cfg = search_config(tmp_path, *xquad_slice, mlflow_server, "e2e-vllm", extra)
    proc = run_cli(
        [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg), "--num-samples", "2"],
        cwd=tmp_path,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    parents, children = search_runs(mlflow_server, "e2e-vllm")
    assert parents[0].info.status == "FINISHED" and len(children) == 2
    assert all(c.data.metrics["llm.generator.requests"] > 0 for c in children)
