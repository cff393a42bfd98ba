from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ragsweep.search.cli import main
from ragsweep.search.config import ConfigError, load_config
from ragsweep.search.space import TrialParams
from tests.conftest import REPO

DEFAULT = REPO / "configs" / "default.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    corpus = (REPO / "data/xquad_en/corpus.jsonl").as_posix()
    questions = (REPO / "data/xquad_en/questions.jsonl").as_posix()
    p.write_text(f"dataset:\n  corpus: {corpus}\n  questions: {questions}\n" + text)
    return p


def test_default_config_is_valid_and_paths_are_absolute() -> None:
    cfg = load_config(DEFAULT)
    assert cfg.dataset.corpus.is_absolute() and cfg.dataset.corpus.exists()
    assert cfg.storage_dir.is_absolute()
    assert cfg.search.num_samples >= 2


def test_cli_overrides(tmp_path: Path) -> None:
    cfg = load_config(DEFAULT, {"num_samples": 3, "tracking_uri": "http://127.0.0.1:5000", "seed": 7})
    assert (cfg.search.num_samples, cfg.mlflow.tracking_uri, cfg.search.seed) == (3, "http://127.0.0.1:5000", 7)


def test_unknown_key_gets_line_and_did_you_mean(tmp_path: Path) -> None:
    p = _write(tmp_path, "search:\n  num_sample: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "line 5" in msg and "search.num_sample" in msg and "did you mean 'num_samples'" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'serch'.*did you mean 'search'"):
        load_config(_write(tmp_path, "serch: {}\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("space:\n  chunk_overlap: [0, 500]\n  chunk_size: [400]\n", "chunk_overlap choices must lie in"),
        ("space:\n  retriever: [dense, sparse]\n", r"space.retriever.1: unknown retriever 'sparse'; known: dense"),
        ("space:\n  prompt: [consise]\n", "unknown template 'consise' .did you mean 'concise'"),
        ("space:\n  top_k: {low: 5, high: 2}\n", r"low \(5\) must be <= high \(2\)"),
        ("objective:\n  weights: {token_f2: 1.0}\n", "unknown metric 'token_f2' .did you mean 'token_f1'"),
        ("space:\n  reranker: [none, cross_encoder]\n", "pipeline.reranker_model is not set"),
        ("pipeline:\n  reranker_model: /no/such/model\n", "pipeline.reranker_model: path does not exist"),
        ("llm:\n  generator: {engine: external}\n", "engine 'external' needs base_url"),
        ("search:\n  num_samples: 0\n", "search.num_samples: Input should be greater than or equal to 1"),
        ("search:\n  questions_per_trial: 4\n  grace_questions: 8\n", r"grace_questions \(8\) exceeds"),
        ("search:\n  scheduler: hyperband\n", "search.scheduler: unknown scheduler 'hyperband'; known: asha"),
        # issue 5: budgets, baseline, samplers, multi-objective
        ("search:\n  max_llm_calls: 0\n", "search.max_llm_calls: Input should be greater than or equal to 1"),
        ("search:\n  time_budget_s: 0\n", "search.time_budget_s: Input should be greater than 0"),
        (
            "search:\n  baseline: {top_k: 4}\n",
            r"search.baseline.top_k: 4 is not in space.top_k \(choices \[2, 3, 5\]\)",
        ),
        ("search:\n  baseline: {topk: 3}\n", "search.baseline: unknown key 'topk'"),
        ("space:\n  chunk_size: {low: 50, high: 10}\n", r"low \(50\) must be <= high \(10\)"),
        (
            "space:\n  temperature: {low: 0.0, high: 0.5}\nsearch:\n  sampler: grid\n",
            "grid' needs choices, but space.temperature is a float range",
        ),
        ("search:\n  sampler: nsga2\n", "'nsga2' is for multi-objective searches"),
        ("objective:\n  cost: latency_p59_s\n", "unknown cost metric 'latency_p59_s' .did you mean 'latency_p95_s'"),
        ("objective:\n  max_cost: 1.0\n", "max_cost needs cost"),
        ("space:\n  top_k: []\n", "space.top_k: List should have at least 1 item"),
        # issue 19: models, transforms, fusion and context as searched keys; each refused with its YAML line
        (
            "space:\n  generator: [small, big]\nllm:\n  generators:\n    small: {model: default}\n",
            r"line 5, space.generator.1: 'big' is not defined in llm.generators; it defines: small",
        ),
        (
            "space:\n  generator: [smol]\n",
            r"space.generator.0: 'smol' is not defined in llm.generators; it "
            r"defines: nothing \(llm.generators is empty\)",
        ),
        (
            "space:\n  embedder: [default, /no/such/model]\n",
            r"line 5, space.embedder.1: '/no/such/model' is not 'default', a name from pipeline.embedders or a model "
            r"folder \(embedder: no such folder",
        ),
        (
            "pipeline:\n  embedder: e5\n  embedders: {e6: {base_url: 'http://127.0.0.1:9/v1', model: m}}\n",
            r"line 5, pipeline.embedder: 'e5' is not 'default'.*pipeline.embedders defines: e6",
        ),
        (
            "pipeline:\n  embedders: {default: {base_url: 'http://127.0.0.1:9/v1', model: m}}\n",
            r"pipeline.embedders.default: a name, not 'default' or a path",
        ),
        ("pipeline:\n  embedders: {e5: {base_url: 'ftp://x', model: m}}\n", r"pipeline.embedders.e5.base_url"),
        ("space:\n  query_transform: [none, hide]\n", r"unknown query transformation 'hide' \(did you mean 'hyde'"),
        ("space:\n  chunker: [sentences]\n", r"unknown chunker 'sentences' \(did you mean 'sentence'"),
        ("space:\n  context_order: [middle]\n", r"space.context_order.0: unknown context order 'middle'"),
        (
            "space:\n  retriever: [dense]\n  hybrid_weight: [0.2, 0.8]\n",
            r"hybrid_weight is set but no trial would use it: it acts only when space.retriever includes 'hybrid'",
        ),
        ("space:\n  hybrid_weight: [1.5]\n", r"hybrid_weight \(the dense share of hybrid fusion\) must lie in"),
        ("space:\n  context_budget: [-1]\n", "context_budget must be >= 0"),
        ("pipeline:\n  multi_query_n: 0\n", "pipeline.multi_query_n: Input should be greater than or equal to 1"),
        ("llm:\n  generators: {big: {max_tokens: 0}}\n", "llm.generators.big.max_tokens: Input should be greater"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, text))


def test_endpoint_embedder_that_does_not_answer_stops_the_search_before_any_work(tmp_path: Path) -> None:
    from ragsweep.pipelines.embedders.local import EmbedderError
    from ragsweep.search.startup import check_embedders
    from tests.integration.local_cluster import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg = load_config(
        _write(
            tmp_path,
            f"space:\n  embedder: [default, e5]\npipeline:\n  embedders:\n"
            f"    e5: {{base_url: '{url}', model: m, timeout_s: 5}}\n",
        )
    )
    with pytest.raises(EmbedderError, match=rf"pipeline.embedders.e5: embeddings endpoint {url}/embeddings: Connect"):
        check_embedders(cfg)


def test_grace_only_matters_for_asha(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "search:\n  questions_per_trial: 4\n  scheduler: fifo\n"))
    assert cfg.search.grace_questions == 8 and cfg.search.scheduler == "fifo"


def test_missing_dataset_file(tmp_path: Path) -> None:
    p = tmp_path / "exp.yaml"
    p.write_text("dataset:\n  corpus: nope.jsonl\n  questions: nope2.jsonl\n")
    with pytest.raises(ConfigError, match=r"line 2, dataset.corpus: path does not exist: .*nope.jsonl"):
        load_config(p)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    p = tmp_path / "exp.yaml"
    p.write_text("dataset:\n  corpus: [unclosed\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: line \d+: invalid YAML"):
        load_config(p)


def test_config_is_frozen() -> None:
    cfg = load_config(DEFAULT)
    with pytest.raises(ValidationError):
        cfg.search.num_samples = 99  # type: ignore[misc]


def test_trial_params_reject_bad_values() -> None:
    good = {
        "chunk_size": 400,
        "chunk_overlap": 0,
        "retriever": "dense",
        "top_k": 3,
        "reranker": "none",
        "prompt": "concise",
        "temperature": 0.0,
    }
    assert TrialParams.from_sampled(good).top_k == 3
    with pytest.raises(ValueError, match="chunk_overlap"):
        TrialParams.from_sampled({**good, "chunk_overlap": 400})


def test_config_schema_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema.json"
    assert main(["config-schema", "--output", str(out)]) == 0
    schema = json.loads(out.read_text())
    assert "dataset" in schema["properties"] and "space" in schema["properties"]


def test_validate_command_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(_write(tmp_path, "bogus: 1\n"))]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
    assert main(["validate", "--config", str(DEFAULT)]) == 0
    out = capsys.readouterr().out
    assert "1190 questions" in out
    assert "space: chunk_size choices [400, 800, 1200]; " in out and "chunker choices ['chars', 'token']" in out
    assert "fixed: reranker=none, temperature=0.0, query_transform=none, context_order=retrieved" in out


@pytest.mark.parametrize("cmd", ["search", "ask", "validate", "config-schema", "judges", "judges calibrate"])
def test_every_subcommand_has_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*cmd.split(), "--help"])
    assert e.value.code == 0 and "usage: ragsweep" in capsys.readouterr().out


def test_custom_judges_from_file_and_inline_enter_the_objective(tmp_path: Path) -> None:
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "concise.yaml").write_text(
        "name: concise\ndefinition: says only what was asked\ngrading_prompt: '1 rambles, 5 bare answer'\n"
        "reads: [question, answer]\n"
    )
    inline = "{name: grounded, definition: d, grading_prompt: g, reads: [answer, contexts], higher_is_better: false}"
    cfg = load_config(
        _write(
            tmp_path,
            f"judges:\n  suite: [correctness]\n  custom: [judges/concise.yaml, {inline}]\n"
            "objective:\n  weights: {token_f1: 1.0, judge_concise: 0.2, "
            "judge_grounded: -0.1}\n",
        )
    )
    assert cfg.judges.metrics == ("judge_correctness", "judge_concise", "judge_grounded")
    assert not cfg.judges.custom[1].higher_is_better


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "judges:\n  suite: [correctness]\nobjective:\n  weights: {judge_faithfulness: 1.0}\n",
            r"'judge_faithfulness' is not computed by the configured judges \(add faithfulness to judges.suite\)",
        ),
        ("objective:\n  weights: {judge_concise: 1.0}\n", "'judge_concise' is not computed"),
        (
            "judges:\n  suite: [faithfullness]\n",
            r"line 5, judges.suite.0: unknown built-in judge 'faithfullness' \(did you mean 'faithfulness'\?\)",
        ),
        ("judges:\n  suite: [correctness, correctness]\n", "suite lists a judge twice"),
        (
            "judges:\n  custom: [nope.yaml]\n",
            r"line 5, judges.custom.0: .*nope.yaml: cannot read the judge file: file not "
            "found",
        ),
        (
            "judges:\n  custom: [{name: x, definition: d, grading_prompt: g, reads: [gold],\n"
            "            scale: {min: 2, max: 1}}]\n",
            "judges.custom.0.scale: .*min < max",
        ),
        ("judges:\n  faithfulness_calls: 3\n", "judges.faithfulness_calls: Input should be 1 or 2"),
        ("llm:\n  max_judge_error_rate: 0.1\n", "unknown key 'max_judge_error_rate'"),
    ],
)
def test_bad_judge_settings(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, text))


def test_calibrate_bad_inputs_fail_before_any_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judges", "calibrate", "--config", str(DEFAULT), "--dataset", str(tmp_path)]) == 2
    assert "expected corpus.jsonl and questions.jsonl" in capsys.readouterr().err
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "no-such-question", "answer": "x", "label": 1}\n')
    assert main(["judges", "calibrate", "--config", str(DEFAULT), "--labels", str(labels)]) == 2
    assert f"{labels}:1: id 'no-such-question' is not a question of the dataset" in capsys.readouterr().err
    q = json.loads((REPO / "data/xquad_en/questions.jsonl").read_text().splitlines()[0])["id"]
    labels.write_text(f'{{"id": "{q}", "answer": "x", "label": 1}}\n{{"id": "{q}", "answer": "x", "label": 2}}\n')
    assert main(["judges", "calibrate", "--config", str(DEFAULT), "--labels", str(labels)]) == 2
    assert f"{labels}:2: 'label' must be a number in [0, 1]" in capsys.readouterr().err
    cfg = _write(tmp_path, "judges: {suite: []}\n")
    assert main(["judges", "calibrate", "--config", str(cfg)]) == 2
    assert "nothing to calibrate" in capsys.readouterr().err
    gone = "http://127.0.0.1:9"  # discard port: nothing listens
    assert main(["judges", "calibrate", "--config", str(DEFAULT), "--tracking-uri", gone]) == 2
    assert f"MLflow tracking server {gone} is unreachable" in capsys.readouterr().err


def test_model_commands_name_an_unreachable_tracking_server(capsys: pytest.CaptureFixture[str]) -> None:
    gone = "http://127.0.0.1:9"
    for argv in (["ask", "q?"], ["serve"], ["rollback"], ["promote", "--run", "abc"]):
        assert main([*argv, "--config", str(DEFAULT), "--tracking-uri", gone]) == 2
        assert f"MLflow tracking server {gone} is unreachable" in capsys.readouterr().err
