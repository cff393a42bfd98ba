"""A real search end to end: llama.cpp server, embedded Qdrant, local Ray, a real `mlflow server`.

Asserts from MLflow: one parent, the child runs with metrics and artifacts, a registered version with alias
champion, and that `ragsweep ask` answers with it. Also the error paths that must stop a search early.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.llm_client.client import LLMError, check_endpoint
from ragsweep.search.tracking.runs import TAG_KIND, TAG_STATUS
from ragsweep.search.tracking.tracker import PARENT_TAG, TAG_FAILURE
from tests.conftest import CLI, REPO, start_mlflow_server, write_jsonl
from tests.integration.local_cluster import free_port

pytestmark = pytest.mark.integration

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


def _config(
    tmp: Path,
    corpus: Path,
    questions: Path,
    uri: str,
    experiment: str,
    extra: str = "",
    judges: str = ONE_JUDGE,
    search: str = NO_ORACLE,
    per_trial: int = N_QUESTIONS,
) -> Path:
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


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _runs(uri: str, experiment: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "search"]
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    return parents, children


@pytest.fixture(scope="module")
def search_result(tmp_path_factory: pytest.TempPathFactory, xquad_slice: tuple[Path, Path], mlflow_server: str):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = _config(tmp, *xquad_slice, mlflow_server, "e2e", judges=FULL, search="")
    # Run from another folder, through the script path, as `ray submit` would (the file, not the module).
    # 108 requests to a 135M CPU model that answers one at a time (5-30 s each, a rambling faithfulness reply
    # up to its token budget more): on a busy 2-core machine its first two trials alone took 13 minutes.
    proc = _run([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=tmp, timeout=2400)
    return proc, tmp, mlflow_server


def test_search_finishes(search_result) -> None:  # type: ignore[no-untyped-def]
    proc, _, _ = search_result
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "registered e2e-model version 1 as @champion" in proc.stdout
    assert "mlflow ui --backend-store-uri" in proc.stdout
    # The pick is confirmed on questions the search never saw, with intervals.
    assert f"held-out objective on {N_HELD_OUT} questions the search never saw (95% CI)" in proc.stdout
    assert "margin over baseline" in proc.stdout or "the baseline configuration won" in proc.stdout
    # The free evidence and how it was spent: the retrieval screen on every search question, the held-out race,
    # and the headroom against the oracle-retrieval ceiling with a plain verdict.
    assert "retrieval screen: 24 configurations on 4 index(es)" in proc.stdout
    assert "held-out race: " in proc.stdout and "held-out round 1: " in proc.stdout
    assert "headroom: retrieval recall " in proc.stdout and "with the gold passage as the only context" in proc.stdout
    assert (
        "the generator limits this pipeline" in proc.stdout
        or "retrieval limits this pipeline" in proc.stdout
        or "both limit it" in proc.stdout
    )


def test_mlflow_has_parent_children_metrics_and_artifacts(search_result) -> None:  # type: ignore[no-untyped-def]
    proc, _, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents, children = _runs(uri, "e2e")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["search.num_samples"] == str(N_TRIALS)
    assert parent.data.tags["dataset.digest"] and parent.data.tags["ragsweep.version"]
    pm = parent.data.metrics
    assert pm["server.generator.busy_s"] > 0 and pm["server.generator.gpu_s"] == 0  # CPU server: no GPU-seconds
    assert pm["total.llm.generator.requests"] > 0 and pm["server.generator-0.restarts"] == 0
    assert len(children) == N_TRIALS
    # Dataset lineage: questions and corpus as MLflow dataset inputs of the parent and of every trial.
    digest = parent.data.tags["dataset.digest"]
    for run in (parent, *children):
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        assert set(inputs) == {"xquad_slice", "xquad_slice-corpus"}
        assert inputs["xquad_slice"].dataset.digest == digest[:32]
        assert "questions.jsonl" in inputs["xquad_slice"].dataset.source
    client = MlflowClient(uri)
    for child in children:
        assert child.data.tags[PARENT_TAG] == parent.info.run_id
        # The prompt it used, as a version of MLflow's prompt registry.
        prompt_uri = child.data.params["prompt.uri"]
        assert prompt_uri.startswith(f"prompts:/e2e-model-{child.data.params['prompt']}/")
        assert client.get_prompt_version(*prompt_uri.removeprefix("prompts:/").split("/")) is not None
        assert child.info.status == "FINISHED"
        m = child.data.metrics
        for key in (
            "token_f1",
            "exact_match",
            "contains",
            "recall_at_k",
            "mrr",
            "objective",
            "latency_p50_s",
            "latency_p95_s",
            "prompt_tokens",
            "completion_tokens",
        ):
            assert key in m, f"{key} missing from {child.info.run_name}"
        assert m["n_questions"] == N_QUESTIONS and m["prompt_tokens"] > 0
        assert m["llm.generator.requests"] + m["llm.generator.cache_hits"] == N_QUESTIONS
        assert m["tokens_per_question"] > 0 and m["llm.generator.busy_s"] > 0
        assert {"chunk_size", "retriever", "top_k", "prompt", "index_key", "prompt_version"} <= set(child.data.params)
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"answers.jsonl", "answers_table.json", "config.json", "prompt.txt"} <= names
        local = client.download_artifacts(child.info.run_id, "answers.jsonl")
        rows = [json.loads(line) for line in Path(local).read_text().splitlines()]
        assert len(rows) == N_QUESTIONS
        assert {"question", "contexts", "answer", "gold", "scores", "judges"} <= set(rows[0])
        assert rows[0]["contexts"] and "start" in rows[0]["contexts"][0]
        # The full judge suite: a mean or a NaN count and a prompt version per judge; at most 4 calls a question
        # (one each) unless a verdict needed its repair; every score in [0, 1] or null with a reason.
        calls = 0
        for name in SUITE:
            assert f"{name}_nan" in m or 0.0 <= m[name] <= 1.0, name
            assert len(child.data.params[f"{name}.prompt_version"]) == 12
            for r in rows:
                j = r["judges"][name]
                calls += j["calls"]
                assert j["calls"] <= 1 + j["repaired"]
                assert (r["scores"][name] is None and j["reason"]) or 0.0 <= r["scores"][name] <= 1.0
        # The custom judge: one call per answer, and its mean is in the objective like any metric.
        calls += sum(r["judges"]["judge_concise"]["calls"] for r in rows)
        assert calls == m["llm.judge.requests"] + m["llm.judge.cache_hits"]
        assert calls <= 5 * N_QUESTIONS + m["llm.judge.repaired"]
        concise = m.get("judge_concise", 0.0)
        assert m["objective"] == pytest.approx(0.7 * m["token_f1"] + 0.3 * m["recall_at_k"] + 0.01 * concise)
    # Every trial answered the same questions, in the same order.
    orders = {
        tuple(
            json.loads(line)["id"]
            for line in Path(client.download_artifacts(c.info.run_id, "answers.jsonl")).read_text().splitlines()
        )
        for c in children
    }
    assert len(orders) == 1


def test_prompt_registry_has_one_version_per_text_and_the_champion_alias(search_result) -> None:  # type: ignore[no-untyped-def]
    from ragsweep.pipelines.prompts import PromptTemplate, load_templates
    from ragsweep.search.tracking.prompts import register_templates

    proc, _, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents, _ = _runs(uri, "e2e")
    client = MlflowClient(uri)
    champion = parents[0].data.tags["champion_prompt"]
    name = champion.removeprefix("prompts:/").split("/")[0]
    assert f"prompts:/{name}/{client.get_prompt_version_by_alias(name, 'champion').version}" == champion
    import mlflow

    mlflow.set_tracking_uri(uri)
    concise = load_templates(None)["concise"]
    first = register_templates([concise], "e2e-model")  # the search registered it: same version, none new
    assert (
        first == register_templates([concise], "e2e-model") == {"concise": parents[0].data.params["prompt.concise.uri"]}
    )
    edited = register_templates([PromptTemplate("concise", concise.system + " Be brief.", concise.user)], "e2e-model")
    assert edited["concise"] != first["concise"]
    assert register_templates([concise], "e2e-model") == first  # back to the old text: its old version


def test_every_question_of_every_trial_has_a_trace_with_spans_and_feedback(search_result) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    proc, _, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, children = _runs(uri, "e2e")
    mlflow.set_tracking_uri(uri)
    judges = {*SUITE, "judge_concise"}
    for child in children:
        traces = mlflow.search_traces(
            locations=[child.info.experiment_id], run_id=child.info.run_id, return_type="list"
        )
        assert len(traces) == N_QUESTIONS == child.data.metrics["n_traces"]
        assert len({t.info.tags["ragsweep.question_id"] for t in traces}) == N_QUESTIONS
        top_k = int(child.data.params["top_k"])
        for t in traces:
            assert t.info.trace_metadata["mlflow.sourceRun"] == child.info.run_id
            spans = {s.name: s for s in t.data.spans}
            root = spans["question"]
            assert root.span_type == "CHAIN" and root.parent_id is None and root.outputs["answer"] is not None
            ret = spans["retrieve"]
            assert ret.span_type == "RETRIEVER" and ret.parent_id == root.span_id
            assert len(ret.attributes["ragsweep.chunk_ids"]) == len(ret.attributes["ragsweep.doc_ids"]) == top_k
            assert all(b > a for a, b in ret.attributes["ragsweep.offsets"]) and ret.attributes["ragsweep.scores"]
            assert ret.outputs[0]["metadata"]["doc_uri"] == ret.attributes["ragsweep.doc_ids"][0]
            assert spans["prompt"].span_type == "PARSER" and spans["prompt"].outputs["messages"][0]["role"] == "system"
            gen = spans["generate"]
            assert gen.span_type == "CHAT_MODEL" and gen.attributes["model"] == child.data.params["generator.model"]
            assert gen.attributes["max_tokens"] == 16 and gen.attributes["temperature"] == float(
                child.data.params["temperature"]
            )
            assert gen.attributes["prompt_tokens"] > 0 and gen.attributes["latency_s"] > 0
            assert gen.attributes["mlflow.chat.tokenUsage"]["input_tokens"] == gen.attributes["prompt_tokens"]
            evaluators = {s.name: s for s in t.data.spans if s.span_type == "EVALUATOR"}
            assert set(evaluators) == judges
            calls = [s for s in t.data.spans if s.name == "call"]
            assert {c.parent_id for c in calls} <= {e.span_id for e in evaluators.values()}
            assert all(c.attributes["prompt_tokens"] > 0 for c in calls)
            # Verdicts as LLM-judge feedback on the trace: a value in [0, 1], or an error saying why there is none.
            feedback = {a.name: a for a in t.info.assessments}
            assert set(feedback) <= judges and "judge_correctness" in feedback
            for a in feedback.values():
                assert a.source.source_type == "LLM_JUDGE" and a.metadata["prompt_version"]
                assert (a.value is not None and 0 <= a.value <= 1) or a.error is not None


def test_index_cache_builds_each_distinct_index_once(search_result) -> None:  # type: ignore[no-untyped-def]
    proc, tmp, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, children = _runs(uri, "e2e")
    keys = {c.data.params["index_key"] for c in children}
    builds = [json.loads(b)["key"] for b in (tmp / "runs" / "index-cache" / "builds.jsonl").read_text().splitlines()]
    # The retrieval screen builds every index of the space (2 chunk sizes x 2 overlaps), once; trials reuse them.
    assert len(builds) == len(set(builds)) == 4 and keys <= set(builds)
    # Every trial has retrieval measured on every search question (not only those it answered), free of LLM calls.
    for c in children:
        m = c.data.metrics
        assert m["retrieval.n_questions"] > m["n_questions"] and m["retrieval.cache_hit"] == 1.0
        assert m["retrieval.recall_at_k_ci_low"] <= m["retrieval.recall_at_k"] <= m["retrieval.recall_at_k_ci_high"]


def test_champion_is_registered_and_answers(search_result) -> None:  # type: ignore[no-untyped-def]
    proc, tmp, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("e2e-model", "champion")
    _, children = _runs(uri, "e2e")
    # The pick is made on held-out answers: the champion is one of the configurations confirmed there (the
    # finalist or the baseline), not necessarily the best on the search questions.
    (best,) = [c for c in children if c.info.run_id == version.run_id]
    assert "holdout.objective" in best.data.metrics
    # The version carries the index its trial used, so loading it never embeds the corpus again.
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "rag_pipeline/artifacts")}
    assert f"rag_pipeline/artifacts/{best.data.params['index_key']}" in artifacts, artifacts
    home_builds = Path.home() / ".cache" / "ragsweep" / "index" / "builds.jsonl"
    before = home_builds.read_text().count("\n") if home_builds.exists() else 0
    ragsweep = str(Path(sys.executable).parent / "ragsweep")
    ask = _run(
        [
            ragsweep,
            "ask",
            "Who won Super Bowl 50?",
            "--tracking-uri",
            uri,
            "--model-name",
            "e2e-model",
            "--json",
            "--timings",
        ],
        cwd=tmp,
        timeout=300,
    )
    assert ask.returncode == 0, ask.stderr[-3000:]
    out = json.loads(ask.stdout.strip().splitlines()[-1])
    assert isinstance(out["answer"], str) and out["sources"]
    assert {"doc_id", "start", "end", "text"} <= set(out["sources"][0])
    assert "ragsweep ask:" in ask.stderr and "loading the model" in ask.stderr
    assert (home_builds.read_text().count("\n") if home_builds.exists() else 0) == before


def test_evaluate_scores_the_champion_on_new_questions(search_result, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    proc, tmp, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in xquad_slice[1].read_text().splitlines()[-N_FRESH:]]
    fresh = write_jsonl(tmp / "fresh.jsonl", rows)
    ev = _run(
        [
            *CLI,
            "evaluate",
            "--config",
            str(tmp / "exp.yaml"),
            "--model",
            "e2e-model@champion",
            "--questions",
            str(fresh),
        ],
        cwd=tmp,
        timeout=600,
    )
    assert ev.returncode in (0, 3), ev.stdout[-2000:] + ev.stderr[-3000:]
    assert "e2e-model@champion (v" in ev.stdout and f"on {N_FRESH} questions: objective" in ev.stdout
    assert "picked on its held-out score" in ev.stdout and "judge_concise" in ev.stdout
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], "tags.`ragsweep.kind` = 'evaluation'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    m = runs[0].data.metrics
    assert {"token_f1", "objective", "objective_ci_low", "objective_ci_high", "promoted_objective"} <= set(m)
    assert runs[0].data.tags["ragsweep.drift"] in ("ok", "dropped")
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "evaluation")] == ["evaluation/answers.jsonl"]
    # A question about a document the model's corpus lacks: exit 2 naming the file, and no run.
    bad = write_jsonl(tmp / "bad.jsonl", [{**rows[0], "gold_doc_ids": ["no-such-doc"]}])
    ev = _run(
        [*CLI, "evaluate", "--config", str(tmp / "exp.yaml"), "--model", "e2e-model", "--questions", str(bad)],
        cwd=tmp,
        timeout=300,
    )
    assert ev.returncode == 2 and "bad.jsonl" in ev.stderr, ev.stderr[-2000:]
    assert len(client.search_runs([exp.experiment_id], "tags.`ragsweep.kind` = 'evaluation'")) == 1
    # A configuration instead of a model: the trial's config.json, rebuilt on the search's corpus and index.
    _, children = _runs(uri, "e2e")
    trial = children[0].info.run_id
    ev = _run(
        [*CLI, "evaluate", "--config", str(tmp / "exp.yaml"), "--run", trial, "--questions", str(fresh)],
        cwd=tmp,
        timeout=600,
    )
    assert ev.returncode in (0, 3), ev.stdout[-2000:] + ev.stderr[-3000:]
    assert f"({trial[:8]}) on {N_FRESH} questions: objective" in ev.stdout
    runs = client.search_runs([exp.experiment_id], f"tags.`ragsweep.trial_run` = '{trial}'")
    assert len(runs) == 1 and runs[0].data.tags["ragsweep.kind"] == "evaluation"


def test_rerun_of_the_same_search_makes_no_llm_calls(search_result, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    proc, tmp, uri = search_result
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Same storage_dir (so the same request cache), new experiment so the runs are easy to tell apart.
    cfg = _config(tmp, *xquad_slice, uri, "e2e-rerun", judges=FULL, search="")
    rerun = _run([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=tmp)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    parents, children = _runs(uri, "e2e-rerun")
    assert len(children) == N_TRIALS
    for c in children:
        assert c.data.metrics["llm.generator.requests"] == 0 and c.data.metrics["llm.judge.requests"] == 0
        assert c.data.metrics["llm.judge.cache_hits"] > 0
    assert parents[0].data.metrics["total.llm.judge.requests"] == 0
    # The held-out answers of the finalist came from the cache too.
    assert parents[0].data.metrics["total.holdout.llm.generator.requests"] == 0


def _tune_results(ray_root: Path) -> dict[str, dict]:
    """Ray Tune's own record of each trial: the last result in its result.json, by MLflow run id."""
    out = {}
    for f in ray_root.glob("*/*/result.json"):
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if lines and "mlflow_run_id" in lines[-1]:
            out[lines[-1]["mlflow_run_id"]] = lines[-1]
    return out


def _search_killing_the_server(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a search and SIGKILL its generator's llama.cpp server once trials are answering; the search's output
    (stdout and stderr together) as a CompletedProcess."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    port = None
    for line in proc.stdout:
        seen.append(line)
        if "generator server ready at" in line:
            port = line.split("ready at ")[1].split()[0].rsplit(":", 1)[1].split("/")[0]
        if port and "RUNNING" in line:  # trials are answering
            break
    assert port, "".join(seen)[-3000:]
    time.sleep(3)
    pids = subprocess.run(["pgrep", "-f", f"llama_cpp.server.*--port {port}"], capture_output=True, text=True)
    assert pids.stdout.strip(), "server process not found"
    for pid in pids.stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    rest, _ = proc.communicate(timeout=900)
    out = "".join(seen) + rest
    return subprocess.CompletedProcess(args, proc.returncode, out, out)


TRUST_Q, TRUST_HELD = 6, 3  # questions per trial (in shards of 3, the grace period one shard), held-out questions


@pytest.mark.parametrize("scheduler", ["asha", "paired"])
def test_two_concurrent_trials_records_baseline_holdout_and_no_repeats(
    tmp_path: Path,
    xquad_slice,  # type: ignore[no-untyped-def]
    mlflow_server: str,
    scheduler: str,
) -> None:
    # top_k 1 is deliberately bad for a recall objective (deterministic: no LLM in the score); the baseline is the
    # best configuration (top_k 5). Three configurations but num_samples 5: no configuration may run twice.
    # The paired search also has its generator's server killed mid-search: it is restarted and nothing above changes
    # (one search shows both, which is why the restart is checked here).
    exp = f"e2e-trust-{scheduler}"
    cfg = tmp_path / "trust.yaml"
    cfg.write_text(f"""
dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}}}
space: {{chunk_size: [400], chunk_overlap: [0], retriever: [bm25], top_k: [1, 3, 5], prompt: [concise]}}
pipeline: {{max_tokens: 8}}
objective: {{weights: {{recall_at_k: 1.0}}}}
{NO_JUDGE}
search: {{num_samples: 5, max_concurrent_trials: 2, questions_per_trial: {TRUST_Q}, shard_size: 3,
          grace_questions: 3, reduction_factor: 2, scheduler: {scheduler}, p_threshold: 0.3, seed: 2,
          baseline: {{top_k: 5}}, finalists: 2, holdout_questions: {TRUST_HELD}{NO_ORACLE}}}
mlflow: {{tracking_uri: "{mlflow_server}", experiment: {exp}, model_name: {exp}-model}}
storage_dir: {tmp_path / "runs"}
""")
    args = [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)]
    kill = scheduler == "paired"
    proc = _search_killing_the_server(args, tmp_path) if kill else _run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "num_samples 5 capped: the space has 3 configurations" in proc.stdout
    parents, children = _runs(mlflow_server, exp)
    if kill:
        assert "exited with code -9; restart 1/3" in proc.stdout and "restarted at" in proc.stdout
        assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["server.generator-0.restarts"] == 1
    summary = [
        (c.data.params["top_k"], c.data.metrics.get("n_questions"), c.data.tags.get(TAG_STATUS)) for c in children
    ]
    # De-duplication: three trials, three distinct configurations.
    assert sorted(c.data.params["top_k"] for c in children) == ["1", "3", "5"], summary
    # Records agree with Tune's own results, in every outcome: status tag, FINISHED, no failure tag.
    tune = _tune_results(tmp_path / "runs" / "ray")
    assert set(tune) == {c.info.run_id for c in children}, summary
    for c in children:
        answered = tune[c.info.run_id]["n_questions"]
        assert c.data.metrics["n_questions"] == answered
        assert c.data.tags[TAG_STATUS] == ("completed" if answered == TRUST_Q else "stopped_early"), summary
        assert c.info.status == "FINISHED" and TAG_FAILURE not in c.data.tags, summary
        if answered < TRUST_Q:  # only the bad configuration is ever stopped
            assert c.data.params["top_k"] == "1", summary
    # The baseline always answers every question, whatever the scheduler thought of it.
    base = next(c for c in children if c.data.tags.get("ragsweep.baseline") == "true")
    assert base.data.params["top_k"] == "5" and base.data.metrics["n_questions"] == TRUST_Q
    # Intervals on every completed trial; held-out answers for the finalists; the winner is one of them.
    for c in children:
        if c.data.tags[TAG_STATUS] == "completed":
            m = c.data.metrics
            assert m["objective_ci_low"] <= m["objective"] <= m["objective_ci_high"], summary
    confirmed = [c for c in children if "holdout.objective" in c.data.metrics]  # 2 finalists and the baseline
    assert 2 <= len(confirmed) <= 3 and base.info.run_id in {c.info.run_id for c in confirmed}, summary
    client = MlflowClient(mlflow_server)
    for c in confirmed:
        m = c.data.metrics
        assert m["holdout.n_questions"] == TRUST_HELD and m["holdout.objective_ci_low"] <= m["holdout.objective"]
        rows = Path(client.download_artifacts(c.info.run_id, "holdout/answers.jsonl")).read_text().splitlines()
        held = {json.loads(r)["id"] for r in rows}
        searched = {
            json.loads(r)["id"]
            for r in Path(client.download_artifacts(c.info.run_id, "answers.jsonl")).read_text().splitlines()
        }
        assert len(held) == TRUST_HELD and not held & searched  # the search never saw them
    champion = client.get_model_version_by_alias(f"{exp}-model", "champion")
    assert champion.run_id in {c.info.run_id for c in confirmed}
    assert f"held-out objective on {TRUST_HELD} questions the search never saw" in proc.stdout
    assert parents[0].data.params["holdout.n_questions"] == str(TRUST_HELD)
    assert parents[0].data.tags["ragsweep.selection.on"] == "held-out"


def test_missing_model_file_stops_before_any_run(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    extra = "llm:\n  generator: {engine: llama.cpp, model: /no/such/model.gguf}\n"
    cfg = _config(tmp_path, *xquad_slice, mlflow_server, "e2e-missing-model", extra)
    proc = _run([*CLI, "search", "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 2
    assert "model file not found: /no/such/model.gguf" in proc.stderr
    assert MlflowClient(mlflow_server).get_experiment_by_name("e2e-missing-model") is None


def test_unreachable_endpoint_stops_before_any_run(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    """An external endpoint that does not answer is bad input: exit 2 naming it, before an MLflow run or Ray."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    extra = f"llm:\n  generator: {{engine: external, base_url: '{url}', model: m}}\n"
    cfg = _config(tmp_path, *xquad_slice, mlflow_server, "e2e-unreachable", extra)
    proc = _run([*CLI, "search", "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"llm.generator.base_url: LLM endpoint {url}/models is not usable" in proc.stderr
    assert MlflowClient(mlflow_server).get_experiment_by_name("e2e-unreachable") is None
    assert not (tmp_path / "runs").exists()


def test_unreachable_mlflow_server_stops_before_anything_starts(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = _config(tmp_path, *xquad_slice, uri, "e2e-no-mlflow")
    proc = _run([*CLI, "search", "--config", str(cfg)], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"MLflow tracking server {uri} is unreachable" in proc.stderr and "Connect" in proc.stderr
    assert not (tmp_path / "runs" / "ray").exists() and not (tmp_path / "runs" / "logs").exists()


def test_mlflow_server_gone_mid_search_fails_naming_what_was_not_logged(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    server, uri = start_mlflow_server(tmp_path)
    cfg = _config(tmp_path, *xquad_slice, uri, "e2e-mlflow-gone")
    # Few quick retries, so the test does not wait out MLflow's four-minute default.
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    proc = subprocess.Popen(
        [*CLI, "search", "--config", str(cfg)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "RUNNING" in line:  # trials are answering, their runs are open
                break
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        rest, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(seen) + rest
    assert proc.returncode == 1, out[-4000:]
    # The trials name what they could not log; the driver says the search run could not be closed, and where
    # Ray Tune's results are.
    assert "could not log" in out and f"to MLflow at {uri} after retries" in out
    assert f"MLflow at {uri} also stopped answering" in out and "were not logged" in out
    assert "Ray Tune's results are in" in out


def test_failing_server_start_fails_parent_run(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    # The GGUF magic but nothing valid after it: past the pre-start check, so llama.cpp itself fails to load it.
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"not a valid model" * 8)
    extra = f"llm:\n  generator: {{engine: llama.cpp, model: {bad}}}\n"
    cfg = _config(tmp_path, *xquad_slice, mlflow_server, "e2e-broken-model", extra)
    proc = _run([*CLI, "search", "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 1
    assert "llama.cpp server for broken exited" in proc.stderr
    parents, _ = _runs(mlflow_server, "e2e-broken-model")
    assert parents[0].info.status == "FAILED" and "exited with code" in parents[0].data.tags[TAG_FAILURE]


def test_ctrl_c_stops_servers_and_closes_runs(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    # Enough questions that the search is still answering when the interrupt comes, however fast the machine.
    cfg = _config(tmp_path, *xquad_slice, mlflow_server, "e2e-interrupt", per_trial=8)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [*CLI, "search", "--config", str(cfg)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # interrupt once trials are running
        seen.append(line)
        if "Trial status" in line or "RUNNING" in line or time.monotonic() > deadline:
            break
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, "".join(seen)[-2000:] + rest[-3000:]
    parents, children = _runs(mlflow_server, "e2e-interrupt")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children)
    ready = [line for line in seen if "server ready at" in line]
    assert ready, "".join(seen)[-2000:]  # the server was started ...
    url = ready[0].split("server ready at ")[1].split()[0]
    with pytest.raises(LLMError):  # ... and is gone
        check_endpoint(url, timeout_s=2)
