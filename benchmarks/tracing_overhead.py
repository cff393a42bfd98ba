"""Benchmark: what tracing and MLflow logging add to a trial's wall time, tracing on vs off, in one run.

Usage: .venv/bin/python benchmarks/tracing_overhead.py [--config configs/default.yaml] [--repeats 2]
                                                        [--questions 24]

Starts a real `mlflow server`, then runs one-trial searches of the config's baseline configuration, alternating
``mlflow.trace_sample_rate`` 0 and 1 (``--repeats`` times each), with the LLM request cache off so every trial
really calls the model server. Per mode it prints, averaged over repeats:
- trial wall time: from the trial's start to its run's end (``trial_s`` up to the last report, plus the flush
  of traces and feedback after it), minus embedder loading and index build/load (so the ratio is against the
  time spent answering, judging and recording: the smallest honest denominator);
- tracing: building spans while answering (``trace_s``) plus the end-of-trial wait for export and feedback
  (``trace_flush_s``), per question in ms;
- MLflow logging (params, dataset inputs, metrics per shard, artifacts, answers table: ``mlflow_log_s`` minus the
  tracing flush);
and the ratios of trial wall time on/off and of tracing and logging to the trial without tracing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.tracking import MlflowClient

from ragsweep.search.config import load_config
from ragsweep.search.driver import run_search

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.local_cluster import start_mlflow  # noqa: E402


def _start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The tests' real ``mlflow server`` (sqlite store and artifacts in ``root``)."""
    try:
        return start_mlflow(root)
    except RuntimeError as e:
        raise SystemExit(f"mlflow server did not start: {e}") from None


def _trial(args: argparse.Namespace, uri: str, root: Path, rate: float, n: int) -> dict[str, float]:
    # One storage folder: the index is built once and loaded from the cache afterwards; the build and model
    # loading are left out of the wall time below anyway, so the first run is not penalised.
    overrides = {
        "storage_dir": str(root / "runs"),
        "num_samples": 1,
        "max_concurrent_trials": 1,
        "questions_per_trial": args.questions,
        "tracking_uri": uri,
        "experiment": f"trace-bench-{n}",
        "scheduler": "fifo",
    }
    cfg = load_config(args.config, overrides)
    cfg = cfg.model_copy(
        update={
            "mlflow": cfg.mlflow.model_copy(update={"trace_sample_rate": rate, "model_name": f"trace-bench-{n}"}),
            "llm": cfg.llm.model_copy(update={"cache": False}),
        }
    )
    out = run_search(cfg, args.config)
    m = MlflowClient(uri).get_run(out.trials[0]["run_id"]).data.metrics
    tracing = m.get("trace_s", 0.0) + (m.get("trace_flush_s", 0.0) if rate > 0 else 0.0)
    setup = sum(m.get(k, 0.0) for k in ("embedder_load_s", "index_s", "qdrant_load_s"))
    return {
        "wall": m["trial_s"] + m.get("trace_flush_s", 0.0) - setup,
        "tracing": tracing,
        "logging": m.get("mlflow_log_s", 0.0) - m.get("trace_flush_s", 0.0),
        "questions": m["n_questions"],
        "traces": m.get("n_traces", 0.0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--questions", type=int, default=24)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ragsweep-trace-bench-"))
    server, uri = _start_server(root)
    results: dict[float, list[dict[str, float]]] = {0.0: [], 1.0: []}
    try:
        n = 0
        for _ in range(args.repeats):
            for rate in (0.0, 1.0):  # alternate, so drift on a shared machine hits both modes alike
                results[rate].append(_trial(args, uri, root, rate, n))
                n += 1
    finally:
        server.terminate()
    mean = {rate: {k: statistics.mean(r[k] for r in rs) for k in rs[0]} for rate, rs in results.items()}
    off, on = mean[0.0], mean[1.0]
    print(
        f"\ntracing overhead: baseline trial of {args.config.name}, {int(on['questions'])} questions, "
        f"{args.repeats} repeat(s) per mode, LLM cache off, real mlflow server"
    )
    print(
        f"{'mode':<12}{'trial wall s':>14}{'tracing s':>11}{'tracing ms/q':>14}{'MLflow log s':>14}"
        f"{'traces':>8}{'wall vs off':>13}"
    )
    for name, r in (("tracing off", off), ("tracing on", on)):
        print(
            f"{name:<12}{r['wall']:>14.2f}{r['tracing']:>11.2f}{1000 * r['tracing'] / r['questions']:>14.1f}"
            f"{r['logging']:>14.2f}{r['traces']:>8.0f}{r['wall'] / off['wall']:>12.3f}x"
        )
    print(
        f"tracing / trial wall (off): {on['tracing'] / off['wall']:.1%}   "
        f"MLflow logging / trial wall (off): {off['logging'] / off['wall']:.1%}   "
        f"per-run walls off: {[round(r['wall'], 1) for r in results[0.0]]}, "
        f"on: {[round(r['wall'], 1) for r in results[1.0]]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
