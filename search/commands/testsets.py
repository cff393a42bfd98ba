"""From documents to a test set, and its judges: ``ingest``, ``generate-questions``, ``review``, ``judges
calibrate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ragsweep.search.commands.common import (
    Command,
    add_config,
    load,
    number,
)


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="the folder to read")
    p.add_argument("--out", type=Path, required=True, help="the dataset folder to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.base.files import check_apart
    from ragsweep.pipelines.base.progress import Progress
    from ragsweep.pipelines.data import DatasetError
    from ragsweep.pipelines.ingest import MANIFEST, check_out, ingest_folder, write_dataset

    check_apart(args.out, "--out", {"folder": args.dir}, DatasetError)
    check_out(args.out, args.overwrite)
    files = sum(1 for p in args.dir.rglob("*") if p.is_file()) if args.dir.is_dir() else 0
    with Progress("ingest", files, unit="files", every_s=10) as bar:
        ingested = ingest_folder(args.dir, progress=lambda _i, _path: bar.update(1))
    for s in ingested.skipped:
        print(f"skipped {s.path}: {s.reason}")
    out = write_dataset(ingested, args.out, overwrite=args.overwrite)
    m = ingested.manifest()
    print(
        f"{out}: {m['documents']} documents from {m['files_read']} files, {m['characters']:,} characters; "
        f"{m['skipped_files']} skipped (reasons in {out / MANIFEST})"
    )
    return 0


def _generate_questions_args(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--corpus", type=Path, required=True, help="corpus.jsonl (e.g. written by ragsweep ingest)")
    p.add_argument("--out", type=Path, required=True, help="questions.jsonl to write (resumed if it exists)")
    p.add_argument("--n", type=number(int, 1), default=200, help="questions to generate (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the candidate spans and the model (default 0)")
    p.add_argument(
        "--kinds",
        default="factoid=0.6,multi_sentence=0.2,unanswerable=0.2",
        help="kinds and their weights (default factoid=0.6,multi_sentence=0.2,unanswerable=0.2)",
    )
    p.add_argument(
        "--max-overlap",
        type=number(float, 0, 1),
        default=0.5,
        help="drop a question containing more than this fraction of its answer's words, 0 to 1 (default 0.5)",
    )
    p.add_argument(
        "--check-answerable",
        action="store_true",
        help="ask the model to answer each question from "
        "its passage and drop those it gets wrong (for a capable model; off by default on CPU)",
    )
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming OUT")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store); 'none' = no logging")


def _cmd_generate(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.base.files import check_apart
    from ragsweep.pipelines.data import DatasetError
    from ragsweep.search.questions.generate import generate, parse_kinds, report_table
    from ragsweep.search.tracking.runs import default_tracking_uri

    check_apart(args.out, "--out", {"--corpus": args.corpus, "--config": args.config}, DatasetError)
    for suffix in (".state.json", ".report.json"):  # generate's own files beside --out
        check_apart(args.out.with_name(args.out.name + suffix), "--out", {"--corpus": args.corpus}, DatasetError)
    cfg = load(args)
    kinds = parse_kinds(args.kinds)
    uri = args.tracking_uri or cfg.mlflow.tracking_uri or default_tracking_uri(cfg.storage_dir)
    report = generate(
        args.corpus,
        args.out,
        args.n,
        cfg.llm.generator,
        seed=args.seed,
        kinds=kinds,
        max_overlap=args.max_overlap,
        check_answerable=args.check_answerable,
        overwrite=args.overwrite,
        log_dir=cfg.storage_dir / "logs" / "generate-questions",
        tracking_uri=None if uri == "none" else uri,
        experiment=f"{cfg.mlflow.experiment}-testsets",
        storage_dir=cfg.storage_dir,
    )
    print(report_table(report))
    where = f"; MLflow run {report['mlflow_run']}" if report.get("mlflow_run") else ""
    print(f"{args.out}: {report['questions']} questions (report: {args.out}.report.json{where})")
    return 0


def _review_args(p: argparse.ArgumentParser) -> None:
    rsub = p.add_subparsers(dest="review_command", required=True)
    rx = rsub.add_parser("export", help="write the set as CSV (to edit) or HTML (to read)")
    rx.add_argument("--questions", type=Path, required=True)
    rx.add_argument("--corpus", type=Path, required=True)
    rx.add_argument("--out", type=Path, required=True, help="review.csv or review.html")
    ri = rsub.add_parser("import", help="apply a reviewed CSV (decision: accept, reject, edit) to the set")
    ri.add_argument("--questions", type=Path, required=True)
    ri.add_argument("--corpus", type=Path, required=True)
    ri.add_argument("--reviewed", type=Path, required=True, help="the edited review.csv")
    ri.add_argument("--out", type=Path, required=True, help="the reviewed questions.jsonl to write")


def _cmd_review(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.base.files import check_apart
    from ragsweep.pipelines.data import DatasetError
    from ragsweep.search.questions.review import apply_review, export

    inputs = {"--questions": args.questions, "--corpus": args.corpus, "--reviewed": getattr(args, "reviewed", None)}
    check_apart(args.out, "--out", inputs, DatasetError)
    if args.review_command == "export":
        n = export(args.questions, args.corpus, args.out)
        print(
            f"{args.out}: {n} questions to review"
            + (" (fill in decision: accept, reject or edit)" if args.out.suffix.lower() == ".csv" else "")
        )
        return 0
    counts = apply_review(args.questions, args.corpus, args.reviewed, args.out)
    print(
        f"{args.out}: {sum(v for k, v in counts.items() if k != 'reject')} questions kept; "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0


def _judges_args(p: argparse.ArgumentParser) -> None:
    jsub = p.add_subparsers(dest="judges_command", required=True)
    cal = jsub.add_parser(
        "calibrate",
        help="measure how well the judges agree with known-good and known-bad answers",
        description="Score gold answers and deliberately wrong ones (another question's answer or passage), and "
        "optionally human-labelled answers, with every configured judge; print and log to MLflow per "
        "judge: accuracy, Spearman, self-consistency over repeats, calls and tokens per answer.",
    )
    add_config(cal)
    cal.add_argument(
        "--dataset", type=Path, help="folder with corpus.jsonl and questions.jsonl (default: the config's dataset)"
    )
    cal.add_argument(
        "--labels",
        type=Path,
        help='JSON lines {"id": question id, "answer": "...", "label": 0..1[, "contexts": [...]]}',
    )
    cal.add_argument("--questions", type=number(int, 1), default=16, help="questions to sample (default 16)")
    cal.add_argument("--repeats", type=number(int, 1), default=2, help="times each verdict is asked (default 2)")
    cal.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    cal.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")


def _cmd_judges(args: argparse.Namespace) -> int:
    from ragsweep.search.calibration import run_calibration

    cfg = load(args)
    _, table = run_calibration(
        cfg,
        dataset_dir=args.dataset,
        labels=args.labels,
        questions=args.questions,
        repeats=args.repeats,
        seed=args.seed,
        tracking_uri=args.tracking_uri,
    )
    print(table)
    return 0


COMMANDS = [
    Command(
        name="ingest",
        help="a folder of documents -> a dataset folder with corpus.jsonl",
        description=(
            "Read DIR recursively (.txt, .md, .html, .pdf, and .jsonl in the corpus layout), extract clean text, drop "
            "duplicates, and write OUT/corpus.jsonl and OUT/manifest.json (files read, files skipped with the reason, "
            "characters). A file that cannot be read is skipped with a line saying why."
        ),
        arguments=_ingest_args,
        run=_cmd_ingest,
    ),
    Command(
        name="generate-questions",
        help="synthetic questions with exact answer spans from a corpus",
        description=(
            "Span first: pick an answer span (a number, date or name) in a passage, ask the config's generator server "
            "for a question that the span answers, and keep the span's offsets, so answer_spans are exact by "
            "construction. Filters (counted in the report): a malformed reply, an answer guessable from the question, "
            "near-duplicates, and with --check-answerable a model check that the passage answers it. Kinds: factoid, "
            "multi_sentence, unanswerable. Seeded; run the same command again to resume. The set is logged to MLflow as"
            " an evaluation dataset."
        ),
        arguments=_generate_questions_args,
        run=_cmd_generate,
    ),
    Command(
        name="review",
        help="export a question set for a person to review, and read the review back",
        arguments=_review_args,
        run=_cmd_review,
    ),
    Command(
        name="judges",
        help="work with the LLM judges (judges calibrate)",
        description="Work with the LLM judges of the config's judges section.",
        arguments=_judges_args,
        run=_cmd_judges,
    ),
]
