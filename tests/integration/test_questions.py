"""Your documents in, a test set out, on the real CPU model: `ragsweep ingest` -> `generate-questions` ->
`review` -> `search`, to a registered champion; and generation that is seeded, resumable, exact in its spans and
logged to MLflow as an evaluation dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.data import load_dataset
from ragsweep.search.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.integration
SAMPLE = REPO / "data" / "mixed_docs" / "docs"
KINDS = "factoid=2,unanswerable=1"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chain") / "dataset"
    assert main(["ingest", str(SAMPLE), "--out", str(out)]) == 0
    return out


def _config(root: Path, corpus: Path, questions: Path) -> Path:
    path = root / "exp.yaml"
    path.write_text(f"""\
dataset: {{corpus: {corpus}, questions: {questions}, holdout: 0}}
space: {{chunk_size: [300, 600], chunk_overlap: [0], retriever: [bm25], top_k: [2], prompt: [concise]}}
pipeline: {{max_tokens: 12}}
judges: {{suite: []}}
search: {{num_samples: 2, questions_per_trial: 3, scheduler: fifo, finalists: 1, sampler: grid, oracle: false}}
mlflow: {{experiment: chain, model_name: chain-model}}
storage_dir: {root / "runs"}
""")
    return path


def _generate(cfg: Path, corpus: Path, out: Path, n: int, *extra: str) -> int:
    return main(
        [
            "generate-questions",
            "--config",
            str(cfg),
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--n",
            str(n),
            "--kinds",
            KINDS,
            *extra,
        ]
    )


def test_folder_to_champion(ingested: Path, tmp_path: Path) -> None:
    """The README's chain in one pass (one generation, to keep CI short): generation exact, logged and resumable;
    a review that rejects and edits; a search on the reviewed set that registers a champion."""
    corpus = ingested / "corpus.jsonl"
    out = tmp_path / "generated.jsonl"
    human = REPO / "data" / "xquad_en" / "questions.jsonl"  # a config's dataset files must exist: the set is made
    cfg = _config(tmp_path, corpus, human)  # first, then the config points at it (below)
    assert _generate(cfg, corpus, out, 4) == 0
    ds = load_dataset(corpus, out)  # ragsweep's own loader checks every span against the document
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(ds.questions) == 4
    for row in rows:
        if row["answerable"]:
            (span,) = row["answer_spans"]
            assert ds.corpus[span["doc_id"]].text[span["start"] : span["end"]] == row["answers"][0]
    assert {r["generated"]["kind"] for r in rows} <= {"factoid", "unanswerable"}
    report = json.loads((tmp_path / "generated.jsonl.report.json").read_text())
    assert report["questions"] == 4 and sum(report["kept_per_kind"].values()) == 4
    assert report["candidates"] >= 4
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = client.get_run(report["mlflow_run"])
    assert run.data.params["generation.seed"] == "0" and run.data.tags["ragsweep.kind"] == "testset"
    (inp,) = [
        i
        for i in run.inputs.dataset_inputs
        if {t.key: t.value for t in i.tags}.get("mlflow.data.context") == "evaluation"
    ]
    assert inp.dataset.digest == ds.digest[:32]  # the name and digest a trial on this set logs

    # Resume: drop the last question and rewind the state to just after the one before; the same command
    # continues from there and writes the same question again (seeded candidates, temperature 0).
    state_path = tmp_path / "generated.jsonl.state.json"
    state = json.loads(state_path.read_text())
    state["next_candidate"] = rows[2]["generated"]["candidate"] + 1
    state["counts"]["kept"][rows[3]["generated"]["kind"]] -= 1
    state_path.write_text(json.dumps(state))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert _generate(cfg, corpus, out, 4) == 0
    assert [json.loads(line)["question"] for line in out.read_text().splitlines()] == [r["question"] for r in rows]
    assert _generate(cfg, corpus, out, 4, "--seed", "1") == 2  # other settings: refused before a server starts

    # a person reviews: rejects the first question, edits the second's wording, accepts the rest
    review = tmp_path / "review.csv"
    assert main(["review", "export", "--questions", str(out), "--corpus", str(corpus), "--out", str(review)]) == 0
    assert (
        main(
            [
                "review",
                "export",
                "--questions",
                str(out),
                "--corpus",
                str(corpus),
                "--out",
                str(tmp_path / "review.html"),
            ]
        )
        == 0
    )
    with open(review, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    table[0]["decision"] = "reject"
    table[1]["decision"], table[1]["edited_question"] = "edit", "Which detail does this passage give?"
    for row in table[2:]:
        row["decision"] = "accept"
    with open(review, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    reviewed = tmp_path / "reviewed.jsonl"
    assert (
        main(
            [
                "review",
                "import",
                "--questions",
                str(out),
                "--corpus",
                str(corpus),
                "--reviewed",
                str(review),
                "--out",
                str(reviewed),
            ]
        )
        == 0
    )
    kept = [json.loads(line) for line in reviewed.read_text().splitlines()]
    assert len(kept) == 3 and kept[0]["question"] == "Which detail does this passage give?"
    assert all(r["reviewed"] in ("accept", "edit") for r in kept)

    cfg.write_text(cfg.read_text().replace(str(human), str(reviewed)))
    assert main(["search", "--config", str(cfg)]) == 0
    assert str(client.get_model_version_by_alias("chain-model", "champion").version) == "1"
