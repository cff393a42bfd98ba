"""Load and validate a corpus and its questions (the layout of the bundled sample in ``data/``).

Contract: :func:`load_dataset` either returns a fully validated :class:`Dataset` or raises
:class:`DatasetError` whose message names the file (and line, where there is one). Nothing expensive
happens before validation, so a bad dataset stops a search before any trial starts.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.base.files import read_user_text
from ragsweep.pipelines.base.text_decode import text_lines


class DatasetError(BadInput):
    """A corpus or questions file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class AnswerSpan:
    doc_id: str
    start: int
    end: int


@dataclass(kw_only=True, frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    answerable: bool
    gold_doc_ids: tuple[str, ...]
    answer_spans: tuple[AnswerSpan, ...] = ()


@dataclass(frozen=True)
class Dataset:
    corpus: dict[str, Document]
    questions: list[Question]
    digest: str  # sha256 over both files' bytes: identifies the data in MLflow and the index cache
    corpus_digest: str  # sha256 of the corpus file alone: the index depends only on this
    name: str = ""

    def ordered_questions(self, seed: int, limit: int | None) -> list[Question]:
        """The questions in one seeded order, shared by every trial so trials compare on the same set."""
        return seeded_order(self.questions, seed, limit)


def seeded_order(questions: list[Question], seed: int, limit: int | None = None) -> list[Question]:
    """``questions`` shuffled by ``seed`` (the same order for the same seed), cut to ``limit``."""
    order = list(questions)
    random.Random(seed).shuffle(order)
    return order if limit is None else order[:limit]


def split_holdout(questions: list[Question], fraction: float, seed: int) -> tuple[list[Question], list[Question]]:
    """Split into (search, held-out) with ``fraction`` of the questions held out, seeded.

    Answerable and unanswerable questions are split separately, so each part keeps their proportion (each
    kind rounds to the nearest count; a kind with two or more questions gives at least one to each side when
    ``0 < fraction < 1``). Both parts keep the input's order; ``fraction`` 0 holds nothing out.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    held: set[str] = set()
    rng = random.Random(f"holdout-{seed}")  # independent of the trials' question order for the same seed
    for answerable in (True, False):
        kind = [q.id for q in questions if q.answerable is answerable]
        n = round(fraction * len(kind))
        if fraction > 0 and len(kind) >= 2:
            n = min(max(n, 1), len(kind) - 1)
        held.update(rng.sample(kind, n))
    return [q for q in questions if q.id not in held], [q for q in questions if q.id in held]


class _DuplicateKey(Exception):
    pass


class _Constant(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise _Constant(name)  # NaN, Infinity: Python's json accepts them, JSON does not


def read_jsonl(path: Path, what: str = "dataset file") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` per non-blank line; DatasetError naming the file and line otherwise. The file
    may be in any encoding :func:`~ragsweep.pipelines.base.files.read_user_text` reads (a byte-order mark is
    dropped)."""
    for lineno, text in enumerate(text_lines(read_user_text(path, what, DatasetError).text), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
        except _DuplicateKey as e:
            raise DatasetError(f"{path}:{lineno}: field {e.args[0]!r} appears twice in the object") from None
        except _Constant as e:
            raise DatasetError(f"{path}:{lineno}: {e.args[0]} is not valid JSON") from None
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


_JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object"}


def _field(obj: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    """``obj[key]``, which must be a JSON ``kind`` (no bool for int, no "false" for bool); a missing or null key
    gives ``default``, or an error when there is none."""
    if obj.get(key) is None:
        if default is ...:
            raise DatasetError(f"{where}: missing field {key!r}")
        return default
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "null" if value is None else _JSON_NAMES.get(type(value), type(value).__name__)
        raise DatasetError(
            f"{where}: field {key!r} must be {_JSON_NAMES.get(kind, kind.__name__)}, got {got} "
            f"({json.dumps(value)[:40]})"
        )
    return value


def _strings(obj: dict[str, Any], key: str, where: str) -> list[str]:
    values = _field(obj, key, list, where, [])
    bad = next((v for v in values if not isinstance(v, str)), None)
    if bad is not None or any(isinstance(v, bool) for v in values):
        raise DatasetError(f"{where}: field {key!r} must be a list of strings, got {json.dumps(bad)[:40]} in it")
    return values


def load_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for lineno, obj in read_jsonl(path, "corpus file"):
        where = f"{path}:{lineno}"
        doc_id = _field(obj, "id", str, where)
        if doc_id in corpus:
            raise DatasetError(f"{where}: duplicate document id {doc_id!r}")
        text = _field(obj, "text", str, where)
        if not text.strip():
            raise DatasetError(f"{where}: document {doc_id!r} has empty text")
        corpus[doc_id] = Document(doc_id, _field(obj, "title", str, where, ""), text)
    if not corpus:
        raise DatasetError(f"{path}: the corpus is empty (no documents)")
    return corpus


def load_questions(path: Path, corpus: dict[str, Document]) -> list[Question]:
    questions: list[Question] = []
    seen: set[str] = set()
    for lineno, obj in read_jsonl(path, "questions file"):
        where = f"{path}:{lineno}"
        qid = _field(obj, "id", str, where)
        if qid in seen:
            raise DatasetError(f"{where}: duplicate question id {qid!r}")
        seen.add(qid)
        text = _field(obj, "question", str, where)
        if not text.strip():
            raise DatasetError(f"{where}: question {qid!r} is empty")
        _field(obj, "answers", list, where)
        answers = _strings(obj, "answers", where)
        answerable = _field(obj, "answerable", bool, where, True)
        if answerable and not answers:
            raise DatasetError(f"{where}: answerable question {qid!r} has no gold answers")
        if not answerable and answers:
            raise DatasetError(
                f"{where}: question {qid!r} is marked unanswerable but has gold answers {answers[:3]}: "
                "remove the answers or set answerable to true"
            )
        gold_doc_ids = _strings(obj, "gold_doc_ids", where)
        for doc_id in gold_doc_ids:
            if doc_id not in corpus:
                raise DatasetError(f"{where}: gold_doc_ids names unknown document {doc_id!r}")
        spans = []
        for i, span in enumerate(_field(obj, "answer_spans", list, where, [])):
            spans.append(_check_span(span, corpus, f"{where}: answer_spans[{i}]"))
        questions.append(
            Question(
                id=qid,
                question=text,
                answers=tuple(answers),
                answerable=answerable,
                gold_doc_ids=tuple(gold_doc_ids),
                answer_spans=tuple(spans),
            )
        )
    if not questions:
        raise DatasetError(f"{path}: no questions")
    return questions


def _check_span(span: Any, corpus: dict[str, Document], where: str) -> AnswerSpan:
    if not isinstance(span, dict):
        raise DatasetError(f"{where}: expected an object")
    doc_id = _field(span, "doc_id", str, where)
    start = _field(span, "start", int, where)
    end = _field(span, "end", int, where)
    if doc_id not in corpus:
        raise DatasetError(f"{where}: unknown document {doc_id!r}")
    doc_text = corpus[doc_id].text
    if not 0 <= start < end <= len(doc_text):
        raise DatasetError(f"{where}: offsets {start}:{end} out of range for {doc_id!r} ({len(doc_text)} chars)")
    text = _field(span, "text", str, where, None)
    if text is not None and doc_text[start:end] != text:
        raise DatasetError(
            f"{where}: span text {text!r} does not match {doc_id!r}[{start}:{end}] = {doc_text[start:end]!r}"
        )
    return AnswerSpan(doc_id, start, end)


def file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def load_dataset(corpus_path: Path, questions_path: Path, name: str = "") -> Dataset:
    """Load and validate both files; raise :class:`DatasetError` on the first problem found."""
    corpus = load_corpus(corpus_path)
    questions = load_questions(questions_path, corpus)
    return Dataset(
        corpus=corpus,
        questions=questions,
        digest=file_digest(corpus_path, questions_path),
        corpus_digest=file_digest(corpus_path),
        name=name or corpus_path.parent.name,
    )
