"""``ragsweep generate-questions``: synthetic questions with exact answer spans, from the shared generator server.

Contract: :func:`generate` checks its inputs (corpus, output, resume state) before starting a server; then
asks the server for questions over the seeded candidates of ``questions.qgen`` in batches, filters them, and
appends kept rows to ``out`` (ragsweep's questions.jsonl layout) as it goes. Its state (``<out>.state.json``:
the settings, the next candidate, the counts) is replaced atomically after every batch, so a run that stops is
resumed by running the same command again; other settings against an existing file are refused. The report
(``<out>.report.json``, and returned) counts what was kept per kind and dropped per reason. With a tracking URI,
the set is logged to MLflow as an evaluation dataset with its generation parameters, under the same name and
digest the search's trials log, so a trial's inputs say which generated set it was scored on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from ragsweep.pipelines.base.progress import Progress
from ragsweep.pipelines.data import DatasetError, Document, load_corpus, load_dataset
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.search.config import ModelEndpoint
from ragsweep.search.questions.qgen import (
    KINDS,
    PROMPT_VERSION,
    Candidate,
    Filters,
    answerable_request,
    candidates,
    parse_question,
    prompt_for,
    question_row,
)
from ragsweep.search.serving.engines import preflight
from ragsweep.search.serving.servers import serve
from ragsweep.search.tracking.runs import TAG_KIND, check_tracking, ensure_experiment
from ragsweep.search.tracking.tracker import Tracker

BATCH = 8
MAX_ATTEMPTS_PER_QUESTION = 20  # a corpus or model that yields nothing stops after n x this many candidates


@dataclass(kw_only=True, frozen=True)
class Settings:
    """What decides the questions (a resumed run must match): stored in the state file."""

    corpus_digest: str
    n: int
    seed: int
    kinds: dict[str, float]
    model: str
    max_overlap: float
    check_answerable: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "corpus_digest": self.corpus_digest,
            "n": self.n,
            "seed": self.seed,
            "kinds": self.kinds,
            "model": self.model,
            "max_overlap": self.max_overlap,
            "check_answerable": self.check_answerable,
            "prompt_version": PROMPT_VERSION,
        }


def _paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".state.json"), out.with_name(out.name + ".report.json")


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def parse_kinds(text: str) -> dict[str, float]:
    """``factoid=0.6,multi_sentence=0.2,unanswerable=0.2`` (or names alone, equal weights) -> weights."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        if name not in KINDS:
            raise DatasetError(f"--kinds: unknown kind {name!r}; known: {', '.join(KINDS)}")
        try:
            out[name] = float(weight) if weight else 1.0
        except ValueError:
            raise DatasetError(f"--kinds: {part!r}: the weight must be a number") from None
        if out[name] < 0:
            raise DatasetError(f"--kinds: {part!r}: the weight must be >= 0")
    if not out or sum(out.values()) <= 0:
        raise DatasetError("--kinds: give at least one kind with a weight above 0")
    return out


def _resume_state(out: Path, settings: Settings, overwrite: bool) -> tuple[int, int, dict[str, Any]]:
    """(next candidate, questions already kept, counts) for ``out``; refuses a file made with other settings."""
    state_path, _ = _paths(out)
    if overwrite:
        if out.exists() and not state_path.exists():
            raise DatasetError(
                f"{out}: exists and was not written by generate-questions (no {state_path.name}); "
                "--overwrite replaces only its own files: choose another --out"
            )
        return 0, 0, {}
    if not out.exists():
        return 0, 0, {}
    if not state_path.exists():
        raise DatasetError(
            f"{out}: exists and was not written by generate-questions (no {state_path.name}); "
            "choose another --out, or pass --overwrite"
        )
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if state.get("settings") != settings.as_dict():
        changed = sorted(k for k, v in settings.as_dict().items() if state.get("settings", {}).get(k) != v)
        raise DatasetError(
            f"{out}: was generated with other settings ({', '.join(changed)} differ); run the "
            "same command to resume it, or pass --overwrite to start again"
        )
    kept = sum(1 for line in out.read_text(encoding="utf-8").splitlines() if line.strip())
    return int(state["next_candidate"]), kept, state.get("counts", {})


def generate(
    corpus_path: Path,
    out: Path,
    n: int,
    endpoint: ModelEndpoint,
    *,
    seed: int = 0,
    kinds: dict[str, float] | None = None,
    max_overlap: float = 0.5,
    check_answerable: bool = False,
    overwrite: bool = False,
    log_dir: Path,
    tracking_uri: str | None = None,
    experiment: str = "ragsweep-testsets",
    storage_dir: Path | None = None,
) -> dict[str, Any]:
    """Generate up to ``n`` questions into ``out`` (see the module docstring); returns the report."""
    if n < 1:
        raise DatasetError(f"--n must be at least 1, got {n}")
    kinds = kinds or {"factoid": 0.6, "multi_sentence": 0.2, "unanswerable": 0.2}
    corpus = load_corpus(corpus_path)
    settings = _settings(corpus_path, n, seed, kinds, endpoint.model, max_overlap, check_answerable)
    start, kept, counts = _resume_state(out, settings, overwrite)
    if kept >= n:
        print(f"{out}: already has {kept} questions (of --n {n}): nothing to do")
        return _report(out, settings, counts, kept, 0.0)
    preflight(endpoint)
    if tracking_uri:
        check_tracking(tracking_uri)  # before the server starts
    t0 = time.perf_counter()
    tally = _write_set(corpus, out, settings, endpoint, log_dir, overwrite, start, kept, counts)
    report = _report(out, settings, tally.counts(), tally.kept, time.perf_counter() - t0)
    if tally.kept < n:
        print(
            f"{out}: stopped at {tally.kept} of {n} questions after {tally.next_candidate} candidates (the corpus or "
            "model gave no more that passed the filters)"
        )
    if tracking_uri and tally.kept:
        report["mlflow_run"] = _log(
            tracking_uri, experiment, storage_dir or out.parent, corpus_path, out, settings, report
        )
        _atomic_json(_paths(out)[1], report)
    return report


def _write_set(
    corpus: dict[str, Document],
    out: Path,
    settings: Settings,
    endpoint: ModelEndpoint,
    log_dir: Path,
    overwrite: bool,
    start: int,
    kept: int,
    counts: dict[str, Any],
) -> _Tally:
    """Judge candidates from ``start`` on and write those kept into ``out`` until ``settings.n`` (the state file after
    each batch, so an interrupted run resumes); returns what was kept."""
    titles = {d.id: d.title for d in corpus.values()}
    tally = _Tally(kept, dict(counts.get("kept", {})), start, _filters_after(out, counts, settings.max_overlap))
    n, seed = settings.n, settings.seed
    quota = _quotas(n, settings.kinds)
    seq = islice(candidates(list(corpus.values()), settings.kinds, seed), start, n * MAX_ATTEMPTS_PER_QUESTION)
    work, state_path = _work_files(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": endpoint.model, "seed": seed, "prompt_version": PROMPT_VERSION}
    with (
        serve(endpoint, None, log_dir, seed) as eps,
        Progress("generate-questions", n, "questions", every_s=10) as bar,
        open(work, "a", encoding="utf-8") as f,
    ):
        bar.update(kept)
        client = eps.generator.client(None)
        meta["model"] = eps.generator.model
        while tally.kept < n:
            batch = _next_batch(seq, tally.per_kind, quota)
            if not batch:
                break
            rows = _judge_batch(client, batch, titles, tally.filters, seed, settings.check_answerable)
            tally.next_candidate = batch[-1].index + 1  # (skipped full-quota candidates before it are passed too)
            tally.write(rows, n, quota, meta, f, bar)
            f.flush()
            state = {"settings": settings.as_dict(), "next_candidate": tally.next_candidate, "counts": tally.counts()}
            _atomic_json(state_path, state)
    if work != out:
        _publish(work, out, state_path)
    return tally


def _settings(
    corpus_path: Path,
    n: int,
    seed: int,
    kinds: dict[str, float],
    model: str,
    max_overlap: float,
    check_answerable: bool,
) -> Settings:
    from ragsweep.pipelines.data import file_digest

    return Settings(
        corpus_digest=file_digest(corpus_path),
        n=n,
        seed=seed,
        kinds=kinds,
        model=model,
        max_overlap=max_overlap,
        check_answerable=check_answerable,
    )


@dataclass
class _Tally:
    """What a run has kept (in all, and per kind), where it is in the candidate sequence, and its filters."""

    kept: int
    per_kind: dict[str, int]
    next_candidate: int
    filters: Filters

    def counts(self) -> dict[str, Any]:
        return {"kept": self.per_kind, "dropped": dict(self.filters.dropped), "candidates": self.next_candidate}

    def write(self, rows: list[Any], n: int, quota: dict[str, int], meta: dict[str, Any], f: IO[str], bar: Any) -> None:
        """Write the judged questions that still fit ``n`` and their kind's quota."""
        for c, question in rows:
            if self.kept >= n or self.per_kind.get(c.kind, 0) >= quota[c.kind]:
                continue
            self.kept += 1
            self.per_kind[c.kind] = self.per_kind.get(c.kind, 0) + 1
            f.write(json.dumps(question_row(c, question, self.kept, meta), ensure_ascii=False) + "\n")
            bar.update(1)


def _publish(work: Path, out: Path, state_path: Path) -> None:
    """--overwrite: the new set (and its state) replaces the old one."""
    if state_path.exists():
        os.replace(state_path, _paths(out)[0])
    os.replace(work, out)


def _filters_after(out: Path, counts: dict[str, Any], max_overlap: float) -> Filters:
    """The filters, knowing the questions ``out`` already holds (near-duplicates of earlier runs' count too) and
    what earlier runs dropped."""
    filters = Filters(max_overlap=max_overlap)
    for line in out.read_text(encoding="utf-8").splitlines() if out.exists() else []:
        if line.strip():
            filters.keep(json.loads(line)["question"])
    filters.dropped.update(counts.get("dropped", {}))
    return filters


def _quotas(n: int, kinds: dict[str, float]) -> dict[str, int]:
    """Questions of each kind out of ``n``: the mix asked for, not the easiest kind's (the largest takes the rest)."""
    total_weight = sum(kinds.values())
    quota = {k: round(n * w / total_weight) for k, w in kinds.items()}
    quota[max(kinds, key=lambda k: kinds[k])] += n - sum(quota.values())
    return quota


def _work_files(out: Path, overwrite: bool) -> tuple[Path, Path]:
    """Where this run writes, and its state file. --overwrite writes a new set beside the old one and renames it
    over it once done: an interrupted or failed run leaves the old set as it was."""
    work = out.with_name(f".{out.name}.new") if overwrite else out
    state_path, _ = _paths(work)
    if overwrite:
        for p in (work, state_path):  # an earlier interrupted --overwrite's files: ours
            p.unlink(missing_ok=True)
    return work, state_path


def _next_batch(seq: Iterator[Any], per_kind: dict[str, int], quota: dict[str, int]) -> list[Any]:
    """Up to BATCH candidates whose kind still has room: a kind whose quota is full costs no LLM call."""
    batch = []
    for c in seq:
        if per_kind.get(c.kind, 0) < quota[c.kind]:
            batch.append(c)
        if len(batch) == BATCH:
            break
    return batch


def _judge_batch(
    client: LLMClient,
    batch: list[Candidate],
    titles: dict[str, str],
    filters: Filters,
    seed: int,
    check_answerable: bool,
) -> list[tuple[Candidate, str]]:
    replies = client.complete([prompt_for(c, titles[c.doc_id], seed) for c in batch])
    passed: list[tuple[Candidate, str]] = []
    for c, reply in zip(batch, replies, strict=True):
        question = parse_question(reply.text)
        reason = filters.reason_to_drop(c, question)
        if reason is not None:
            filters.drop(reason)
        else:
            assert question is not None
            passed.append((c, question))
            filters.keep(question)  # a later question of the same batch is compared with this one too
    if check_answerable:
        checked = [(c, q) for c, q in passed if c.kind != "unanswerable"]
        answers = client.complete([answerable_request(q, c.passage, seed) for c, q in checked])
        failed = set()
        for (c, _), a in zip(checked, answers, strict=True):
            reason = filters.check_answer(c, a.text)
            if reason is not None:
                filters.drop(reason)
                failed.add(id(c))
        passed = [(c, q) for c, q in passed if id(c) not in failed]
    return passed


def _report(out: Path, settings: Settings, counts: dict[str, Any], kept: int, seconds: float) -> dict[str, Any]:
    report = {
        "questions": kept,
        "out": str(out),
        "settings": settings.as_dict(),
        "kept_per_kind": counts.get("kept", {}),
        "dropped": counts.get("dropped", {}),
        "candidates": counts.get("candidates", 0),
        "seconds": round(seconds, 1),
    }
    _atomic_json(_paths(out)[1], report)
    return report


def report_table(report: dict[str, Any]) -> str:
    lines = [f"{report['questions']} questions from {report['candidates']} candidates in {report['seconds']} s"]
    lines += [f"  kept   {k:40} {v:5d}" for k, v in sorted(report["kept_per_kind"].items())]
    lines += [f"  dropped {k:39} {v:5d}" for k, v in sorted(report["dropped"].items())]
    return "\n".join(lines)


def _log(
    uri: str, experiment: str, storage: Path, corpus_path: Path, out: Path, settings: Settings, report: dict[str, Any]
) -> str:
    """An MLflow run of kind ``testset``: the parameters, the report, and the set as an evaluation dataset (the
    name and digest trials log for the same files)."""
    tracker = Tracker(uri)
    exp_id = ensure_experiment(uri, experiment, storage)
    run_id = tracker.start(exp_id, f"generate-questions-{out.stem}", tags={TAG_KIND: "testset"})
    try:
        tracker.params(run_id, {f"generation.{k}": v for k, v in settings.as_dict().items()})
        tracker.metrics(run_id, {"questions": float(report["questions"]), "candidates": float(report["candidates"])})
        tracker.json(run_id, report, "generation_report.json")
        dataset = load_dataset(corpus_path, out, out.parent.name)
        tracker.dataset_inputs(run_id, dataset, corpus_path, out)
        tracker.end(run_id)
    except BaseException as e:
        tracker.fail(run_id, f"{type(e).__name__}: {e}")
        raise
    return run_id
