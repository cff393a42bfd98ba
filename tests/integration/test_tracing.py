"""Trace sampling, redaction and multi-objective promotion in one real 2-trial search (llama.cpp, Ray, `mlflow
server`).

Every question, every document and the prompt template carry a planted e-mail address; with ``mlflow.redact`` it
must appear in no logged text (traces, answers.jsonl, the answers table, prompt.txt, the prompt registry),
while the masked form does. The questions also carry a card number and a phone number, which must appear in no
file the search left, under storage_dir (request cache, retrieval cache, logs, Ray results) or in the tracking
server's store. With ``trace_sample_rate: 0.5`` each trial traces exactly the questions the sampler
picks, the same ones in both trials. The same search picks its champion with a cost rule over the Pareto front of
recall and tokens per question (top_k 1 against top_k 5), and writes the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.prompts import load_templates
from ragsweep.search.tracking.traces import sampled
from tests.conftest import REPO, write_jsonl
from tests.integration.searches import run_cli, search_runs

pytestmark = pytest.mark.integration

EMAIL = "jane.doe@example.org"
CARD, PHONE = "4111 1111 1111 1111", "+44 20 7946 0958"  # only in the questions: the corpus may be kept as given
RATE = 0.5
# top_k 1 costs far fewer prompt tokens than top_k 5; the cost rule caps tokens per question between the two.
MAX_COST = 350


@pytest.fixture(scope="module")
def redacted_search(tmp_path_factory: pytest.TempPathFactory, xquad_slice, mlflow_server: str):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("redact")
    corpus, questions = xquad_slice
    docs = [json.loads(line) for line in corpus.read_text().splitlines()]
    qs = [json.loads(line) for line in questions.read_text().splitlines()]
    for d in docs:
        d["text"] += f" Corrections to {EMAIL}."
    for q in qs:
        # a question about the card makes the model echo it: its reply is what the request cache would store
        q["question"] += f" What card number was given? (asked by {EMAIL}, card {CARD}, phone {PHONE})"
    templates = {
        name: {"system": t.system + f" Support: {EMAIL}.", "user": t.user} for name, t in load_templates(None).items()
    }
    (tmp / "prompts.yaml").write_text(yaml.safe_dump(templates))
    cfg = tmp / "exp.yaml"
    cfg.write_text(f"""
dataset: {{corpus: {write_jsonl(tmp / "corpus.jsonl", docs)}, questions: {write_jsonl(tmp / "questions.jsonl", qs)},
          name: planted}}
space: {{chunk_size: [400], chunk_overlap: [0], retriever: [bm25], top_k: [5, 1], prompt: [concise]}}
pipeline: {{max_tokens: 12, prompts_file: {tmp / "prompts.yaml"}}}
search: {{num_samples: 10, max_concurrent_trials: 2, questions_per_trial: 6, shard_size: 3, scheduler: fifo,
          sampler: grid, holdout_questions: 2, oracle: false}}
judges: {{suite: [correctness], reason_chars: 60}}
objective: {{weights: {{recall_at_k: 1.0}}, cost: tokens_per_question, max_cost: {MAX_COST}}}
mlflow: {{tracking_uri: "{mlflow_server}", experiment: redact, model_name: redact-model, trace_sample_rate: {RATE},
         redact: {{emails: true, phones: true, patterns: ['(?:\\d[ -]?){{13,16}}']}}}}
storage_dir: {tmp / "runs"}
""")
    proc = run_cli([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return mlflow_server, tmp / "runs", proc


def test_each_trial_traces_the_sampled_questions(redacted_search: tuple[Any, ...]) -> None:
    uri, _, _ = redacted_search
    _, children = search_runs(uri, "redact")
    assert len(children) == 2
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    traced = []
    for child in children:
        ids = [
            json.loads(line)["id"]
            for line in Path(client.download_artifacts(child.info.run_id, "answers.jsonl")).read_text().splitlines()
        ]
        expected = {i for i in ids if sampled(i, RATE)}
        assert 0 < len(expected) < len(ids)  # the fraction really samples
        traces = mlflow.search_traces(
            locations=[child.info.experiment_id], run_id=child.info.run_id, return_type="list"
        )
        assert {t.info.tags["ragsweep.question_id"] for t in traces} == expected
        assert child.data.metrics["n_traces"] == len(expected)
        traced.append(expected)
    assert traced[0] == traced[1]


def test_the_planted_email_is_in_no_logged_text(redacted_search: tuple[Any, ...], tmp_path: Path) -> None:
    uri, _, _ = redacted_search
    _, children = search_runs(uri, "redact")
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    texts: dict[str, str] = {}
    for child in children:
        rid = child.info.run_id
        for name in ("answers.jsonl", "answers_table.json", "prompt.txt"):
            texts[f"{rid}/{name}"] = Path(client.download_artifacts(rid, name, str(tmp_path))).read_text()
        for t in mlflow.search_traces(locations=[child.info.experiment_id], run_id=rid, return_type="list"):
            texts[f"trace {t.info.trace_id}"] = json.dumps(t.to_dict())
        texts[f"{rid}/params"] = json.dumps(child.data.params)
    prompt = client.get_prompt_version("redact-model-concise", 1)
    texts["registered prompt"] = json.dumps(prompt.template)
    leaks = [where for where, text in texts.items() if EMAIL in text]
    assert not leaks, leaks
    masked = [where for where, text in texts.items() if "[EMAIL]" in text]
    # The questions, contexts and prompt were logged, masked.
    assert any(w.endswith("answers.jsonl") for w in masked) and any(w.startswith("trace") for w in masked)
    assert "registered prompt" in masked and any(w.endswith("prompt.txt") for w in masked)


def test_no_file_it_left_holds_the_planted_personal_data(redacted_search: tuple[Any, ...]) -> None:
    """The request cache once kept the raw replies (which echo the questions' card numbers) in llm-cache.sqlite."""
    uri, storage, _ = redacted_search
    files = [p for root in (storage, uri.root) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "llm-cache.sqlite" for p in files) and len(files) > 20
    # the card's first 12 digits: SmolLM echoes "4111 1111 1111" (a reply the redactor masks, as a phone number)
    leaks = [f"{value} in {p}" for p in files for value in (CARD[:14], PHONE) if value.encode() in p.read_bytes()]
    assert not leaks, leaks


def test_multi_objective_promotes_the_front_point_the_rule_picks(redacted_search: tuple[Any, ...]) -> None:
    uri, _, proc = redacted_search
    parents, children = search_runs(uri, "redact")
    assert len(children) == 2  # the grid has two points; num_samples is capped at the grid size
    by_k = {c.data.params["top_k"]: c for c in children}
    assert by_k["1"].data.metrics["tokens_per_question"] < MAX_COST < by_k["5"].data.metrics["tokens_per_question"]
    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias("redact-model", "champion")
    assert champion.run_id == by_k["1"].info.run_id
    parent = parents[0]
    assert f"tokens_per_question <= {MAX_COST}" in parent.data.tags["ragsweep.promotion"]
    assert by_k["5"].data.tags.get("ragsweep.baseline") == "true"  # the first choice of every key
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    for name in (
        "leaderboard.csv",
        "leaderboard.md",
        "importances.json",
        "report.html",
        "pareto_front.json",
        "history.png",
    ):
        assert f"report/{name}" in arts, arts
    front = json.loads(Path(client.download_artifacts(parent.info.run_id, "report/pareto_front.json")).read_text())
    assert front["cost"] == "tokens_per_question" and by_k["1"].info.run_id in {p["run_id"] for p in front["front"]}
    html = Path(client.download_artifacts(parent.info.run_id, "report/report.html")).read_text()
    assert "leaderboard" in html and "data:image/png;base64," in html
    assert "Pareto front (objective, tokens_per_question)" in proc.stdout
    assert "margin over baseline" in proc.stdout or "the baseline configuration won" in proc.stdout
