from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragsweep.pipelines.data import DatasetError, load_dataset
from tests.conftest import SAMPLE, write_jsonl


def test_bundled_sample_loads() -> None:
    ds = load_dataset(SAMPLE / "corpus.jsonl", SAMPLE / "questions.jsonl")
    assert len(ds.corpus) == 48 and len(ds.questions) == 1190
    assert all(q.answer_spans for q in ds.questions)


def test_tiny_dataset_loads_and_ignores_unknown_keys(tiny_dataset: tuple[Path, Path]) -> None:
    ds = load_dataset(*tiny_dataset)
    assert [q.id for q in ds.questions] == ["q1", "q2", "q3"]
    assert ds.questions[0].answer_spans[0].start == 42
    assert not ds.questions[2].answerable


def test_question_order_is_seeded_and_shared(tiny_dataset: tuple[Path, Path]) -> None:
    ds = load_dataset(*tiny_dataset)
    assert [q.id for q in ds.ordered_questions(3, 2)] == [q.id for q in ds.ordered_questions(3, 2)]
    assert len(ds.ordered_questions(3, None)) == 3


def _rewrite(path: Path, mutate) -> None:  # type: ignore[no-untyped-def]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    mutate(rows)
    write_jsonl(path, rows)


@pytest.mark.parametrize(
    ("target", "mutate", "expected"),
    [
        ("questions", lambda r: r[0].update(gold_doc_ids=["nope"]), r"questions.jsonl:1: .*unknown document 'nope'"),
        ("questions", lambda r: r[1].update(id="q1"), r"questions.jsonl:2: duplicate question id 'q1'"),
        ("corpus", lambda r: r[1].update(id="d1"), r"corpus.jsonl:2: duplicate document id 'd1'"),
        (
            "questions",
            lambda r: r[0]["answer_spans"][0].update(text="39 years"),
            r"questions.jsonl:1: answer_spans\[0\]: span text '39 years' does not match",
        ),
        ("questions", lambda r: r[0]["answer_spans"][0].update(end=9999), r"questions.jsonl:1: .*out of range"),
        ("questions", lambda r: r[0]["answer_spans"][0].update(doc_id="zz"), r"unknown document 'zz'"),
        ("questions", lambda r: r[0].pop("question"), r"questions.jsonl:1: missing field 'question'"),
        ("questions", lambda r: r[0].update(answers="38"), r"field 'answers' must be a list"),
        ("corpus", lambda r: r.clear(), r"corpus.jsonl: the corpus is empty"),
    ],
)
def test_bad_datasets_name_file_and_line(tiny_dataset: tuple[Path, Path], target: str, mutate, expected: str) -> None:
    corpus, questions = tiny_dataset
    _rewrite(corpus if target == "corpus" else questions, mutate)
    with pytest.raises(DatasetError, match=expected):
        load_dataset(corpus, questions)


def test_bad_json_line_reports_line(tiny_dataset: tuple[Path, Path]) -> None:
    corpus, questions = tiny_dataset
    lines = questions.read_text().splitlines()
    lines.insert(1, '{"id": "broken", ')
    questions.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"questions.jsonl:2: invalid JSON"):
        load_dataset(corpus, questions)


def test_broken_utf8_reports_line(tiny_dataset: tuple[Path, Path]) -> None:
    """A UTF-8 file with one broken byte is broken UTF-8 (named by line), not a legacy code page for the whole file."""
    corpus, questions = tiny_dataset
    tail = '{"id": "d3", "text": "café "}\n'.encode() + b'{"id": "d4", "text": "\xe9"}\n'
    corpus.write_bytes(corpus.read_bytes() + tail)
    with pytest.raises(
        DatasetError,
        match=r"corpus.jsonl: the corpus file is not readable text: broken UTF-8 at "
        r"line 4",
    ):
        load_dataset(corpus, questions)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252"])
def test_dataset_files_in_any_encoding(tiny_dataset: tuple[Path, Path], encoding: str) -> None:
    """A byte-order mark, UTF-16/32 or a legacy code page: every row read, accents intact (the BOM once lost row 1)."""
    corpus, questions = tiny_dataset
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    rows.append({"id": "d9", "text": "Les crêpes du café sont très bonnes."})
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    corpus.write_bytes(text.encode(encoding))
    questions.write_bytes(questions.read_text().encode(encoding))
    ds = load_dataset(corpus, questions)
    assert ds.corpus["d9"].text == "Les crêpes du café sont très bonnes."
    assert [q.id for q in ds.questions] == ["q1", "q2", "q3"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(tmp_path / "nope.jsonl", tmp_path / "q.jsonl")
