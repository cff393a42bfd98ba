"""Benchmark: what a new trial or held-out process pays before its first dense retrieval, with and without the query
vectors the retrieval screen stores (pipelines/embedders/query_vectors.py).

Usage: .venv/bin/python benchmarks/trial_startup.py [--repeats 3] [--questions 16]

Set-up (not timed): the bundled sample's first documents indexed at chunk_size 400 with all-MiniLM-L6-v2, and
the query vectors of ``--questions`` of its questions stored as a search's screen stores them. Then, each in a
fresh Python process (``--repeats`` times, alternating, so drift on a shared machine hits both alike):

- **model**: ``open_retrieval`` for a dense configuration with no stored vectors (the embedding model is imported
  and loaded), then one retrieval of every question;
- **stored**: the same with the vectors stored (the model is never imported).

Printed: median CPU seconds and wall seconds of each, whether sentence-transformers was imported, the
stored/model ratios, and whether both returned the same chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "xquad_en"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.index import IndexCache
from ragsweep.search.assemble import make_retriever, open_retrieval
from ragsweep.search.config import PipelineSettings
from ragsweep.search.space import TrialParams

corpus, questions, cache, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ds = load_dataset(Path(corpus), Path(questions))
params = TrialParams.from_sampled({"chunk_size": 400, "chunk_overlap": 0, "retriever": "dense", "top_k": 3,
                                   "prompt": "concise", "temperature": 0.0, "reranker": "none"})
parts = open_retrieval(params, PipelineSettings(), ds.corpus, ds.corpus_digest, IndexCache(cache))
hits = make_retriever(parts, params).retrieve([q.question for q in ds.questions[:n]], 3)
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu": r.ru_utime + r.ru_stime, "wall": time.perf_counter() - t0,
                  "st": "sentence_transformers" in sys.modules, "hits": [[h.chunk.id for h in x] for x in hits]}))
"""


def _child(corpus: Path, questions: Path, cache: Path, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(corpus), str(questions), str(cache), str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    if out.returncode != 0:
        raise SystemExit(f"the measured process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--questions", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        docs = (SAMPLE / "corpus.jsonl").read_text().splitlines()[:6]
        ids = {json.loads(d)["id"] for d in docs}
        qs = [
            q
            for q in (SAMPLE / "questions.jsonl").read_text().splitlines()
            if set(json.loads(q)["gold_doc_ids"]) <= ids
        ]
        (root / "corpus.jsonl").write_text("\n".join(docs) + "\n")
        (root / "questions.jsonl").write_text("\n".join(qs) + "\n")
        corpus, questions = root / "corpus.jsonl", root / "questions.jsonl"
        # The set-up: a first process builds the index (no stored vectors yet), then the vectors are stored.
        model_cache, stored_cache = root / "model", root / "stored"
        _child(corpus, questions, model_cache, args.questions)
        subprocess.run(["cp", "-r", str(model_cache), str(stored_cache)], check=True)
        from ragsweep.pipelines.data import load_dataset
        from ragsweep.pipelines.embedders.local import Embedder
        from ragsweep.pipelines.embedders.query_vectors import stored_queries

        ds = load_dataset(corpus, questions)
        store = stored_queries(Embedder(), stored_cache)
        store.encode_queries([q.question for q in ds.questions[: args.questions]])
        store.save()
        runs: dict[str, list[dict]] = {"model": [], "stored": []}
        for _ in range(args.repeats):
            runs["model"].append(_child(corpus, questions, model_cache, args.questions))
            runs["stored"].append(_child(corpus, questions, stored_cache, args.questions))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("cpu", "wall")} for k, v in runs.items()}
    same = all(a["hits"] == b["hits"] for a, b in zip(runs["model"], runs["stored"], strict=True))
    print(f"\nA new process's first dense retrieval of {args.questions} questions (median of {args.repeats}):\n")
    print("| query vectors | CPU s | wall s | sentence-transformers imported |")
    print("|---|---|---|---|")
    for k, label in (("model", "embedded by the model"), ("stored", "read from the screen's file")):
        print(f"| {label} | {med[k]['cpu']:.1f} | {med[k]['wall']:.1f} | {runs[k][0]['st']} |")
    print(
        f"\nstored / model: CPU {med['stored']['cpu'] / med['model']['cpu']:.2f}, "
        f"wall {med['stored']['wall'] / med['model']['wall']:.2f}; same chunks retrieved: {same}"
    )


if __name__ == "__main__":
    main()
