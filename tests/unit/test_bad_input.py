"""Bad input never starts work: every case below exits 2 with one sentence naming the file, line, flag, field or
endpoint, before Ray, a server or an MLflow run starts, and leaves no file behind (docs/config.md, "What is checked
before a search starts").

The commands run in this process through ``ragsweep.search.cli.main``; ``ray.init`` and MLflow's run creation are
replaced by tripwires, so a case that got past the checks fails the test instead of starting a search.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from ragsweep.search.cli import main
from tests.conftest import write_jsonl

DOCS = [
    {"id": "d1", "title": "Cats", "text": "Cats sleep a lot. The oldest cat lived to 38 years."},
    {"id": "d2", "title": "Dogs", "text": "Dogs bark. The tallest dog was 111 cm tall."},
]
QUESTIONS = [
    {
        "id": f"q{i}",
        "question": f"Question {i} about cats?",
        "answers": ["38 years"],
        "answerable": True,
        "gold_doc_ids": ["d1"],
    }
    for i in range(8)
]

BASE = """\
dataset: {{corpus: {corpus}, questions: {questions}}}
space: {{chunk_size: [200], chunk_overlap: [0], retriever: [bm25], top_k: [2], prompt: [concise]}}
judges: {{suite: []}}
search: {{num_samples: 1, questions_per_trial: 4, grace_questions: 2}}
mlflow: {{experiment: bad-input}}
storage_dir: {storage}
"""


class WorkStarted(AssertionError):
    pass


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that would start work (Ray, an MLflow run, an LLM server) fails the test."""
    import mlflow.tracking

    from ragsweep.search.serving import engines

    def trip(*_: object, **__: object) -> None:
        raise WorkStarted("work started before the input was checked")

    monkeypatch.setattr("ray.init", trip)
    monkeypatch.setattr(mlflow.tracking.MlflowClient, "create_run", trip)
    monkeypatch.setattr(engines.ManagedServer, "start", trip)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    (tmp_path / "exp.yaml").write_text(
        BASE.format(corpus=tmp_path / "corpus.jsonl", questions=tmp_path / "questions.jsonl", storage=tmp_path / "runs")
    )
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _yaml(extra: str) -> Callable[[Path], list[str]]:
    """Append ``extra`` (YAML) to the config; later keys of the same section are merged by hand below."""

    def setup(root: Path) -> list[str]:
        cfg = root / "exp.yaml"
        text = cfg.read_text()
        for line in extra.splitlines():
            key = line.split(":", 1)[0]
            if line and not line.startswith(" ") and text.count(f"\n{key}:") + text.startswith(f"{key}:"):
                # replace a whole top-level section
                lines = text.splitlines()
                text = "\n".join(ln for ln in lines if not ln.startswith(f"{key}:")) + "\n"
        cfg.write_text(text + extra + "\n")
        return []

    return setup


def _questions(rows: list[dict]) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        write_jsonl(root / "questions.jsonl", rows)
        return []

    return setup


def _corpus_lines(text: str) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        (root / "corpus.jsonl").write_text(text)
        return []

    return setup


def _q(**changes: object) -> list[dict]:
    return [{**QUESTIONS[0], **changes}, *QUESTIONS[1:]]


def _text_gguf(root: Path) -> list[str]:
    (root / "model.gguf").write_text("not a model, just text\n")
    return _yaml(f"llm: {{generator: {{model: {root / 'model.gguf'}}}}}")(root)


def _prompts(user: str) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        (root / "prompts.yaml").write_text(json.dumps({"mine": {"system": "Answer.", "user": user}}))
        _yaml(f"pipeline: {{prompts_file: {root / 'prompts.yaml'}}}")(root)
        text = (root / "exp.yaml").read_text().replace("prompt: [concise]", "prompt: [mine]")
        (root / "exp.yaml").write_text(text)
        return []

    return setup


def _dead_endpoint(root: Path) -> list[str]:
    return _yaml(
        f"llm: {{generator: {{engine: external, base_url: 'http://127.0.0.1:{_free_port()}/v1', "
        "model: m, timeout_s: 2}}"
    )(root)


def _corpus_folder_of_junk(root: Path) -> list[str]:
    """dataset.corpus may be a folder of documents (parsed as `ragsweep ingest` does); one with none is bad input."""
    (root / "docsdir").mkdir()
    (root / "docsdir" / "a.bin").write_bytes(b"\x00\x01")
    return _yaml("dataset: {corpus: docsdir, questions: questions.jsonl}")(root)


def _config_is_folder(root: Path) -> list[str]:
    (root / "cfgdir").mkdir()
    return ["--config", str(root / "cfgdir")]


def _storage_is_file(root: Path) -> list[str]:
    (root / "afile").write_text("x")
    return ["--storage-dir", str(root / "afile")]


def _read_only_storage(root: Path) -> list[str]:
    # /proc takes no new files, whoever asks (a chmod'ed folder would not stop root, who runs CI)
    return ["--storage-dir", "/proc/ragsweep-test/runs"]


def _missing_api_key(root: Path) -> list[str]:
    os.environ.pop("RAGSWEEP_TEST_NO_SUCH_KEY", None)
    return _yaml("llm: {generator: {api_key_env: RAGSWEEP_TEST_NO_SUCH_KEY}}")(root)


def _judge_folder(root: Path) -> list[str]:
    (root / "j").mkdir()
    return _yaml(f"judges: {{suite: [], custom: [{root / 'j'}]}}")(root)


def _empty_embedder(root: Path) -> list[str]:
    (root / "emb").mkdir()
    return _yaml(f"pipeline: {{embedder: {root / 'emb'}}}")(root)


def _holdout(fraction: float) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        text = (root / "exp.yaml").read_text().replace("questions.jsonl}", f"questions.jsonl, holdout: {fraction}}}")
        (root / "exp.yaml").write_text(text)
        return []

    return setup


def _empty_config(root: Path) -> list[str]:
    (root / "exp.yaml").write_text("# to be written\n\n")
    return []


def _flags(*flags: str) -> Callable[[Path], list[str]]:
    return lambda root: list(flags)


# (case id, setup(root) -> extra CLI args, words the one-sentence error must contain)
CASES: list[tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = [
    ("gguf-is-text", _text_gguf, ("model.gguf", "not a GGUF")),
    ("external-endpoint-dead", _dead_endpoint, ("llm.generator.base_url", "/models")),
    ("storage-path-unknown-fs", _flags("--storage-path", "foo://bucket/x"), ("--storage-path", "foo")),
    (
        "range-step-negative",
        _yaml(
            "space: {chunk_size: {low: 200, high: 400, step: -100}, retriever: [bm25], "
            "prompt: [concise], top_k: [2], chunk_overlap: [0]}"
        ),
        ("line", "step"),
    ),
    (
        "range-step-zero",
        _yaml(
            "space: {chunk_size: {low: 200, high: 400, step: 0}, retriever: [bm25], "
            "prompt: [concise], top_k: [2], chunk_overlap: [0]}"
        ),
        ("line", "step"),
    ),
    ("prompt-other-placeholder", _prompts("Hi {user_name}. Q: {question} C: {context}"), ("prompts.yaml", "user_name")),
    ("prompt-json-example", _prompts('Reply like {"a": 1}. Q: {question} C: {context}'), ("prompts.yaml", "{{")),
    ("prompt-unpaired-brace", _prompts("Q: {question} C: {context} }"), ("prompts.yaml", "brace")),
    ("embedder-missing-folder", _yaml("pipeline: {embedder: /no/such/model}"), ("/no/such/model",)),
    ("embedder-not-a-model", _empty_embedder, ("emb", "modules.json")),
    (
        "base-url-not-url",
        _yaml("llm: {generator: {engine: external, base_url: not a url, model: m}}"),
        ("line", "base_url", "http"),
    ),
    ("experiment-empty", _yaml("mlflow: {experiment: ''}"), ("line", "mlflow.experiment", "empty")),
    ("model-name-illegal", _yaml("mlflow: {model_name: 'team/rag model@v1'}"), ("line", "model_name", "/")),
    ("model-name-at", _yaml("mlflow: {model_name: 'rag@v1', experiment: x}"), ("line", "model_name", "@")),
    ("tracking-uri-unknown-scheme", _yaml("mlflow: {tracking_uri: 'foo://host/x'}"), ("line", "tracking_uri", "foo")),
    ("qdrant-url-not-url", _yaml("pipeline: {qdrant_url: 'localhost 6333'}"), ("line", "qdrant_url")),
    ("answerable-string", _questions(_q(answerable="false")), ("questions.jsonl:1", "answerable", "true or false")),
    ("unanswerable-with-answers", _questions(_q(answerable=False)), ("questions.jsonl:1", "unanswerable")),
    ("answers-not-strings", _questions(_q(answers=[38])), ("questions.jsonl:1", "answers")),
    ("gold-doc-ids-string", _questions(_q(gold_doc_ids="d1")), ("questions.jsonl:1", "gold_doc_ids", "a list")),
    ("duplicate-json-key", _corpus_lines('{"id": "d1", "id": "d2", "text": "x"}\n'), ("corpus.jsonl:1", "twice")),
    ("json-nan", _corpus_lines('{"id": "d1", "text": "x", "score": NaN}\n'), ("corpus.jsonl:1", "NaN")),
    ("title-not-string", _corpus_lines('{"id": "d1", "text": "x", "title": 3}\n'), ("corpus.jsonl:1", "title")),
    ("duplicate-yaml-key", _yaml("search: {num_samples: 1, num_samples: 2}"), ("line", "duplicate key")),
    ("yes-for-number", _yaml("search: {num_samples: yes}"), ("line", "search.num_samples")),
    ("true-for-number", _yaml("search: {num_samples: true}"), ("line", "search.num_samples", "boolean")),
    (
        "nan-in-list",
        _yaml(
            "space: {temperature: [0.0, .nan], retriever: [bm25], prompt: [concise], top_k: [2], "
            "chunk_size: [200], chunk_overlap: [0]}"
        ),
        ("line", "temperature", "finite"),
    ),
    ("inf-weight", _yaml("objective: {weights: {token_f1: .inf}}"), ("line", "weights")),
    (
        "questions-per-trial-too-many",
        _yaml("search: {num_samples: 1, questions_per_trial: 500, grace_questions: 2}"),
        ("search.questions_per_trial", "500", "only"),
    ),
    ("corpus-folder-without-documents", _corpus_folder_of_junk, ("docsdir", "no usable documents", "a.bin")),
    ("config-is-folder", _config_is_folder, ("cfgdir", "folder")),
    ("judge-file-is-folder", _judge_folder, ("judges.custom.0", "folder")),
    ("storage-dir-is-file", _storage_is_file, ("afile", "file")),
    ("storage-dir-read-only", _read_only_storage, ("/proc", "cannot write")),
    ("api-key-env-missing", _missing_api_key, ("RAGSWEEP_TEST_NO_SUCH_KEY",)),
    ("flag-num-samples-negative", _flags("--num-samples", "-3"), ("--num-samples",)),
    ("flag-tracking-uri-scheme", _flags("--tracking-uri", "foo://x"), ("--tracking-uri", "foo")),
    ("holdout-leaves-too-few", _holdout(0.9), ("dataset.holdout", "0.9", "leaves 1 to search")),
    ("config-empty", _empty_config, ("exp.yaml", "is empty")),
]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


SEARCH_FLAGS = (
    "storage-path-unknown-fs",
    "storage-dir-is-file",
    "storage-dir-read-only",
    "flag-num-samples-negative",
    "flag-tracking-uri-scheme",
)  # flags only `search` has
RUNS = [
    pytest.param(command, *case, id=f"{command}-{case[0]}")
    for case in CASES
    for command in ("validate", "search")
    if command == "search" or case[0] not in SEARCH_FLAGS
]


@pytest.mark.parametrize(("command", "case", "setup", "words"), RUNS)
def test_bad_input_exits_2_with_one_sentence_before_any_work(
    project: Path,
    tripwires: None,
    capsys: pytest.CaptureFixture[str],
    command: str,
    case: str,
    setup: Callable[[Path], list[str]],
    words: tuple[str, ...],
) -> None:
    extra = setup(project)
    before = _files(project)
    args = [command, *(["--config", str(project / "exp.yaml")] if "--config" not in extra else []), *extra]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    message = err.strip()
    assert message.startswith(f"ragsweep {command}: "), message
    assert "Traceback" not in message
    for w in words:
        assert w in message, (w, message)
    assert _files(project) == before, "bad input left files behind"


def _read_only_commands(root: Path) -> list[list[str]]:
    cfg = str(root / "exp.yaml")
    return [
        ["ask", "What do cats do?", "--config", cfg],
        ["promote", "--run", "0" * 32, "--config", cfg],
        ["rollback", "--config", cfg],
        ["serve", "--port", str(_free_port()), "--config", cfg],
        ["evaluate", "--questions", str(root / "questions.jsonl"), "--config", cfg],
        ["search", "--resume", "bad-input", "--config", cfg],
    ]


def test_commands_with_nothing_to_act_on_create_no_store(
    project: Path, tripwires: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """ask, promote, rollback, serve, evaluate and --resume before any search: exit 2, and no empty mlflow.db."""
    before = _files(project)
    for argv in _read_only_commands(project):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert f"ragsweep {argv[0]}: no MLflow store at {project / 'runs' / 'mlflow.db'}" in err, err
        assert _files(project) == before, argv


def test_unreachable_tracking_server_leaves_no_storage_folder(
    project: Path, tripwires: None, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://someone:hunter2-pw@127.0.0.1:{_free_port()}"
    code = main(["search", "--config", str(project / "exp.yaml"), "--tracking-uri", uri])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is unreachable" in err, err
    assert "hunter2-pw" not in err and "someone:***@" in err, err  # a password in the URI is never printed
    assert not (project / "runs").exists()


def test_serve_refuses_a_taken_or_impossible_port_before_loading(
    project: Path, tripwires: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--config", str(project / "exp.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"--port {port}: cannot listen there" in err, err
    for bad in ("70000", "0", "http"):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--port", bad])
        assert exit_.value.code == 2
        assert "argument --port" in capsys.readouterr().err


def test_an_environment_variable_is_blamed_by_its_name(
    project: Path, tripwires: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLFLOW_TRACKING_URI=foo://x was reported as the flag --tracking-uri, which the user never gave."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://x")
    for command in (["search"], ["ask", "What do cats do?"]):
        assert main([*command, "--config", str(project / "exp.yaml")]) == 2
        err = capsys.readouterr().err
        assert "MLFLOW_TRACKING_URI" in err and "--tracking-uri" not in err.split("MLFLOW_TRACKING_URI")[0], err


def test_an_empty_question_is_refused_before_the_champion_loads(
    project: Path, tripwires: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for question in ("", "   "):
        assert main(["ask", question, "--config", str(project / "exp.yaml")]) == 2
        assert "the question is empty" in capsys.readouterr().err
    assert not (project / "runs").exists()


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--max-overlap", "5", "from 0 to 1"),
        ("--max-overlap", "nan", "from 0 to 1"),
        ("--n", "0", "at least 1"),
        ("--n", "x", "not an integer"),
    ],
)
def test_generate_questions_flags_are_range_checked(
    project: Path, tripwires: None, capsys: pytest.CaptureFixture[str], flag: str, value: str, words: str
) -> None:
    with pytest.raises(SystemExit) as e:
        main(
            [
                "generate-questions",
                "--config",
                str(project / "exp.yaml"),
                "--corpus",
                str(project / "corpus.jsonl"),
                "--out",
                str(project / "q" / "new.jsonl"),
                flag,
                value,
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and words in err, err
    assert not (project / "q").exists()


def test_a_run_of_the_wrong_kind_is_named_for_what_it_is(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """promote --run <trial run> called it a search run; evaluate --run <search run> called it a trial run."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'runs' / 'mlflow.db'}"
    (project / "runs").mkdir()
    client = MlflowClient(uri)
    exp = client.create_experiment("kinds")
    search = client.create_run(exp, tags={"ragsweep.kind": "search"}).info.run_id
    trial = client.create_run(exp, tags={"ragsweep.kind": "trial", "mlflow.parentRunId": search}).info.run_id
    client.set_tag(search, "best_trial_run_id", trial)
    cfg = ["--config", str(project / "exp.yaml"), "--tracking-uri", uri]
    assert main(["promote", "--run", trial, *cfg]) == 2
    assert (
        f"--run {trial}: is a trial run, not a search run (a search's parent run); its search run is {search}"
        in capsys.readouterr().err
    )
    assert main(["evaluate", "--run", search, "--questions", str(project / "questions.jsonl"), *cfg]) == 2
    assert (
        f"--run {search}: is a search run (a search's parent run), not a trial run; its best trial run is "
        f"{trial}" in capsys.readouterr().err
    )
    assert len(client.search_runs([exp])) == 2  # no evaluation run was opened
