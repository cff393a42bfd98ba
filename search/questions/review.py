"""Review before trust: a generated question set out to a person (CSV to edit, HTML to read) and back.

Contract:
- :func:`export` writes one row per question: its id, kind, question, answer, the passage it came from with the
  answer marked, and empty ``decision`` / ``edited_question`` / ``edited_answer`` columns. ``.csv`` is the file a
  reviewer edits (any spreadsheet); ``.html`` is the same table to read in a browser (passages highlighted).
- :func:`apply_review` reads the edited CSV back: ``decision`` is ``accept`` (or empty: kept as generated),
  ``reject`` (dropped) or ``edit`` (the edited question and/or answer replace the generated ones). An edited
  answer must occur in the question's passage: its span is found there, so ``answer_spans`` stay exact. A bad
  row (unknown decision or id, an edited answer not in the passage, one id decided two ways) is an error naming
  the file and line(s), and nothing is written.
- The CSV may come back from any spreadsheet: any encoding :func:`~ragsweep.pipelines.base.text_decode.decode_text`
  reads (UTF-8 with or without a byte-order mark, UTF-16, cp1252...), separated by ``,``, ``;`` or tabs (sniffed),
  column names in any case.
- Both read the questions file through the dataset loader first, so a malformed row is an error naming its line.
- Outputs are written whole or not at all (:func:`~ragsweep.pipelines.base.files.write_text_atomic`).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ragsweep.pipelines.base.files import read_user_text, write_text_atomic
from ragsweep.pipelines.data import DatasetError, load_corpus, load_questions, read_jsonl

COLUMNS = ("id", "kind", "question", "answer", "passage", "decision", "edited_question", "edited_answer")
DECISIONS = ("", "accept", "reject", "edit")


def _rows(questions: Path, docs: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw rows of a questions file, after the dataset loader has checked every one (errors name the line)."""
    load_questions(questions, docs)
    return [obj for _, obj in read_jsonl(questions, "questions file")]


def _passage(row: dict[str, Any], text: str) -> tuple[str, int]:
    """The passage a generated row came from (its offsets in ``generated``), else the text around its span."""
    gen = row.get("generated") or {}
    if "passage_start" in gen:
        return text[gen["passage_start"] : gen["passage_end"]], gen["passage_start"]
    spans = row.get("answer_spans") or []
    if spans:
        s, e = spans[0]["start"], spans[0]["end"]
        start = max(0, s - 200)
        return text[start : min(len(text), e + 200)], start
    return text[:400], 0


def export(questions: Path, corpus: Path, out: Path) -> int:
    """Write the review table (``.csv`` or ``.html`` by ``out``'s suffix); returns the number of rows."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".html", ".htm"):
        raise DatasetError(f"--out {out}: the review file must end in .csv (to edit) or .html (to read)")
    docs = load_corpus(corpus)
    table = []
    for row in _rows(questions, docs):
        doc_id = (row.get("generated") or {}).get("source_doc") or next(iter(row.get("gold_doc_ids") or []), None)
        passage = _passage(row, docs[doc_id].text)[0] if doc_id in docs else ""
        kind = (row.get("generated") or {}).get("kind", "answerable" if row.get("answerable", True) else "unanswerable")
        table.append(
            {
                "id": row["id"],
                "kind": kind,
                "question": row["question"],
                "answer": " | ".join(row.get("answers") or []) or "(unanswerable)",
                "passage": passage,
                "decision": "",
                "edited_question": "",
                "edited_answer": "",
            }
        )
    if suffix == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
        write_text_atomic(out, buf.getvalue())
    else:
        write_text_atomic(out, _html(table, questions.name))
    return len(table)


def _html(table: list[dict[str, str]], title: str) -> str:
    def cell(r: dict[str, str], key: str) -> str:
        text = html.escape(r[key])
        if key == "passage" and r["answer"] not in ("", "(unanswerable)"):
            answer = html.escape(r["answer"].split(" | ")[0])
            text = text.replace(answer, f"<mark>{answer}</mark>", 1)
        return f"<td>{text}</td>"

    head = "".join(f"<th>{c}</th>" for c in COLUMNS[:5])
    body = "\n".join("<tr>" + "".join(cell(r, c) for c in COLUMNS[:5]) + "</tr>" for r in table)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Review: {html.escape(title)}</title>"
        "<style>td{vertical-align:top;padding:4px;border-bottom:1px solid #ddd}mark{background:#ff0}</style>"
        f"</head><body><h1>Review: {html.escape(title)}</h1><p>{len(table)} questions. Record decisions in the "
        f"CSV export (accept, reject, edit).</p><table><tr>{head}</tr>\n{body}\n</table></body></html>\n"
    )


def apply_review(questions: Path, corpus: Path, reviewed: Path, out: Path) -> Counter[str]:
    """Write ``out`` (questions.jsonl) from ``questions`` and the reviewer's CSV; returns counts per decision."""
    docs = load_corpus(corpus)
    rows = {r["id"]: r for r in _rows(questions, docs)}
    decided = read_decisions(reviewed, set(rows))
    counts: Counter[str] = Counter()
    kept = []
    for qid, row in rows.items():
        d = decided.get(qid, {"decision": ""})
        decision = d["decision"] or "unreviewed"
        counts[decision] += 1
        if decision == "reject":
            continue
        if decision == "edit":
            row = _edited(row, d, docs)
        if decision in ("accept", "edit"):
            row = {**row, "reviewed": decision}
        kept.append(row)
    if not kept:
        raise DatasetError(f"{reviewed}: every question was rejected: nothing to write")
    write_text_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept))
    return counts


def read_decisions(reviewed: Path, ids: set[str]) -> dict[str, dict[str, str]]:
    """Question id -> its row of the reviewed CSV (``decision`` lower-cased, ``where`` = file:line); DatasetError
    naming the line for an unknown id or decision, and both lines for an id decided two ways."""
    text = read_user_text(reviewed, "review file", DatasetError).text
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # one column, or too little text to tell: the default
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("id", "decision") if c not in header]
    if missing:
        raise DatasetError(
            f"{reviewed}: no column {', '.join(missing)} in its first line {header[:8]} (export a "
            "review file first; columns may be separated by , ; or tabs)"
        )
    decided: dict[str, dict[str, str]] = {}
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        line = dict(zip(header, cells, strict=False))
        where = f"{reviewed}:{reader.line_num}"
        qid = (line.get("id") or "").strip()
        if qid not in ids:
            raise DatasetError(f"{where}: unknown question id {qid!r}")
        decision = (line.get("decision") or "").strip().lower()
        if decision not in DECISIONS:
            raise DatasetError(f"{where}: decision {decision!r} is not one of accept, reject, edit (or empty)")
        row = {**line, "decision": decision, "where": where}
        earlier = decided.get(qid)
        if earlier is not None and _decision(earlier) != _decision(row):
            raise DatasetError(
                f"{where}: question {qid!r} is decided again ({decision or 'empty'}), differently "
                f"from {earlier['where']} ({earlier['decision'] or 'empty'}): keep one line per id"
            )
        decided.setdefault(qid, row)
    return decided


def _decision(row: dict[str, str]) -> tuple[str, str, str]:
    return (row["decision"], (row.get("edited_question") or "").strip(), (row.get("edited_answer") or "").strip())


def _edited(row: dict[str, Any], d: dict[str, str], docs: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if (d.get("edited_question") or "").strip():
        row["question"] = d["edited_question"].strip()
    new_answer = (d.get("edited_answer") or "").strip()
    if new_answer and row.get("answerable", True):
        doc_id = (row.get("generated") or {}).get("source_doc") or row["gold_doc_ids"][0]
        text = docs[doc_id].text
        passage, offset = _passage(row, text)
        at = passage.find(new_answer)
        if at < 0:
            raise DatasetError(
                f"{d['where']}: edited answer {new_answer!r} does not occur in the question's passage "
                f"(its span must be exact): copy it from the passage column"
            )
        start = offset + at
        row["answers"] = [new_answer]
        row["answer_spans"] = [{"doc_id": doc_id, "start": start, "end": start + len(new_answer), "text": new_answer}]
    return row
