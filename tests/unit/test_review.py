"""`ragsweep review`: the CSV round trip keeps spans exact; a bad review row names its file and line, writes nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ragsweep.pipelines.data import DatasetError, load_dataset
from ragsweep.search.questions.review import apply_review, export
from tests.conftest import write_jsonl

TEXT = "The Rhine flows 1,230 km to the North Sea. It passes Basel and Cologne before the delta."


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, Path]:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "rhine.md", "title": "Rhine", "text": TEXT}])
    s = TEXT.index("1,230 km")
    rows = [{"id": f"gen-{i}", "question": q, "answers": [a], "answerable": True, "gold_doc_ids": ["rhine.md"],
             "answer_spans": [{"doc_id": "rhine.md", "start": TEXT.index(a), "end": TEXT.index(a) + len(a),
                               "text": a}],
             "generated": {"kind": "factoid", "candidate": i, "passage_start": 0, "passage_end": 42,
                           "source_doc": "rhine.md"}}
            for i, (q, a) in enumerate([("How long is the Rhine?", "1,230 km"), ("Where does it flow?", "North Sea"),
                                        ("How far does the Rhine run?", "1,230 km")], 1)]
    assert s == rows[0]["answer_spans"][0]["start"]
    return corpus, write_jsonl(tmp_path / "questions.jsonl", rows)


def _review(path: Path, decisions: dict[str, dict[str, str]]) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    for row in table:
        row.update(decisions.get(row["id"], {}))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)


def test_round_trip_keeps_exact_spans(generated: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, questions = generated
    assert export(questions, corpus, tmp_path / "review.csv") == 3
    assert export(questions, corpus, tmp_path / "review.html") == 3
    assert "<mark>1,230 km</mark>" in (tmp_path / "review.html").read_text()
    _review(tmp_path / "review.csv", {"gen-1": {"decision": "accept"},
                                      "gen-2": {"decision": "edit", "edited_answer": "the North Sea",
                                                "edited_question": "Into what does the Rhine flow?"},
                                      "gen-3": {"decision": "reject"}})
    counts = apply_review(questions, corpus, tmp_path / "review.csv", tmp_path / "reviewed.jsonl")
    assert counts == {"accept": 1, "edit": 1, "reject": 1}
    ds = load_dataset(corpus, tmp_path / "reviewed.jsonl")  # the loader checks each span against the text
    edited = ds.questions[1]
    assert edited.question == "Into what does the Rhine flow?" and edited.answers == ("the North Sea",)
    assert TEXT[edited.answer_spans[0].start:edited.answer_spans[0].end] == "the North Sea"


@pytest.mark.parametrize(("decisions", "words"), [
    ({"gen-2": {"decision": "maybe"}}, "decision 'maybe'"),
    ({"gen-2": {"decision": "edit", "edited_answer": "Basel"}}, "does not occur in the question's passage"),
    ({"gen-1": {"decision": "reject"}, "gen-2": {"decision": "reject"}, "gen-3": {"decision": "reject"}},
     "every question was rejected"),
])
def test_a_bad_review_names_the_line_and_writes_nothing(generated: tuple[Path, Path], tmp_path: Path,
                                                        decisions: dict[str, dict[str, str]], words: str) -> None:
    corpus, questions = generated
    export(questions, corpus, tmp_path / "review.csv")
    _review(tmp_path / "review.csv", decisions)
    with pytest.raises(DatasetError, match=words) as e:
        apply_review(questions, corpus, tmp_path / "review.csv", tmp_path / "reviewed.jsonl")
    if "rejected" not in words:
        assert "review.csv:3" in str(e.value)
    assert not (tmp_path / "reviewed.jsonl").exists()
    assert json.loads(questions.read_text().splitlines()[0])["id"] == "gen-1"
