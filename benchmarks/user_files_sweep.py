"""The user's-files sweep: each case of "nothing a user owns is lost or garbled", run as a user would.

Every case builds its inputs in a fresh temporary folder, runs one ``ragsweep`` command in a subprocess, and
checks what a user would check afterwards (are my files still there, is the text right, does the message name
what I set). It prints one row per case: exit code, the first line of the message, and ``ok`` or ``BAD`` with
what was wrong. ``--pythonpath DIR`` runs another checkout (a folder holding a ``ragsweep`` package whose
``search``/``pipelines``/``judges`` point at it), so before and after come from one run on one machine:

    python benchmarks/user_files_sweep.py                       # this checkout
    python benchmarks/user_files_sweep.py --pythonpath /tmp/old  # another one

No LLM server is started: a case that needs one points at a closed port (the command must refuse or stop
before it would call it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "xquad_en"
WRAPPED_MD = """# Our pledge

We as members, contributors, and leaders pledge to make participation in our
community a harassment-free experience for everyone, regardless of age, body
size, visible or invisible disability, ethnicity, sex characteristics, gender
identity and expression, level of experience, education, socio-economic status.

- The KubeRay
  operator installs the custom resources
  and watches them.
"""


@dataclass
class Outcome:
    code: int
    message: str
    bad: str  # "" = ok, else what a user would find wrong


@dataclass
class Case:
    name: str
    run: Callable[[Path, Callable[..., subprocess.CompletedProcess[str]]], Outcome]


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The command's own message (its last ``ragsweep <command>:`` line on stderr), else its last output line."""
    said = [ln for ln in proc.stderr.splitlines() if ln.startswith("ragsweep ")]
    rest = (proc.stderr + proc.stdout).strip().splitlines()
    return (said or rest or [""])[-1][:160]


def _config(tmp: Path, external: bool = True, **extra: object) -> Path:
    """A config on the bundled sample; ``external``: its LLM endpoint is a closed port (nothing may call it),
    else the bundled llama.cpp model (validate starts no server)."""
    llm = (
        {"generator": {"engine": "external", "model": "x", "base_url": "http://127.0.0.1:9/v1"}}
        if external
        else {"generator": {"engine": "llama.cpp", "model": "default"}}
    )
    cfg = {
        "dataset": {
            "corpus": str(SAMPLE / "corpus.jsonl"),
            "questions": str(SAMPLE / "questions.jsonl"),
            **extra.pop("dataset", {}),
        },  # type: ignore[dict-item]
        "llm": llm,
        "storage_dir": str(tmp / "runs"),
        **extra,
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _outcome(proc: subprocess.CompletedProcess[str], bad: str) -> Outcome:
    return Outcome(proc.returncode, _first_line(proc), bad)


def _docs(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("Alpha text about crepes.\n")
    (folder / "b.md").write_text("# Beta\n\nBeta text.\n")


def ingest_into_itself(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    _docs(tmp / "docs")
    p = rs("ingest", tmp / "docs", "--out", tmp / "docs", "--overwrite")
    lost = [n for n in ("a.txt", "b.md") if not (tmp / "docs" / n).exists()]
    return _outcome(p, f"input deleted: {lost}" if lost else ("" if p.returncode == 2 else "not refused"))


def ingest_into_parent(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    _docs(tmp / "work" / "docs")
    (tmp / "work" / "thesis.tex").write_text("years of work")
    p = rs("ingest", tmp / "work" / "docs", "--out", tmp / "work", "--overwrite")
    gone = not (tmp / "work" / "thesis.tex").exists()
    return _outcome(p, "thesis.tex deleted" if gone else ("" if p.returncode == 2 else "not refused"))


def ingest_into_child(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    _docs(tmp / "docs")
    p = rs("ingest", tmp / "docs", "--out", tmp / "docs" / "out")
    return _outcome(p, "" if p.returncode == 2 and not (tmp / "docs" / "out").exists() else "wrote inside input")


def questions_over_corpus(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    corpus = tmp / "corpus.jsonl"
    corpus.write_bytes((SAMPLE / "corpus.jsonl").read_bytes())
    p = rs(
        "generate-questions",
        "--config",
        _config(tmp),
        "--corpus",
        corpus,
        "--out",
        corpus,
        "--overwrite",
        "--tracking-uri",
        "none",
        "--n",
        "2",
    )
    kept = corpus.exists() and corpus.read_bytes() == (SAMPLE / "corpus.jsonl").read_bytes()
    return _outcome(p, "" if kept and p.returncode == 2 else ("corpus deleted" if not kept else "not refused"))


def _ingest_one(
    tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]], name: str, data: bytes
) -> tuple[subprocess.CompletedProcess[str], str]:
    (tmp / "in").mkdir()
    (tmp / "in" / name).write_bytes(data)
    p = rs("ingest", tmp / "in", "--out", tmp / "out")
    rows = (
        [json.loads(x) for x in (tmp / "out" / "corpus.jsonl").read_text().splitlines()]
        if (tmp / "out" / "corpus.jsonl").exists()
        else []
    )
    return p, " ".join(r["text"] for r in rows)


def markdown_wrapped(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p, text = _ingest_one(tmp, rs, "pledge.md", WRAPPED_MD.encode())
    fused = [w for w in ("ourcommunity", "bodysize", "genderidentity", "KubeRayoperator") if w in text]
    return _outcome(p, f"fused: {', '.join(fused)}" if fused else ("" if text else "no text"))


def utf16_text(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p, text = _ingest_one(tmp, rs, "notes.txt", "Crème brûlée and naïve café notes.\n".encode("utf-16"))
    return _outcome(p, "" if "Crème brûlée" in text else "skipped or garbled")


def cp1252_text(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p, text = _ingest_one(tmp, rs, "menu.txt", "Les crêpes du café sont très bonnes.\n".encode("cp1252"))
    return _outcome(p, "" if "crêpes" in text and "très" in text else f"garbled: {text[:40]!r}")


def jsonl_bom(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    rows = "".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in range(3))
    p, text = _ingest_one(tmp, rs, "docs.jsonl", b"\xef\xbb\xbf" + rows.encode())
    return _outcome(p, "" if "document 0" in text else "first row lost")


def ids_across_files(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    (tmp / "in").mkdir()
    (tmp / "in" / "a.jsonl").write_text(json.dumps({"id": "x", "text": "first text"}) + "\n")
    (tmp / "in" / "b.jsonl").write_text(json.dumps({"id": "x", "text": "second text"}) + "\n")
    p = rs("ingest", tmp / "in", "--out", tmp / "out")
    named = "a.jsonl" in p.stderr and "b.jsonl" in p.stderr
    return _outcome(p, "" if p.returncode == 2 and named else "a document silently dropped")


def _review_set(tmp: Path) -> tuple[Path, Path]:
    corpus, questions = tmp / "corpus.jsonl", tmp / "questions.jsonl"
    corpus.write_text(json.dumps({"id": "d1", "text": "Paris is the capital of France."}) + "\n")
    qs = [
        {
            "id": f"q{i}",
            "question": f"What is the capital {i}?",
            "answers": ["Paris"],
            "answerable": True,
            "gold_doc_ids": ["d1"],
            "answer_spans": [{"doc_id": "d1", "start": 0, "end": 5}],
        }
        for i in (1, 2)
    ]
    questions.write_text("".join(json.dumps(q) + "\n" for q in qs))
    return corpus, questions


def _review_import(
    tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]], csv_bytes: bytes
) -> subprocess.CompletedProcess[str]:
    corpus, questions = _review_set(tmp)
    (tmp / "review.csv").write_bytes(csv_bytes)
    return rs(
        "review",
        "import",
        "--questions",
        questions,
        "--corpus",
        corpus,
        "--reviewed",
        tmp / "review.csv",
        "--out",
        tmp / "reviewed.jsonl",
    )


def review_cp1252(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = _review_import(
        tmp, rs, "id,decision,edited_question\nq1,edit,Où est la capitale?\nq2,accept,\n".encode("cp1252")
    )
    text = (tmp / "reviewed.jsonl").read_text() if (tmp / "reviewed.jsonl").exists() else ""
    return _outcome(p, "" if p.returncode == 0 and "Où est" in text else "refused or garbled")


def review_semicolon(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = _review_import(tmp, rs, b"id;decision\nq1;reject\nq2;accept\n")
    text = (tmp / "reviewed.jsonl").read_text() if (tmp / "reviewed.jsonl").exists() else ""
    return _outcome(p, "" if p.returncode == 0 and '"q1"' not in text and '"q2"' in text else "not read")


def review_conflict(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = _review_import(tmp, rs, b"id,decision\nq1,accept\nq2,accept\nq1,reject\n")
    both = ":2" in p.stderr and ":4" in p.stderr
    return _outcome(p, "" if p.returncode == 2 and both else "the last line silently won")


def review_no_question(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    corpus, questions = _review_set(tmp)
    questions.write_text(json.dumps({"id": "q1", "answers": ["Paris"], "gold_doc_ids": ["d1"]}) + "\n")
    p = rs("review", "export", "--questions", questions, "--corpus", corpus, "--out", tmp / "review.csv")
    return _outcome(p, "" if p.returncode == 2 and "question" in p.stderr else "raw error")


def max_overlap(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = rs(
        "generate-questions",
        "--config",
        _config(tmp),
        "--corpus",
        SAMPLE / "corpus.jsonl",
        "--out",
        tmp / "q.jsonl",
        "--max-overlap",
        "5",
        "--tracking-uri",
        "none",
        "--n",
        "2",
    )
    return _outcome(p, "" if p.returncode == 2 and "--max-overlap" in p.stderr else "not range-checked")


def holdout_unset_qpt(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    cfg = _config(tmp, False, dataset={"holdout": 0.999}, search={"questions_per_trial": None})
    p = rs("validate", "--config", cfg)
    return _outcome(p, "" if p.returncode == 2 and "dataset.holdout" in p.stderr else "accepted or mislabelled")


def holdout_with_qpt(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = rs("validate", "--config", _config(tmp, False, dataset={"holdout": 0.999}, search={"questions_per_trial": 8}))
    return _outcome(p, "" if p.returncode == 2 and "dataset.holdout" in p.stderr else "mislabelled")


def ask_empty(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = rs("ask", "", "--config", _config(tmp))
    return _outcome(p, "" if p.returncode == 2 and "is empty" in p.stderr else "not refused as empty")


def tracking_env(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    p = rs("search", "--config", _config(tmp), env={"MLFLOW_TRACKING_URI": "foo://x"})
    return _outcome(p, "" if p.returncode == 2 and "MLFLOW_TRACKING_URI" in p.stderr else "blames a flag")


def empty_config(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    (tmp / "empty.yaml").write_text("# nothing yet\n")
    p = rs("validate", "--config", tmp / "empty.yaml")
    return _outcome(p, "" if p.returncode == 2 and "is empty" in p.stderr else "says NoneType")


def leaves_folders(tmp: Path, rs: Callable[..., subprocess.CompletedProcess[str]]) -> Outcome:
    corpus, questions = _review_set(tmp)
    p = rs("review", "export", "--questions", questions, "--corpus", corpus, "--out", tmp / "newdir" / "sub" / "r.txt")
    return _outcome(p, "" if not (tmp / "newdir").exists() else "left newdir/sub behind")


CASES = [
    Case(f.__name__, f)
    for f in (
        ingest_into_itself,
        ingest_into_parent,
        ingest_into_child,
        questions_over_corpus,
        markdown_wrapped,
        utf16_text,
        cp1252_text,
        jsonl_bom,
        ids_across_files,
        review_cp1252,
        review_semicolon,
        review_conflict,
        review_no_question,
        max_overlap,
        holdout_unset_qpt,
        holdout_with_qpt,
        ask_empty,
        tracking_env,
        empty_config,
        leaves_folders,
    )
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pythonpath", help="run the ragsweep package found here instead of the installed one")
    ap.add_argument("--only", nargs="*", help="case names")
    args = ap.parse_args()
    base_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled"}
    base_env.pop("MLFLOW_TRACKING_URI", None)
    if args.pythonpath:
        base_env["PYTHONPATH"] = args.pythonpath
    bad = 0
    print("| case | exit | message | verdict |\n|---|---|---|---|")
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)

            def rs(
                *argv: object, env: dict[str, str] | None = None, tmp: Path = tmp
            ) -> subprocess.CompletedProcess[str]:
                code = "import sys; from ragsweep.search.cli import main; sys.exit(main(sys.argv[1:]))"
                return subprocess.run(
                    [sys.executable, "-c", code, *map(str, argv)],
                    cwd=tmp,
                    text=True,
                    capture_output=True,
                    env={**base_env, **(env or {})},
                    timeout=600,
                )

            out = case.run(tmp, rs)
        bad += bool(out.bad)
        msg = out.message.replace(d, "<tmp>").replace("|", "/")
        print(f"| {case.name} | {out.code} | {msg} | {'BAD: ' + out.bad if out.bad else 'ok'} |", flush=True)
    print(f"\n{bad} bad of {len(CASES) if not args.only else len(args.only)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
