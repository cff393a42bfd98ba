"""The main search end to end (llama.cpp server, embedded Qdrant, local Ray, a real `mlflow server`) and the tests
that read it: one parent, the child runs with metrics, artifacts and traces, the prompt registry, a registered
version with alias champion that `ragsweep ask` and `ragsweep evaluate` use, and a rerun answered from the cache.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.search.tracking.tracker import PARENT_TAG
from tests.conftest import CLI, REPO, write_jsonl
from tests.integration.searches import (
    FULL,
    N_FRESH,
    N_HELD_OUT,
    N_QUESTIONS,
    N_TRIALS,
    SUITE,
    run_cli,
    search_config,
    search_runs,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def search_result(tmp_path_factory: pytest.TempPathFactory, xquad_slice: tuple[Path, Path], mlflow_server: str):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = search_config(tmp, *xquad_slice, mlflow_server, "e2e", judges=FULL, search="")
    # Run from another folder, through the script path, as `ray submit` would (the file, not the module).
    # 108 requests to a 135M CPU model that answers one at a time (5-30 s each, a rambling faithfulness reply
    # up to its token budget more): on a busy 2-core machine its first two trials alone took 13 minutes.
    proc = run_cli([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=tmp, timeout=2400)
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
    parents, children = search_runs(uri, "e2e")
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
    parents, _ = search_runs(uri, "e2e")
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
    _, children = search_runs(uri, "e2e")
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
    _, children = search_runs(uri, "e2e")
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
    _, children = search_runs(uri, "e2e")
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
    ask = run_cli(
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
    ev = run_cli(
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
    ev = run_cli(
        [*CLI, "evaluate", "--config", str(tmp / "exp.yaml"), "--model", "e2e-model", "--questions", str(bad)],
        cwd=tmp,
        timeout=300,
    )
    assert ev.returncode == 2 and "bad.jsonl" in ev.stderr, ev.stderr[-2000:]
    assert len(client.search_runs([exp.experiment_id], "tags.`ragsweep.kind` = 'evaluation'")) == 1
    # A configuration instead of a model: the trial's config.json, rebuilt on the search's corpus and index.
    _, children = search_runs(uri, "e2e")
    trial = children[0].info.run_id
    ev = run_cli(
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
    cfg = search_config(tmp, *xquad_slice, uri, "e2e-rerun", judges=FULL, search="")
    rerun = run_cli([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=tmp)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    parents, children = search_runs(uri, "e2e-rerun")
    assert len(children) == N_TRIALS
    for c in children:
        assert c.data.metrics["llm.generator.requests"] == 0 and c.data.metrics["llm.judge.requests"] == 0
        assert c.data.metrics["llm.judge.cache_hits"] > 0
    assert parents[0].data.metrics["total.llm.judge.requests"] == 0
    # The held-out answers of the finalist came from the cache too.
    assert parents[0].data.metrics["total.holdout.llm.generator.requests"] == 0
