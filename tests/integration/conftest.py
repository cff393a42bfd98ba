"""Real servers for integration tests: a llama.cpp server with SmolLM2 and an `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragsweep.search.serving.engines import LlamaCppServer, resolve_gguf
from tests.conftest import SAMPLE, write_jsonl
from tests.integration.local_cluster import start_mlflow


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    server = LlamaCppServer(resolve_gguf("default"), tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    yield server
    server.stop()


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real tracking server with a sqlite store in ``root`` (its own process group); returns it and its URI."""
    try:
        return start_mlflow(root)
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' shared tracking server; yields its URI."""
    proc, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def xquad_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 6 xquad_en documents and their questions (a small, real slice)."""
    root = tmp_path_factory.mktemp("xquad_slice")
    docs = [json.loads(line) for line in (SAMPLE / "corpus.jsonl").read_text().splitlines()][:6]
    keep = {d["id"] for d in docs}
    qs = [json.loads(line) for line in (SAMPLE / "questions.jsonl").read_text().splitlines()]
    qs = [q for q in qs if set(q["gold_doc_ids"]) <= keep]
    return write_jsonl(root / "corpus.jsonl", docs), write_jsonl(root / "questions.jsonl", qs)
