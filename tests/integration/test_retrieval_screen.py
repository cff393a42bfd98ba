"""The retrieval screen on real indexes and the real embedder: one computation per key, zero LLM requests, every
search question; and the oracle ceiling on the real llama.cpp server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.pipelines.prompts import load_templates
from ragsweep.search.config import load_config
from ragsweep.search.confirm import plan_questions
from ragsweep.search.screen.oracle import oracle_rows
from ragsweep.search.screen.screening import retrieval_cache, stage, trial_retrieval
from ragsweep.search.searcher import baseline

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, corpus: Path, questions: Path) -> Path:
    cfg = tmp_path / "screen.yaml"
    cfg.write_text(f"""
dataset: {{corpus: {corpus}, questions: {questions}, holdout: 0.25}}
space:
  chunk_size: [400, 800]
  chunk_overlap: [0]
  retriever: [dense, bm25, hybrid]
  top_k: [1, 3]
  context_budget: [0, 100]
search: {{questions_per_trial: 8, seed: 0}}
storage_dir: {tmp_path / "runs"}
""")
    return cfg


def test_screen_scores_every_search_question_once_per_key_with_no_llm_call(
    tmp_path: Path, xquad_slice: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_llm(*args: object, **kwargs: object) -> None:
        raise AssertionError("the retrieval screen sent an LLM request")

    monkeypatch.setattr(LLMClient, "complete", no_llm)
    cfg = load_config(_config(tmp_path, *xquad_slice))
    ds = load_dataset(cfg.dataset.corpus, cfg.dataset.questions)
    plan = plan_questions(cfg, ds)
    assert len(plan.screen_ids) > len(plan.search_ids) and plan.screen_ids[: len(plan.search_ids)] == plan.search_ids
    first = stage(cfg, ds, plan.screen_ids, baseline(cfg), cfg.index_cache, plan.holdout_ids)
    n = 2 * (2 + 2 + 2) * 2  # chunk sizes x (dense, bm25, hybrid) x top_k x budgets
    assert len(first.result.screened) == n and first.result.computed == n and first.result.n_indexes == 2
    assert all(len(s.rows) == len(plan.screen_ids) for s in first.result.screened)
    computed = (cfg.storage_dir / "retrieval-cache" / "computed.jsonl").read_text().splitlines()
    assert len(computed) == n and len({json.loads(c)["key"] for c in computed}) == n
    # The cost-aware pair: a budget never raises recall and never adds tokens.
    by = {s.label: s for s in first.result.screened}
    for s in first.result.screened:
        if s.point["context_budget"] == 100:
            full = by[s.label.replace("context_budget=100", "context_budget=0")]
            assert s.tokens <= full.tokens and s.recall <= full.recall + 1e-9
    assert first.candidates and all(c in first.front or c.point == first.candidates[-1].point for c in first.candidates)
    again = stage(cfg, ds, plan.screen_ids, baseline(cfg), cfg.index_cache)
    assert again.result.computed == 0 and [s.label for s in again.candidates] == [s.label for s in first.candidates]
    assert len((cfg.storage_dir / "retrieval-cache" / "computed.jsonl").read_text().splitlines()) == n
    # A trial of a screened configuration reads the screen's rows: the same key, no new computation.
    from ragsweep.pipelines.index import IndexCache
    from ragsweep.search.assemble import make_retriever, open_retrieval
    from ragsweep.search.space import TrialParams

    s0 = first.candidates[0]
    params = TrialParams.from_sampled({**s0.point, "prompt": "concise", "temperature": 0.0, "reranker": "none"})
    parts = open_retrieval(params, cfg.pipeline, ds.corpus, ds.corpus_digest, IndexCache(cfg.index_cache))
    scored = trial_retrieval(params, cfg, ds, plan.screen_ids, make_retriever(parts, params), None, parts.index.key)
    assert scored is not None and not scored.computed and scored.rows == retrieval_cache(cfg).get(scored.key)
    _screen_stored_every_query_vector(cfg, ds, plan)


def _screen_stored_every_query_vector(cfg, ds, plan) -> None:  # type: ignore[no-untyped-def]
    """The screen stored the vectors of every search and held-out question: a dense trial's embedder reads them, and
    a new process gets them, equal to the model's, without importing sentence-transformers."""
    from ragsweep.pipelines.embedders.query_vectors import StoredQueries
    from ragsweep.pipelines.index import IndexCache
    from ragsweep.search.assemble import open_retrieval
    from ragsweep.search.space import TrialParams

    dense = next(s for s in stage_points(cfg) if s["retriever"] == "dense")
    params = TrialParams.from_sampled({**dense, "prompt": "concise", "temperature": 0.0, "reranker": "none"})
    parts = open_retrieval(params, cfg.pipeline, ds.corpus, ds.corpus_digest, IndexCache(cfg.index_cache))
    by_id = {q.id: q.question for q in ds.questions}
    texts = {by_id[i] for i in (*plan.screen_ids, *plan.holdout_ids)}
    assert isinstance(parts.embedder, StoredQueries) and parts.embedder.stored == len(texts)
    held = [by_id[i] for i in plan.holdout_ids]
    code = (
        "import sys, numpy as np\n"
        "from ragsweep.pipelines.embedders.local import Embedder\n"
        "from ragsweep.pipelines.embedders.query_vectors import stored_queries\n"
        f"v = stored_queries(Embedder(), {str(cfg.index_cache)!r}).encode_queries({held!r})\n"
        "np.save(sys.argv[1], v)\n"
        "print('sentence_transformers' in sys.modules)\n"
    )
    out = cfg.storage_dir / "held.npy"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    np.testing.assert_allclose(np.load(out), parts.embedder.inner.encode_queries(held), atol=1e-5)


def stage_points(cfg):  # type: ignore[no-untyped-def]
    from ragsweep.search.screen.front import screen_points

    s = cfg.search
    return screen_points(cfg.space, baseline(cfg), s.seed, s.screen_configs, s.screen_indexes)


def test_oracle_ceiling_on_the_real_llama_server(llama_server: object, xquad_slice: tuple[Path, Path]) -> None:
    ds = load_dataset(*xquad_slice)
    client = LLMClient(llama_server.base_url, llama_server.model_id)  # type: ignore[attr-defined]
    prompt = load_templates(None)["extractive"]
    rows = oracle_rows(client, prompt, ds.questions[:6], ds.corpus, 0.0, 24, 0)
    assert len(rows) == 6
    # The gold passage holds the answer span: recall is 1 by construction, and the answers are scored.
    assert all(r["recall_at_k"] == 1.0 for r in rows.values())
    assert all(0.0 <= r["token_f1"] <= 1.0 for r in rows.values())
    assert client.stats.requests == 6


LOADS_EMBEDDER = """
import sys
from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.index import IndexCache
from ragsweep.search.assemble import open_retrieval
from ragsweep.search.config import load_config
from ragsweep.search.space import TrialParams

cfg = load_config(sys.argv[1])
ds = load_dataset(cfg.dataset.corpus, cfg.dataset.questions)
point = {"chunk_size": 400, "chunk_overlap": 0, "retriever": sys.argv[2], "top_k": 1, "prompt": "concise",
         "temperature": 0.0, "reranker": "none"}
parts = open_retrieval(TrialParams.from_sampled(point), cfg.pipeline, ds.corpus, ds.corpus_digest,
                       IndexCache(cfg.index_cache))
print("sentence_transformers" in sys.modules)
"""


def test_a_sparse_only_retriever_over_a_cached_index_never_loads_the_embedder(
    tmp_path: Path, xquad_slice: tuple[Path, Path]
) -> None:
    """Importing and loading sentence-transformers is most of a trial process's start-up: a bm25 trial over a built
    index must not pay it; a dense one loads it before its first query (so the cost shows in embedder_load_s)."""
    import subprocess
    import sys

    from ragsweep.pipelines.index import IndexCache
    from ragsweep.search.assemble import open_retrieval
    from ragsweep.search.space import TrialParams

    path = _config(tmp_path, *xquad_slice)
    cfg = load_config(path)
    ds = load_dataset(cfg.dataset.corpus, cfg.dataset.questions)
    point = {"chunk_size": 400, "chunk_overlap": 0, "retriever": "bm25", "top_k": 1, "prompt": "concise"}
    params = TrialParams.from_sampled({**point, "temperature": 0.0, "reranker": "none"})
    open_retrieval(params, cfg.pipeline, ds.corpus, ds.corpus_digest, IndexCache(cfg.index_cache))  # builds it
    loaded = {
        retriever: subprocess.run(
            [sys.executable, "-c", LOADS_EMBEDDER, str(path), retriever], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
        for retriever in ("bm25", "dense")
    }
    assert loaded == {"bm25": "False", "dense": "True"}
