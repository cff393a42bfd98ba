"""Benchmark: does a generated test set rank configurations as the human questions do? (tabular, replayable)

Usage:
  .venv/bin/python benchmarks/generated_vs_human.py build [--n 48]   # generate questions, answer the grid (long)
  .venv/bin/python benchmarks/generated_vs_human.py                  # replay: rankings and their agreement

``build`` runs `ragsweep generate-questions` on the xquad_en corpus with the config's generator (the CPU model by
default: SmolLM2-135M) into ``benchmarks/data/xquad_generated.jsonl``, then answers the grid of
``grid_xquad.yaml`` (24 configurations) on those questions (``grid_xquad_generated.yaml``) and stores the table
``benchmarks/data/grid_xquad_generated.json``. The human table is ``grid_xquad.json`` (the same 24
configurations on 64 of XQuAD's human questions; ``search_efficiency.py build``).

The replay computes every configuration's objective (the grid's weights: 0.7 token F1 + 0.3 recall@k) on each
set, and prints both rankings with Spearman's rho (and Kendall's tau) between them, overall and per metric, and
whether the human set's best configuration is in the generated set's top 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grid_table import REPO, TABLE, Table, build

GENERATED = REPO / "benchmarks" / "data" / "xquad_generated.jsonl"
GEN_CONFIG = REPO / "benchmarks" / "grid_xquad_generated.yaml"
GEN_TABLE = REPO / "benchmarks" / "data" / "grid_xquad_generated.json"


def generate(n: int) -> None:
    from ragsweep.search.config import load_config
    from ragsweep.search.questions.generate import generate as gen
    from ragsweep.search.questions.generate import report_table

    cfg = load_config(REPO / "configs" / "default.yaml")
    report = gen(
        REPO / "data" / "xquad_en" / "corpus.jsonl",
        GENERATED,
        n,
        cfg.llm.generator,
        seed=0,
        kinds={"factoid": 0.75, "multi_sentence": 0.25},
        log_dir=Path("/tmp/ragsweep-qgen-logs"),
    )
    print(report_table(report))


def replay() -> int:
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    human, generated = Table.load(TABLE), Table.load(GEN_TABLE)
    keys = sorted(set(human.rows) & set(generated.rows))
    weights = {"token_f1": 0.7, "recall_at_k": 0.3}
    print(
        f"{len(keys)} configurations; human: {human.n_questions} XQuAD questions; generated: "
        f"{generated.n_questions} questions from the same corpus"
    )
    rows = []
    for metric_weights, label in (
        (weights, "objective (0.7 F1 + 0.3 recall)"),
        ({"token_f1": 1.0}, "token F1"),
        ({"recall_at_k": 1.0}, "recall@k"),
    ):
        h = np.array([human.objective(k, human.questions, metric_weights) for k in keys])
        g = np.array([generated.objective(k, generated.questions, metric_weights) for k in keys])
        rho, p_rho = spearmanr(h, g)
        tau, _ = kendalltau(h, g)
        best_h = int(np.argmax(h))
        top3_g = set(np.argsort(-g)[:3].tolist())
        rows.append((label, rho, p_rho, tau, best_h in top3_g, h, g))
        print(
            f"{label:34} Spearman rho {rho:+.2f} (p {p_rho:.3f})  Kendall tau {tau:+.2f}  human best in "
            f"generated top 3: {'yes' if best_h in top3_g else 'no'}"
        )
    _, _, _, _, _, h, g = rows[0]
    print()

    def short(key: str) -> str:
        p = json.loads(key)
        return f"chunk {p['chunk_size']}/{p['chunk_overlap']}, {p['retriever']}, top_k {p['top_k']}, {p['prompt']}"

    print(f"{'configuration':44} {'human':>7} {'rank':>4} {'generated':>9} {'rank':>4}")
    rank_h = {i: r for r, i in enumerate(np.argsort(-h), 1)}
    rank_g = {i: r for r, i in enumerate(np.argsort(-g), 1)}
    for i in np.argsort(-h):
        print(f"{short(keys[i]):44} {h[i]:7.3f} {rank_h[i]:4d} {g[i]:9.3f} {rank_g[i]:4d}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", choices=("build", "replay"), default="replay")
    ap.add_argument("--n", type=int, default=48, help="build: questions to generate (default 48)")
    args = ap.parse_args()
    if args.command == "build":
        if not GENERATED.exists() or sum(1 for _ in GENERATED.open()) < args.n:
            generate(args.n)
        return build(GEN_CONFIG, GEN_TABLE)
    return replay()


if __name__ == "__main__":
    sys.exit(main())
