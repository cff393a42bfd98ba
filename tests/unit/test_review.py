"""`ragsweep review`: the CSV round trip keeps spans exact; a bad review row names its file and line, writes nothing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ragsweep.pipelines.data import DatasetError, load_dataset
from ragsweep.search.cli import main
from ragsweep.search.questions.review import apply_review, export
from tests.conftest import write_jsonl

TEXT = "The Rhine flows 1,230 km to the North Sea. It passes Basel and Cologne before the delta."


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, Path]:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "rhine.md", "title": "Rhine", "text": TEXT}])
    s = TEXT.index("1,230 km")
    rows = [
        {
            "id": f"gen-{i}",
            "question": q,
            "answers": [a],
            "answerable": True,
            "gold_doc_ids": ["rhine.md"],
            "answer_spans": [{"doc_id": "rhine.md", "start": TEXT.index(a), "end": TEXT.index(a) + len(a), "text": a}],
            "generated": {
                "kind": "factoid",
                "candidate": i,
                "passage_start": 0,
                "passage_end": 42,
                "source_doc": "rhine.md",
            },
        }
        for i, (q, a) in enumerate(
            [
                ("How long is the Rhine?", "1,230 km"),
                ("Where does it flow?", "North Sea"),
                ("How far does the Rhine run?", "1,230 km"),
            ],
            1,
        )
    ]
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
    _review(
        tmp_path / "review.csv",
        {
            "gen-1": {"decision": "accept"},
            "gen-2": {
                "decision": "edit",
                "edited_answer": "the North Sea",
                "edited_question": "Into what does the Rhine flow?",
            },
            "gen-3": {"decision": "reject"},
        },
    )
    counts = apply_review(questions, corpus, tmp_path / "review.csv", tmp_path / "reviewed.jsonl")
    assert counts == {"accept": 1, "edit": 1, "reject": 1}
    ds = load_dataset(corpus, tmp_path / "reviewed.jsonl")  # the loader checks each span against the text
    edited = ds.questions[1]
    assert edited.question == "Into what does the Rhine flow?" and edited.answers == ("the North Sea",)
    assert TEXT[edited.answer_spans[0].start : edited.answer_spans[0].end] == "the North Sea"


@pytest.mark.parametrize(
    ("decisions", "words"),
    [
        ({"gen-2": {"decision": "maybe"}}, "decision 'maybe'"),
        ({"gen-2": {"decision": "edit", "edited_answer": "Basel"}}, "does not occur in the question's passage"),
        (
            {"gen-1": {"decision": "reject"}, "gen-2": {"decision": "reject"}, "gen-3": {"decision": "reject"}},
            "every question was rejected",
        ),
    ],
)
def test_a_bad_review_names_the_line_and_writes_nothing(
    generated: tuple[Path, Path], tmp_path: Path, decisions: dict[str, dict[str, str]], words: str
) -> None:
    corpus, questions = generated
    export(questions, corpus, tmp_path / "review.csv")
    _review(tmp_path / "review.csv", decisions)
    with pytest.raises(DatasetError, match=words) as e:
        apply_review(questions, corpus, tmp_path / "review.csv", tmp_path / "reviewed.jsonl")
    if "rejected" not in words:
        assert "review.csv:3" in str(e.value)
    assert not (tmp_path / "reviewed.jsonl").exists()
    assert json.loads(questions.read_text().splitlines()[0])["id"] == "gen-1"


def _spreadsheet(path: Path, rows: list[list[str]], sep: str = ",", encoding: str = "utf-8") -> Path:
    """A reviewed CSV as a spreadsheet saves it: its own separator, encoding and column-name case."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


@pytest.mark.parametrize(("sep", "encoding"), [(";", "cp1252"), ("\t", "utf-16"), (",", "utf-8-sig"), (";", "utf-8")])
def test_a_review_saved_by_any_spreadsheet_is_read(
    generated: tuple[Path, Path], tmp_path: Path, sep: str, encoding: str
) -> None:
    """A cp1252 CSV was a raw UnicodeDecodeError (exit 1); a ';' CSV was refused as having no id/decision column."""
    corpus, questions = generated
    reviewed = _spreadsheet(
        tmp_path / "review.csv",
        [["ID", "Decision", "Edited_Question"], ["gen-1", "Reject", ""], ["gen-2", "edit", "Où se jette le Rhin ?"]],
        sep,
        encoding,
    )
    counts = apply_review(questions, corpus, reviewed, tmp_path / "reviewed.jsonl")
    assert counts == {"reject": 1, "edit": 1, "unreviewed": 1}
    kept = [json.loads(line) for line in (tmp_path / "reviewed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in kept] == ["gen-2", "gen-3"] and kept[0]["question"] == "Où se jette le Rhin ?"


def test_one_id_decided_two_ways_names_both_lines(generated: tuple[Path, Path], tmp_path: Path) -> None:
    """The last line once won silently."""
    corpus, questions = generated
    reviewed = _spreadsheet(
        tmp_path / "review.csv",
        [["id", "decision"], ["gen-1", "accept"], ["gen-2", "accept"], ["gen-1", "accept"], ["gen-1", "reject"]],
    )
    with pytest.raises(
        DatasetError,
        match=r"review.csv:5: question 'gen-1' is decided again \(reject\), "
        r"differently from .*review.csv:2 \(accept\)",
    ):
        apply_review(questions, corpus, reviewed, tmp_path / "reviewed.jsonl")
    assert not (tmp_path / "reviewed.jsonl").exists()


def test_a_malformed_question_row_is_named_by_line(generated: tuple[Path, Path], tmp_path: Path) -> None:
    """A row without "question" was a raw KeyError (exit 1)."""
    corpus, questions = generated
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    del rows[1]["question"]
    write_jsonl(questions, rows)
    with pytest.raises(DatasetError, match=r"questions.jsonl:2: missing field 'question'"):
        export(questions, corpus, tmp_path / "review.csv")


def test_a_refused_export_leaves_no_folder(
    generated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, questions = generated
    for out, words in (
        (tmp_path / "newdir" / "sub" / "review.txt", "must end in .csv"),
        (tmp_path / "newdir" / "sub" / "review.csv", "holds the input"),
    ):
        args = ["review", "export", "--questions", str(questions), "--corpus", str(corpus), "--out", str(out)]
        if "holds" in words:  # --out a folder above an input: refused before anything is made
            args[-1] = str(tmp_path)
        assert main(args) == 2
        assert words in capsys.readouterr().err
        assert not (tmp_path / "newdir").exists()
