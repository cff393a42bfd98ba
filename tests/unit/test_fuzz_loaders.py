"""Property-based fuzzing of the loaders (Hypothesis): whatever a config, a dataset line, a document folder for
ingest or a reviewed CSV holds, loading it either succeeds or raises the one bad-input error, whose message names
the file (and the line or field) — never another exception type. Examples are bounded and derandomised for CI;
``RAGSWEEP_FUZZ_EXAMPLES=5000`` searches harder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.base.text_decode import NotText, decode_text
from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.ingest import ingest_folder
from ragsweep.search.cli import main
from ragsweep.search.config import load_config
from ragsweep.search.questions.review import DECISIONS, read_decisions

EXAMPLES = int(os.environ.get("RAGSWEEP_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

DOC = {"id": "d1", "title": "Cats", "text": "Cats sleep a lot. The oldest cat lived to 38 years."}
QUESTION = {
    "id": "q1",
    "question": "How old?",
    "answers": ["38 years"],
    "answerable": True,
    "gold_doc_ids": ["d1"],
    "answer_spans": [{"doc_id": "d1", "start": 42, "end": 50, "text": "38 years"}],
}

# Values of every YAML/JSON kind, including the ones YAML 1.1 and Python's json read loosely.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["yes", "no", "on", "off", "~", "1e3", "-0", ".nan", "{x}", "d1", "http://", "foo://b/x", "", "\x00"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)

# Dotted keys of the config (real ones and near misses) to overwrite with any value.
KEYS = [
    "dataset.holdout",
    "dataset.name",
    "space.chunk_size",
    "space.chunk_overlap",
    "space.top_k",
    "space.retriever",
    "space.prompt",
    "space.temperature",
    "space.reranker",
    "space.rerank_candidates",
    "pipeline.max_tokens",
    "pipeline.embedder",
    "pipeline.vector_store",
    "pipeline.hnsw_ef",
    "pipeline.qdrant_url",
    "llm.generator",
    "llm.generator.engine",
    "llm.generator.base_url",
    "llm.generator.env",
    "llm.judge",
    "llm.cache",
    "judges.suite",
    "judges.custom",
    "judges.reason_chars",
    "objective.weights",
    "objective.cost",
    "search.num_samples",
    "search.questions_per_trial",
    "search.scheduler",
    "search.baseline",
    "search.storage_path",
    "search.p_threshold",
    "mlflow.tracking_uri",
    "mlflow.experiment",
    "mlflow.model_name",
    "mlflow.redact",
    "promotion.min_metrics",
    "storage_dir",
    "space",
    "search",
    "nonsense",
    "space.chunk_sise",
]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


def _dataset(folder: Path) -> tuple[Path, Path]:
    corpus, questions = folder / "corpus.jsonl", folder / "questions.jsonl"
    corpus.write_text(json.dumps(DOC) + "\n")
    questions.write_text(json.dumps(QUESTION) + "\n" + json.dumps({**QUESTION, "id": "q2"}) + "\n")
    return corpus, questions


def _assert_clean(error: BadInput, path: Path) -> None:
    message = str(error)
    assert str(path) in message or path.name in message, message
    assert "Traceback" not in message


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=3))
def test_config_with_any_values_validates_or_exits_2_saying_where(
    edits: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """``ragsweep validate`` (config, dataset, model files, every pre-start check) exits 0, or 2 with one message
    naming the file; never 1 (an unexpected exception)."""
    with tempfile.TemporaryDirectory() as d:
        corpus, questions = _dataset(Path(d))
        data: dict[str, Any] = {
            "dataset": {"corpus": str(corpus), "questions": str(questions)},
            "storage_dir": str(Path(d) / "runs"),
        }
        for key, value in edits:
            _set(data, key, value)
        path = Path(d) / "exp.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        code = main(["validate", "--config", str(path)])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        if code == 2:
            assert err.startswith("ragsweep validate: ") and "Traceback" not in err, err


@FUZZ
@given(text=st.text(max_size=200))
def test_config_of_any_text_loads_or_says_where(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "exp.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except BadInput as e:
            _assert_clean(e, path)


field_names = st.sampled_from(
    [
        "id",
        "title",
        "text",
        "question",
        "answers",
        "answerable",
        "gold_doc_ids",
        "answer_spans",
        "doc_id",
        "start",
        "end",
        "extra",
    ]
)
objects = st.dictionaries(field_names, values, max_size=6)


def _line(obj: dict[str, Any] | str) -> str:
    if isinstance(obj, str):
        return obj.replace("\n", " ")
    return json.dumps(obj, allow_nan=True)


@FUZZ
@given(
    corpus_rows=st.lists(
        st.one_of(st.just(DOC), st.builds(lambda o: {**DOC, **o}, objects), st.text(max_size=40)), max_size=3
    ),
    question_rows=st.lists(
        st.one_of(
            st.just(QUESTION),
            st.builds(lambda o: {**QUESTION, **o}, objects),
            st.builds(lambda o: {**QUESTION, "answer_spans": [o]}, objects),
            st.text(max_size=40),
        ),
        max_size=4,
    ),
)
def test_dataset_lines_load_or_name_file_and_line(corpus_rows: list[Any], question_rows: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        corpus, questions = Path(d) / "corpus.jsonl", Path(d) / "questions.jsonl"
        corpus.write_text("".join(_line(r) + "\n" for r in corpus_rows), encoding="utf-8")
        questions.write_text("".join(_line(r) + "\n" for r in question_rows), encoding="utf-8")
        try:
            ds = load_dataset(corpus, questions)
        except BadInput as e:
            assert str(corpus) in str(e) or str(questions) in str(e), e
            return
        for q in ds.questions:  # what loads is what the contract says
            assert isinstance(q.answerable, bool) and all(isinstance(a, str) for a in q.answers)
            assert q.answerable or not q.answers
            assert set(q.gold_doc_ids) <= set(ds.corpus)


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda t, enc: t.encode(enc, "replace"),
            st.text(max_size=80),
            st.sampled_from(["utf-8", "utf-16", "utf-16-le", "cp1252", "latin-1", "utf-32", "cp1251"]),
        ),
    )
)
def test_any_bytes_decode_or_are_refused_as_not_text(raw: bytes) -> None:
    """The one text reader (ingest, loaders, review): text, or NotText with a reason; never another exception."""
    try:
        decoded = decode_text(raw)
    except NotText as e:
        assert str(e) and "\n" not in str(e)
        return
    bad = sum(1 for c in decoded.text if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t\f"))
    assert bad <= 0.01 * max(1, len(decoded.text))


printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=80)


@FUZZ
@given(text=printable, codec=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
def test_unicode_text_with_a_mark_or_in_utf8_comes_back_exactly(text: str, codec: str) -> None:
    assert decode_text(text.encode(codec)).text == text


kinds = st.sampled_from([".txt", ".md", ".html", ".jsonl", ".pdf", ".csv", ""])
contents = st.one_of(
    st.binary(max_size=200),
    printable.map(str.encode),
    st.lists(st.one_of(st.just(DOC), st.builds(lambda o: {**DOC, **o}, objects)), max_size=3).map(
        lambda rows: "".join(_line(r) + "\n" for r in rows).encode()
    ),
)


@FUZZ
@given(files=st.lists(st.tuples(kinds, contents), min_size=1, max_size=5))
def test_ingest_of_any_files_reads_or_skips_each_with_a_reason(files: list[tuple[str, bytes]]) -> None:
    """Every file is read or skipped with a reason; the only error is an id used twice (naming both places)."""
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "in"
        folder.mkdir()
        for i, (kind, data) in enumerate(files):
            (folder / f"f{i}{kind}").write_bytes(data)
        try:
            got = ingest_folder(folder)
        except BadInput as e:
            assert "is used twice, by " in str(e), e
            return
        accounted = {r["file"] for r in got.read} | {s.path.split(":")[0] for s in got.skipped}
        assert accounted == {f"f{i}{kind}" for i, (kind, _) in enumerate(files)}
        assert all(s.reason for s in got.skipped)


csv_cells = st.one_of(
    st.sampled_from(["q1", "q2", "accept", "reject", "edit", "", "ID", "Decision", "nope"]), st.text(max_size=10)
)


@FUZZ
@given(
    rows=st.lists(st.lists(csv_cells, min_size=1, max_size=4), max_size=5),
    sep=st.sampled_from([",", ";", "\t"]),
    codec=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
)
def test_a_review_file_of_any_cells_reads_or_names_file_and_line(rows: list[list[str]], sep: str, codec: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "review.csv"
        text = "\n".join(sep.join(r) for r in [["id", "decision", "edited_question"], *rows]) + "\n"
        path.write_bytes(text.encode(codec, "replace"))
        try:
            decided = read_decisions(path, {"q1", "q2"})
        except BadInput as e:
            _assert_clean(e, path)
            return
        assert set(decided) <= {"q1", "q2"} and all(v["decision"] in DECISIONS for v in decided.values())
