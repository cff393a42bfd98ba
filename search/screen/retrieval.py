"""One retrieval configuration judged on every search question, with no LLM call, once per key.

Contract:
- :data:`RETRIEVAL_KEYS` are the trial params that decide which chunks reach the prompt (chunking, embedder,
  retriever and its fusion, top_k, reranker, context budget). The context *order* does not change which chunks
  are sent, and a query transformation costs LLM calls: both belong to the LLM stage.
- :func:`evaluate` scores a configuration on questions: per question the span-gold (else document-gold)
  ``recall_at_k``, ``mrr``, ``ndcg_at_k`` and ``precision_at_k`` of the chunks actually sent to the generator
  (after the context budget, as a trial's own metrics are), and ``context_tokens``, the estimated tokens of that
  context. Recall of the context sent at its token count is the cost-aware pair: more or longer chunks raise
  recall only by raising tokens, so context size alone cannot win the recall-versus-tokens front.
- :class:`RetrievalCache` computes each key at most once per cache folder, also when several processes ask at once
  (a file lock per key; the rows land atomically by rename); every computation appends a line to
  ``computed.jsonl``, so "one computation per key" can be checked.
- :func:`summarize` gives the means with bootstrap intervals, as metrics ``retrieval.<metric>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ragsweep.judges.intervals import intervals
from ragsweep.judges.retrieval import ChunkRef, mrr, ndcg_at_k, precision_at_k, recall_at_k
from ragsweep.pipelines.context import estimated_tokens, fit_budget
from ragsweep.pipelines.data import Question
from ragsweep.pipelines.retrieve import Hit, Retriever
from ragsweep.search.space import INDEX_KEYS, RETRIEVAL_KEYS

METRICS = ("recall_at_k", "mrr", "ndcg_at_k", "precision_at_k", "context_tokens")
PREFIX = "retrieval."  # metric prefix in a trial run
_FORMAT = 1  # bump when a row's meaning changes, so old cache entries are not reused
Row = dict[str, Any]  # "id" and each of METRICS (NaN where undefined: a question with no gold)


def retrieval_point(params: dict[str, Any]) -> dict[str, Any]:
    """The retrieval keys of a trial's params (unset ones left out)."""
    return {k: params[k] for k in RETRIEVAL_KEYS if params.get(k) is not None}


def questions_digest(dataset_digest: str, question_ids: Sequence[str]) -> str:
    """Identifies the questions a configuration is scored on (their gold comes with the dataset's digest)."""
    return hashlib.sha256(f"{dataset_digest}\n{chr(10).join(question_ids)}".encode()).hexdigest()[:16]


def cache_key(point: dict[str, Any], index_key: str, reranker_model: Any, qdigest: str) -> str:
    """A configuration on one question set: its index, the rest of its retrieval keys, the reranker's model."""
    rest = {k: v for k, v in point.items() if k not in INDEX_KEYS}
    blob = json.dumps(
        {
            "format": _FORMAT,
            "index": index_key,
            "point": rest,
            "questions": qdigest,
            "reranker_model": str(reranker_model) if point.get("reranker", "none") != "none" else None,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _row(q: Question, kept: Sequence[Hit]) -> Row:
    refs = [ChunkRef(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in kept]
    return {
        "id": q.id,
        "recall_at_k": recall_at_k(refs, q),
        "mrr": mrr(refs, q),
        "ndcg_at_k": ndcg_at_k(refs, q),
        "precision_at_k": precision_at_k(refs, q),
        "context_tokens": float(sum(estimated_tokens(h.chunk.text) for h in kept)),
    }


def evaluate(
    retriever: Retriever, reranker: Any, point: dict[str, Any], questions: Sequence[Question], batch: int = 256
) -> list[Row]:
    """Score ``point`` (its ``retriever``, fusion and index already in ``retriever``) on ``questions``."""
    top_k, budget = int(point["top_k"]), int(point.get("context_budget", 0))
    k = max(int(point.get("rerank_candidates") or 20), top_k) if reranker is not None else top_k
    rows: list[Row] = []
    for lo in range(0, len(questions), batch):
        part = list(questions[lo : lo + batch])
        hits = retriever.retrieve([q.question for q in part], k)
        for q, h in zip(part, hits, strict=True):
            if reranker is not None:
                h = reranker.rerank(q.question, h, top_k)
            kept = h[: fit_budget([x.chunk.text for x in h], budget)]
            rows.append(_row(q, kept))
    return rows


class RerankMemo:
    """A reranker whose full ranking of a question's candidates is kept: configurations that differ only in
    ``top_k`` or the context budget take prefixes of the same ranking (a cross-encoder is the screen's dearest
    step)."""

    def __init__(self, reranker: Any) -> None:
        self.inner = reranker
        self._memo: dict[tuple[str, tuple[int, ...]], list[Hit]] = {}

    def rerank(self, question: str, hits: list[Hit], top_k: int) -> list[Hit]:
        key = (question, tuple(h.chunk.id for h in hits))
        if key not in self._memo:
            self._memo[key] = self.inner.rerank(question, hits, len(hits))
        return self._memo[key][:top_k]


@dataclass(frozen=True)
class Scored:
    key: str
    rows: list[Row]
    computed: bool  # False: read from the cache
    seconds: float  # spent computing (0 when read)


class RetrievalCache:
    """Per-question rows of each retrieval key, in ``root`` (``<storage_dir>/retrieval-cache``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> list[Row] | None:
        p = self.path(key)
        if not p.exists():
            return None
        return [{k: math.nan if v is None else v for k, v in r.items()} for r in json.loads(p.read_text())["rows"]]

    def get_or_compute(self, key: str, compute: Callable[[], list[Row]], what: dict[str, Any]) -> Scored:
        """The rows of ``key``, computed by ``compute`` (and stored with ``what`` it is) only if missing."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            rows = self.get(key)
            if rows is not None:
                return Scored(key, rows, False, 0.0)
            t0 = time.perf_counter()
            rows = compute()
            seconds = time.perf_counter() - t0
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"what": what, "rows": [{k: _finite(v) for k, v in r.items()} for r in rows]}, f, default=str)
            os.replace(tmp, self.path(key))
            with open(self.root / "computed.jsonl", "a", encoding="utf-8") as f:
                f.write(
                    json.dumps(
                        {
                            "key": key,
                            "what": what,
                            "questions": len(rows),
                            "seconds": round(seconds, 3),
                            "pid": os.getpid(),
                            "time": time.time(),
                        },
                        default=str,
                    )
                    + "\n"
                )
        return Scored(key, rows, True, seconds)


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def means(rows: Sequence[Row]) -> dict[str, float]:
    """Mean of each metric, NaN skipped."""
    out = {}
    for m in METRICS:
        vals = [float(r[m]) for r in rows if isinstance(r.get(m), (int, float)) and math.isfinite(r[m])]
        out[m] = sum(vals) / len(vals) if vals else math.nan
    return out


def summarize(rows: Sequence[Row], confidence: float, samples: int, seed: int) -> dict[str, float]:
    """``retrieval.<metric>`` means with ``_ci_low``/``_ci_high`` (bootstrap over questions), and the count."""
    out = {f"{PREFIX}{k}": v for k, v in means(rows).items()}
    cis = intervals(list(rows), METRICS, {}, confidence, samples, seed)
    for m in METRICS:
        lo, hi = cis[m]
        out[f"{PREFIX}{m}_ci_low"], out[f"{PREFIX}{m}_ci_high"] = lo, hi
    out[f"{PREFIX}n_questions"] = float(len(rows))
    return out
