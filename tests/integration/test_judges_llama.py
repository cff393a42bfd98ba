"""The judge suite against the real llama.cpp server: calls per question as designed, verdicts that parse or are
NaN with a reason, a custom YAML judge, the MLflow GenAI scorer adapter and `ragsweep judges calibrate`."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ragsweep.judges.base import JudgeItem, run_judges
from ragsweep.judges.builtin import AnswerRelevanceJudge, ContextPrecisionJudge, CorrectnessJudge, FaithfulnessJudge
from ragsweep.judges.calibrate import passage
from ragsweep.judges.custom import CustomJudge, load_spec
from ragsweep.judges.mlflow_scorers import judge_scorers
from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.search.serving.engines import LlamaCppServer
from tests.conftest import CLI, REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def items(xquad_slice: tuple[Path, Path]) -> list[JudgeItem]:
    ds = load_dataset(*xquad_slice)
    qs = [q for q in ds.questions if q.answer_spans][:3]
    other = passage(ds, qs[-1])
    return [JudgeItem(q.question, q.answers[0], q.answers, (passage(ds, q), other)) for q in qs]


def _check(results: dict, n_items: int, calls: dict[str, int]) -> None:
    for name, rs in results.items():
        assert len(rs) == n_items
        for r in rs:
            assert r.calls in (calls[name], calls[name] + 1), (name, r)  # + one repair at most
            if math.isnan(r.value):
                assert r.failed and r.reason and r.calls == calls[name] + 1
            else:
                assert 0.0 <= r.value <= 1.0 and r.prompt_tokens > 0


def test_default_suite_makes_one_call_per_judge_and_question(llama_server: LlamaCppServer, items) -> None:  # type: ignore[no-untyped-def]
    client = LLMClient(llama_server.base_url, llama_server.model_id, max_concurrency=2)
    judges = [CorrectnessJudge(60), FaithfulnessJudge(1), AnswerRelevanceJudge(60), ContextPrecisionJudge(60)]
    out = run_judges(client, judges, items)
    _check(out, len(items), {j.name: 1 for j in judges})
    repairs = sum(r.repaired for rs in out.values() for r in rs)
    assert client.stats.requests == 4 * len(items) + repairs  # 4 calls a question, whatever k is (here 2)


def test_two_call_faithfulness(llama_server: LlamaCppServer, items) -> None:  # type: ignore[no-untyped-def]
    client = LLMClient(llama_server.base_url, llama_server.model_id, max_concurrency=2)
    out = run_judges(client, [FaithfulnessJudge(2)], items)
    # Two calls unless the first step failed for good (then its repair is the second call and there is no third).
    for r in out["judge_faithfulness"]:
        assert 2 <= r.calls <= 4 and (0.0 <= r.value <= 1.0 or (r.failed and r.reason))


def test_custom_yaml_judge(llama_server: LlamaCppServer, items, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "concise.yaml"
    path.write_text("""
name: concise
definition: The answer gives what the question asks and nothing else.
grading_prompt: |
  1: long, padded or off the point.
  2: the answer with some extra words.
  3: just the answer.
scale: {min: 1, max: 3}
reads: [question, answer]
examples:
  - {question: "Capital of France?", answer: "Paris", score: 3, justification: "just the answer"}
""")
    judge = CustomJudge(load_spec(path), reason_chars=40)
    out = run_judges(LLMClient(llama_server.base_url, llama_server.model_id), [judge], items)
    _check(out, len(items), {"judge_concise": 1})
    assert all(r.value in (0.0, 0.5, 1.0) for r in out["judge_concise"] if not r.failed)


def test_judges_as_mlflow_genai_scorers(
    llama_server: LlamaCppServer,
    items,
    mlflow_server: str,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow.set_tracking_uri(mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")  # set_experiment exports it; undone after the test
    mlflow.set_experiment("scorers")
    data = [
        {
            "inputs": {"question": it.question},
            "outputs": {"answer": it.answer, "contexts": list(it.contexts)},
            "expectations": {"expected_response": it.gold[0]},
        }
        for it in items[:2]
    ]
    client = LLMClient(llama_server.base_url, llama_server.model_id)
    result = mlflow.genai.evaluate(data=data, scorers=judge_scorers(client))
    table = result.tables["eval_results"]
    for name in ("judge_correctness", "judge_faithfulness", "judge_answer_relevance", "judge_context_precision"):
        assert f"{name}/value" in table.columns
        values = [v for v in table[f"{name}/value"] if v == v]  # failed verdicts carry an error, not a 0
        assert all(0.0 <= v <= 1.0 for v in values)
    assert any(k.endswith("/mean") for k in result.metrics)


def test_calibrate_command_end_to_end(tmp_path: Path, xquad_slice: tuple[Path, Path], mlflow_server: str) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}}}\n"
        f"mlflow: {{tracking_uri: '{mlflow_server}', experiment: cal}}\n"
        f"judges: {{reason_chars: 0}}\nstorage_dir: {tmp_path / 'runs'}\n"
    )
    q = load_dataset(*xquad_slice).questions[0]
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps({"id": q.id, "answer": q.answers[0], "label": 1})
        + "\n"
        + json.dumps({"id": q.id, "answer": "a purple elephant", "label": 0})
        + "\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [
            *CLI,
            "judges",
            "calibrate",
            "--config",
            str(cfg),
            "--questions",
            "2",
            "--repeats",
            "2",
            "--labels",
            str(labels),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "judge calibration: 2 questions x (gold answer, wrong answer) + 2 human labels, 2 repeat(s)" in out
    for name in ("judge_correctness", "judge_faithfulness", "judge_answer_relevance", "judge_context_precision"):
        assert f"| {name}" in out
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("cal-judges")
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["ragsweep.kind"] == "calibration"
    m = run.data.metrics
    assert m["judge_correctness.calls_per_answer"] >= 1 and 0 <= m["judge_faithfulness.consistency"] <= 1
    assert len(run.data.params["judge_context_precision.prompt_version"]) == 12
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"calibration.md", "calibration.json", "items.jsonl"} <= arts
    rows = [
        json.loads(line)
        for line in Path(client.download_artifacts(run.info.run_id, "items.jsonl")).read_text().splitlines()
    ]
    # 2 gold + 2 wrong per judge; the labels go to the judges that read the answer (not context precision).
    count = {name: sum(r["judge"] == name for r in rows) for name in {r["judge"] for r in rows}}
    assert count == {
        "judge_correctness": 6,
        "judge_faithfulness": 6,
        "judge_answer_relevance": 6,
        "judge_context_precision": 4,
    }
    assert all(len(r["values"]) == 2 for r in rows)
