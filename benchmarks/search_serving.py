"""Benchmark: concurrent vs one-at-a-time trials on one shared LLM server, and a re-run with a warm cache.

Usage: .venv/bin/python benchmarks/search_serving.py [--trials 4] [--questions 12]

Runs the default config (its search space, model and data) three times, each in a fresh storage folder
except the last: (1) trials one at a time, (2) all trials concurrently, (3) run 2 again on its warm request
cache. Prints wall time of the trial phase, LLM requests sent, cache hits, the server's busy time and its
utilisation (busy / trial-phase wall), with ratios to run 1, all measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from ragsweep.search.config import load_config
from ragsweep.search.driver import SearchOutcome, run_search

REPO = Path(__file__).resolve().parents[1]


def _run(config: Path, storage: Path, trials: int, questions: int, concurrent: int) -> SearchOutcome:
    cfg = load_config(
        config,
        {
            "storage_dir": str(storage),
            "num_samples": trials,
            "questions_per_trial": questions,
            "max_concurrent_trials": concurrent,
            "experiment": f"bench-serving-{concurrent}",
        },
    )
    # Let `concurrent` trials share the machine's CPUs (the LLM server is outside Ray's accounting).
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"cpus_per_trial": 2 / concurrent})})
    return run_search(cfg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--questions", type=int, default=12)
    args = ap.parse_args()
    one, many = Path(tempfile.mkdtemp(prefix="rs-one-")), Path(tempfile.mkdtemp(prefix="rs-many-"))
    runs = [
        ("one at a time, cold cache", _run(args.config, one, args.trials, args.questions, 1)),
        (f"{args.trials} concurrent, cold cache", _run(args.config, many, args.trials, args.questions, args.trials)),
        (f"{args.trials} concurrent, warm re-run", _run(args.config, many, args.trials, args.questions, args.trials)),
    ]
    print(f"\n{args.trials} trials x {args.questions} questions, one llama.cpp server (SmolLM2-135M, CPU)")
    print(f"{'run':<30}{'trials s':>9}{'vs 1':>7}{'requests':>10}{'cache hits':>11}{'busy s':>8}{'util':>7}")
    base = runs[0][1].timings["trials_s"]
    for name, out in runs:
        usage = {k: 0.0 for k in ("requests", "cache_hits")}
        for t in out.trials:
            for k in usage:
                usage[k] += t["metrics"][f"generator_{k}"] + t["metrics"][f"judge_{k}"]
        wall = out.timings["trials_s"]
        busy = out.usage["server.generator.busy_s"]
        print(
            f"{name:<30}{wall:>9.1f}{base / wall:>6.2f}x{usage['requests']:>10.0f}{usage['cache_hits']:>11.0f}"
            f"{busy:>8.1f}{busy / wall:>7.0%}"
        )
    print("(vs 1 = speed-up over run 1; util = server busy time / trial-phase wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
