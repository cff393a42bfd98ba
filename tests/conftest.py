"""Shared test set-up: offline, no telemetry, no Ray token auth; small dataset fixtures."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "xquad_en"
CLI = [sys.executable, "-m", "ragsweep.search.cli"]  # the installed `ragsweep` command, run by this interpreter


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Two documents, three questions (one unanswerable); spans checked against the text."""
    docs = [
        {"id": "d1", "title": "Cats", "text": "Cats sleep a lot. The oldest cat lived to 38 years.\n\nCats purr."},
        {"id": "d2", "title": "Dogs", "text": "Dogs bark. The tallest dog was 111 cm tall."},
    ]
    qs = [
        {"id": "q1", "question": "How old was the oldest cat?", "answers": ["38 years"], "answerable": True,
         "gold_doc_ids": ["d1"], "answer_spans": [{"doc_id": "d1", "start": 42, "end": 50, "text": "38 years"}]},
        {"id": "q2", "question": "How tall was the tallest dog?", "answers": ["111 cm"], "answerable": True,
         "gold_doc_ids": ["d2"]},
        {"id": "q3", "question": "Do fish sing?", "answers": [], "answerable": False, "gold_doc_ids": [],
         "extra_key": "ignored"},
    ]
    return write_jsonl(tmp_path / "corpus.jsonl", docs), write_jsonl(tmp_path / "questions.jsonl", qs)
