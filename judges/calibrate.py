"""Judge calibration: score answers whose correctness is known and measure how well each judge agrees.

Contract: :func:`calibration_items` builds, for each sampled answerable question, a known-good item (the gold
answer, with the passage around its gold span) and a known-bad one. What the bad item swaps depends on what the
judge reads: a judge that reads the answer gets another question's gold answer (with this question's
passage), a judge that reads contexts but not the answer gets another question's passage. Optional human
labels (:func:`load_labels`) add items with a label in [0, 1]. :func:`calibrate` runs every judge ``repeats``
times over its items (no request cache, so each repeat is really asked) and returns one
:class:`JudgeCalibration` per judge: agreement with the truth (accuracy at 0.5, Spearman), self-consistency
across repeats, and calls and tokens per judged answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ragsweep.judges.base import JudgeItem, JudgeResult, LLMJudge, run_judge_sets
from ragsweep.pipelines.data import Dataset, DatasetError, Question, read_jsonl
from ragsweep.pipelines.llm_client.client import LLMClient

WINDOW = 400  # characters of the gold document kept on each side of the gold span


@dataclass(frozen=True)
class LabelledItem:
    question_id: str
    kind: str  # "gold", "wrong" or "label"
    truth: float  # 1 good, 0 bad; a human label may lie between
    item: JudgeItem


@dataclass(kw_only=True)
class JudgeCalibration:
    judge: str
    prompt_version: str
    n: int  # items judged (per repeat)
    nan: int  # items without a verdict in the first repeat (failed or nothing to judge)
    accuracy: float  # share of judged items where (value >= 0.5) == (truth >= 0.5)
    spearman: float  # rank correlation of value and truth (NaN when either is constant)
    consistency: float  # share of items given the same value in every repeat
    max_spread: float  # largest max-min of an item's value across repeats
    calls_per_answer: float
    tokens_per_answer: float
    values: list[list[float]] = field(default_factory=list)  # per repeat, per item
    reasons: list[str] = field(default_factory=list)  # per item, first repeat: rationale or why there is no value

    def row(self) -> dict[str, object]:
        return {
            "judge": self.judge,
            "n": self.n,
            "nan": self.nan,
            "accuracy": _r(self.accuracy),
            "spearman": _r(self.spearman),
            "self-consistency": _r(self.consistency),
            "calls/answer": _r(self.calls_per_answer, 2),
            "tokens/answer": _r(self.tokens_per_answer, 0),
            "prompt": self.prompt_version,
        }


def _r(x: float, digits: int = 3) -> float | None:
    return round(x, digits) if math.isfinite(x) else None


def passage(ds: Dataset, q: Question, window: int = WINDOW) -> str:
    """The gold document text around the question's first gold span (the whole start of the doc without one)."""
    if q.answer_spans:
        s = q.answer_spans[0]
        text = ds.corpus[s.doc_id].text
        return text[max(0, s.start - window) : s.end + window]
    return ds.corpus[q.gold_doc_ids[0]].text[: 2 * window] if q.gold_doc_ids else ""


def sample_questions(ds: Dataset, n: int, seed: int) -> list[Question]:
    """``n`` answerable questions with gold text, seeded; raises DatasetError when there are fewer than 2."""
    pool = [q for q in ds.questions if q.answerable and q.answers and (q.answer_spans or q.gold_doc_ids)]
    if len(pool) < 2:
        raise DatasetError(f"calibration needs at least 2 answerable questions with gold text; found {len(pool)}")
    random.Random(seed).shuffle(pool)
    return pool[: max(2, n)]


def _wrong_partner(qs: Sequence[Question], i: int) -> Question:
    """Another question whose gold answer differs (and, when possible, whose gold document differs)."""
    q = qs[i]
    others = [qs[(i + k) % len(qs)] for k in range(1, len(qs))]
    own = {a.lower() for a in q.answers}
    differ = [o for o in others if not own & {a.lower() for a in o.answers}]
    far = [o for o in differ if not set(o.gold_doc_ids) & set(q.gold_doc_ids)]
    return (far or differ or others)[0]


def calibration_items(ds: Dataset, qs: Sequence[Question], judge: LLMJudge) -> list[LabelledItem]:
    out = []
    for i, q in enumerate(qs):
        other = _wrong_partner(qs, i)
        own = passage(ds, q)
        out.append(LabelledItem(q.id, "gold", 1.0, JudgeItem(q.question, q.answers[0], q.answers, (own,))))
        if "answer" in judge.reads:
            bad = JudgeItem(q.question, other.answers[0], q.answers, (own,))
        else:
            bad = JudgeItem(q.question, q.answers[0], q.answers, (passage(ds, other),))
        out.append(LabelledItem(q.id, "wrong", 0.0, bad))
    return out


def load_labels(path: Path, ds: Dataset) -> list[LabelledItem]:
    """Human labels, JSON lines ``{"id", "answer", "label"[, "contexts"]}``; errors name the file and line."""
    by_id = {q.id: q for q in ds.questions}
    out = []
    for n, obj in read_jsonl(path):
        where = f"{path}:{n}"
        q = by_id.get(obj.get("id"))  # type: ignore[arg-type]
        if q is None:
            raise DatasetError(f"{where}: id {obj.get('id')!r} is not a question of the dataset")
        answer, label = obj.get("answer"), obj.get("label")
        if not isinstance(answer, str):
            raise DatasetError(f"{where}: 'answer' must be a string")
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not 0 <= label <= 1:
            raise DatasetError(f"{where}: 'label' must be a number in [0, 1] (1 = good answer)")
        contexts = obj.get("contexts", [passage(ds, q)])
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DatasetError(f"{where}: 'contexts' must be a list of strings")
        gold = q.answers if q.answerable else ()
        out.append(LabelledItem(q.id, "label", float(label), JudgeItem(q.question, answer, gold, tuple(contexts))))
    return out


def calibrate(
    client_factory: Callable[[], LLMClient],
    judges: Sequence[LLMJudge],
    ds: Dataset,
    qs: Sequence[Question],
    labels: Sequence[LabelledItem] = (),
    repeats: int = 2,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[JudgeCalibration], dict[str, list[LabelledItem]]]:
    """Each judge's calibration, and the items it was run on. ``client_factory`` gives an uncached client."""
    items = {j.name: calibration_items(ds, qs, j) + [x for x in labels if "answer" in j.reads] for j in judges}
    runs: list[dict[str, list[JudgeResult]]] = []
    for r in range(repeats):
        progress(f"repeat {r + 1}/{repeats}: {sum(len(v) for v in items.values())} verdicts")
        # All judges' requests go out together; each judge gets its own item list.
        runs.append(run_judge_sets(client_factory(), [(j, [x.item for x in items[j.name]]) for j in judges]))
    return [_summarise(j, items[j.name], [run[j.name] for run in runs]) for j in judges], items


def _summarise(
    judge: LLMJudge, items: Sequence[LabelledItem], runs: Sequence[Sequence[JudgeResult]]
) -> JudgeCalibration:
    values = np.array([[r.value for r in run] for run in runs], dtype=float)  # repeats x items
    truth = np.array([x.truth for x in items], dtype=float)
    first = values[0]
    ok = np.isfinite(first)
    accuracy = float(np.mean((first[ok] >= 0.5) == (truth[ok] >= 0.5))) if ok.any() else math.nan
    spearman = math.nan
    if ok.sum() >= 3 and np.ptp(first[ok]) > 0 and np.ptp(truth[ok]) > 0:
        spearman = float(spearmanr(first[ok], truth[ok]).statistic)
    both = np.all(np.isfinite(values), axis=0)
    spread = np.ptp(values[:, both], axis=0) if both.any() else np.array([])
    consistency = float(np.mean(spread == 0)) if spread.size else math.nan
    judged = [r for r in runs[0] if not r.skipped]
    return JudgeCalibration(
        judge=judge.name,
        prompt_version=judge.prompt_version,
        n=len(items),
        nan=int((~ok).sum()),
        accuracy=accuracy,
        spearman=spearman,
        consistency=consistency,
        max_spread=float(spread.max()) if spread.size else math.nan,
        calls_per_answer=sum(r.calls for r in judged) / max(1, len(judged)),
        tokens_per_answer=sum(r.prompt_tokens + r.completion_tokens for r in judged) / max(1, len(judged)),
        values=values.tolist(),
        reasons=[r.reason for r in runs[0]],
    )
