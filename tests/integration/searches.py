"""What the integration tests' searches share: a config over the xquad slice, running a command, the runs a search
left in MLflow."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient

from ragsweep.search.tracking.runs import TAG_KIND

N_TRIALS, N_QUESTIONS, N_HELD_OUT = 2, 2, 3  # each answer of the main search costs five judge calls
N_FRESH = 2  # new questions `ragsweep evaluate` scores
# Tests about search mechanics run one cheap judge, or none when the objective reads no judge; the main search runs
# the full default judge suite (verdicts without rationales: test_tracing has a judge give them).
ONE_JUDGE = "judges: {suite: [correctness], reason_chars: 0}"
NO_JUDGE = "judges: {suite: []}"
# What only the main search needs to prove: the oracle ceiling (the mechanics tests skip its extra answers).
NO_ORACLE = ", oracle: false"
SUITE = ("judge_correctness", "judge_faithfulness", "judge_answer_relevance", "judge_context_precision")
# The main search: the default suite plus a custom YAML judge that takes part in the objective.
FULL = """judges:
  reason_chars: 0
  custom:
    - {name: concise, definition: "The answer gives what was asked and nothing else.",
       grading_prompt: "1: padded or off the point. 2: some extra words. 3: just the answer.",
       scale: {min: 1, max: 3}, reads: [question, answer]}
objective: {weights: {token_f1: 0.7, recall_at_k: 0.3, judge_concise: 0.01}}"""


def share_indexes(storage_dir: Path, corpus: Path) -> None:
    """Make ``storage_dir``'s index cache the one every search of this test process over ``corpus`` shares (a
    folder beside the corpus, which is session-scoped): the first search builds an index and stores its questions'
    vectors, later ones read them, so their drivers never load the embedding model (about 10 CPU-s each). The
    searches that check index builds themselves (test_search_e2e) keep their own cache. Makes ``storage_dir``."""
    shared = corpus.parent / "index-cache"
    shared.mkdir(exist_ok=True)
    storage_dir.mkdir(parents=True, exist_ok=True)
    link = storage_dir / "index-cache"
    if not link.is_symlink():
        link.symlink_to(shared, target_is_directory=True)


def search_config(
    tmp: Path,
    corpus: Path,
    questions: Path,
    uri: str,
    experiment: str,
    extra: str = "",
    judges: str = ONE_JUDGE,
    search: str = NO_ORACLE,
    per_trial: int = N_QUESTIONS,
    shared_indexes: bool = False,
) -> Path:
    """Write ``tmp/exp.yaml``: a small search over 24 configurations (4 indexes) of the slice, with one cheap judge
    unless ``judges`` says otherwise; ``extra`` is appended (e.g. an ``llm:`` section). ``shared_indexes``: the index
    cache is shared (:func:`share_indexes`), for searches that get as far as building indexes (a search that must
    stop before writing anything keeps its storage folder unmade)."""
    if shared_indexes:
        share_indexes(tmp / "runs", corpus)
    cfg = tmp / "exp.yaml"
    cfg.write_text(f"""
dataset: {{corpus: {corpus}, questions: {questions}, name: xquad_slice}}
space:
  chunk_size: [200, 400]
  chunk_overlap: [0, 50]
  retriever: [dense, bm25, hybrid]
  top_k: [2, 3]
  prompt: [concise, extractive]
pipeline: {{max_tokens: 16}}
search: {{num_samples: {N_TRIALS}, max_concurrent_trials: 2, questions_per_trial: {per_trial}, shard_size: 2,
          scheduler: fifo, finalists: 1, holdout_questions: {N_HELD_OUT}{search}}}
mlflow: {{tracking_uri: "{uri}", experiment: {experiment}, model_name: {experiment}-model}}
storage_dir: {tmp / "runs"}
{judges}
{extra}
""")
    return cfg


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


def run_cli(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to the end; stdout and stderr apart."""
    return subprocess.run(args, cwd=cwd, env=_env({}), capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``args`` (``env`` added to this environment); its stdout and stderr together, line by line, for a test
    that acts on what it prints."""
    return subprocess.Popen(
        args, cwd=cwd, env=_env(env or {}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def search_runs(uri: str, experiment: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "search"]
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    return parents, children
