"""`ragsweep ingest`: a folder of mixed files -> corpus.jsonl + manifest; every bad file skipped with its reason,
never a crash; nothing half-written; a folder as dataset.corpus is parsed once per content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from ragsweep.pipelines.data import DatasetError, load_corpus
from ragsweep.pipelines.ingest import cached_corpus, content_key, ingest_folder, write_dataset
from ragsweep.search.cli import main
from ragsweep.search.config import load_config
from tests.conftest import REPO

SAMPLE = REPO / "data" / "mixed_docs" / "docs"
SOURCE = {
    json.loads(line)["title"]: json.loads(line)["text"]
    for line in (REPO / "data" / "xquad_en" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
}


def test_the_sample_folder_becomes_a_clean_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(SAMPLE), "--out", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "skipped web/oxygen_copy.html: duplicate of web/oxygen.html" in out
    docs = load_corpus(tmp_path / "ds" / "corpus.jsonl")  # the dataset loader accepts it
    assert len(docs) == 9
    titles = {d.title for d in docs.values()}
    assert {
        "Oxygen",
        "Packet switching",
        "Apollo program",
        "Nikola Tesla",
        "Prime number",
        "Jacksonville, Florida",
        "Geology",
        "Chloroplast",
    } <= titles
    html = docs["web/oxygen.html"].text
    for junk in ("tracking pixel", "ad slot", "About this site", "cookie", "font-family"):
        assert junk not in html  # scripts, styles, navigation, footer gone
    assert SOURCE["Oxygen"].split("\n\n")[0][:200] in html.replace("\n", " ")  # the article itself kept
    assert "Jacksonville is the largest city" in docs["jacksonville_latin1.txt"].text  # Latin-1 decoded
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["files_read"] == 8 and manifest["documents"] == 9 and manifest["skipped_files"] == 1
    assert manifest["characters"] == sum(len(d.text) for d in docs.values())


def _bad_folder(root: Path) -> Path:
    folder = root / "bad"
    folder.mkdir()
    good = SAMPLE / "apollo_program.pdf"
    writer = PdfWriter(clone_from=PdfReader(good))
    writer.encrypt("secret")
    with open(folder / "locked.pdf", "wb") as f:
        writer.write(f)
    (folder / "broken.pdf").write_bytes(good.read_bytes()[:400])
    (folder / "junk.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "empty.md").write_text("")
    (folder / "only_markup.html").write_text("<html><head><script>x()</script></head><body><nav>Home</nav></body>")
    (folder / "noise.txt").write_bytes(bytes(range(128, 256)) * 8)  # no encoding makes text of it
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (folder / "rows.jsonl").write_text(
        '{"id": "r1", "text": "A fine row of text."}\nnot json\n{"id": 5, "text": "x"}\n'
        '{"id": "r1", "text": "A fine row of text."}\n'
    )
    (folder / ".hidden.txt").write_text("never read")
    (folder / "ok.txt").write_text("A usable document about rivers and their deltas.")
    return folder


def test_bad_files_are_skipped_with_a_reason_each(tmp_path: Path) -> None:
    got = ingest_folder(_bad_folder(tmp_path))
    reasons = {s.path: s.reason for s in got.skipped}
    assert reasons["locked.pdf"] == "encrypted PDF (a password is needed)"
    assert reasons["broken.pdf"].startswith("broken PDF")
    assert reasons["junk.txt"] == "binary content (NUL bytes), not text"
    assert reasons["empty.md"].startswith("no text")
    assert reasons["only_markup.html"].startswith("no text")
    assert reasons["noise.txt"].startswith("undecodable")
    assert reasons["image.png"].startswith("unsupported kind .png")
    assert reasons["rows.jsonl:2"].startswith("invalid JSON")
    assert reasons["rows.jsonl:3"].startswith("not a corpus row")
    assert reasons["rows.jsonl:4"] == "duplicate of r1"  # the same text again: kept once
    assert ".hidden.txt" not in reasons
    assert sorted(d["id"] for d in got.docs) == ["ok.txt", "r1"]


def test_nothing_is_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ingested = ingest_folder(SAMPLE)
    real_dumps = json.dumps
    calls = {"n": 0}

    def failing_dumps(obj: object, **kw: object) -> str:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real_dumps(obj, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("ragsweep.pipelines.ingest.json.dumps", failing_dumps)
    with pytest.raises(OSError):
        write_dataset(ingested, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []  # no dataset folder, no temporary folder


def test_refusals_come_before_any_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "corpus.jsonl").write_text("{}\n")
    assert main(["ingest", str(SAMPLE), "--out", str(tmp_path / "taken")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "ds")]) == 2
    assert "not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ingest", str(empty), "--out", str(tmp_path / "ds")]) == 2
    assert "no usable documents" in capsys.readouterr().err and not (tmp_path / "ds").exists()


def test_a_folder_as_dataset_corpus_is_parsed_once_per_content(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE, docs)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": "q1",
                "question": "When was oxygen discovered?",
                "answers": ["1773"],
                "gold_doc_ids": ["web/oxygen.html"],
            }
        )
        + "\n"
    )
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(
        f"dataset: {{corpus: {docs}, questions: {questions}, holdout: 0}}\nstorage_dir: {tmp_path / 'runs'}\n"
    )
    cfg = load_config(cfg_path)
    first = cfg.dataset.corpus
    assert first.name == "corpus.jsonl" and first.parent.parent == tmp_path / "runs" / "ingest-cache"
    mtime = first.stat().st_mtime_ns
    assert load_config(cfg_path).dataset.corpus == first and first.stat().st_mtime_ns == mtime  # reused
    key = content_key(docs)
    (docs / "prime_number.txt").write_text("Primes are numbers with exactly two divisors, one and themselves.")
    assert content_key(docs) != key
    second = cached_corpus(docs, tmp_path / "runs" / "ingest-cache", say=lambda _: None)
    assert second != first and "exactly two divisors" in second.read_text()


def test_a_folder_with_no_usable_document_is_a_dataset_error(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DatasetError, match="no usable documents.*a.bin: unsupported kind"):
        cached_corpus(folder, tmp_path / "cache", say=lambda _: None)


def test_outputs_never_touch_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that is an input, lies inside one or holds one is refused (exit 2) before anything is read or
    written, even with --overwrite; the user's files stay as they were."""
    docs = tmp_path / "work" / "docs"
    shutil.copytree(SAMPLE, docs)
    thesis = tmp_path / "work" / "thesis.tex"
    thesis.write_text("years of work")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "d", "title": "t", "text": "x"}) + "\n")
    questions = tmp_path / "q.jsonl"
    questions.write_text("")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    cases = [
        (["ingest", str(docs), "--out", str(docs), "--overwrite"], "is the input folder"),
        (["ingest", str(docs), "--out", str(tmp_path / "work"), "--overwrite"], "holds the input folder"),
        (["ingest", str(docs), "--out", str(docs / "ds")], "lies inside the input folder"),
        (
            ["generate-questions", "--corpus", str(corpus), "--out", str(corpus), "--n", "2", "--overwrite"],
            "is the input --corpus",
        ),
        (
            ["review", "export", "--questions", str(questions), "--corpus", str(corpus), "--out", str(corpus)],
            "is the input --corpus",
        ),
        (
            [
                "review",
                "import",
                "--questions",
                str(questions),
                "--corpus",
                str(corpus),
                "--reviewed",
                str(questions),
                "--out",
                str(questions),
            ],
            "is the input --questions",
        ),
    ]
    before_corpus = corpus.read_bytes()
    for argv, why in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert why in err and "ragsweep never writes where it reads" in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert thesis.read_text() == "years of work" and corpus.read_bytes() == before_corpus


def test_overwrite_replaces_only_a_dataset_ingest_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["ingest", str(SAMPLE), "--out", str(mine), "--overwrite"]) == 2
    assert "not a dataset folder ragsweep ingest wrote" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
    ds = tmp_path / "ds"
    assert main(["ingest", str(SAMPLE), "--out", str(ds)]) == 0
    assert main(["ingest", str(SAMPLE), "--out", str(ds), "--overwrite"]) == 0  # its own: replaced
    assert (ds / "corpus.jsonl").is_file()


@pytest.mark.parametrize("second", ["b.jsonl", "same.jsonl"])
def test_an_id_twice_is_an_error_naming_both_places(tmp_path: Path, second: str) -> None:
    """Two texts with one id, in two files or in one, once dropped one document silently."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps({"id": "x", "text": "first text"}) + "\n")
    extra = json.dumps({"id": "x", "text": "second text"}) + "\n"
    if second == "same.jsonl":
        with open(tmp_path / "in" / "a.jsonl", "a") as f:
            f.write(extra)
        places = ("a.jsonl:1", "a.jsonl:2")
    else:
        (tmp_path / "in" / second).write_text(extra)
        places = ("a.jsonl:1", "b.jsonl:1")
    with pytest.raises(DatasetError, match=f"document id 'x' is used twice, by {places[0]} and {places[1]}"):
        ingest_folder(tmp_path / "in")
    (tmp_path / "in" / "guide.md").write_text("# Guide\n\nText.\n")  # a file's id is its path: a row may clash
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps({"id": "guide.md", "text": "other"}) + "\n")
    (tmp_path / "in" / second).unlink(missing_ok=True)
    with pytest.raises(DatasetError, match="'guide.md' is used twice, by a.jsonl:1 and guide.md"):
        ingest_folder(tmp_path / "in")


ENCODED = [
    ("utf-8-sig", "utf-8-sig"),
    ("utf-16", "utf-16"),
    ("utf-16-le", "utf-16-le"),
    ("utf-16-be", "utf-16-be"),
    ("utf-32", "utf-32"),
    ("cp1252", "cp1252"),
    ("latin-1", "cp1252"),
]


@pytest.mark.parametrize(("codec", "recorded"), ENCODED)
def test_text_in_any_encoding_is_read_and_recorded(tmp_path: Path, codec: str, recorded: str) -> None:
    """UTF-16 was skipped as binary, cp1252 garbled ("crêpes" -> "crępes"), a BOM cost a JSONL file its first row."""
    text = "Les crêpes du café sont très bonnes, naïve façade."
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "menu.txt").write_bytes((text + "\n").encode(codec))
    (tmp_path / "in" / "menu.md").write_bytes(f"# Menu\n\n{text} Deux.\n".encode(codec))
    rows = "".join(json.dumps({"id": f"r{i}", "text": f"{text} {i}"}, ensure_ascii=False) + "\n" for i in range(3))
    (tmp_path / "in" / "rows.jsonl").write_bytes(rows.encode(codec))
    got = ingest_folder(tmp_path / "in")
    assert not got.skipped
    texts = {d["id"]: d["text"] for d in got.docs}
    assert texts["menu.txt"] == text and texts["menu.md"] == f"Menu\n\n{text} Deux." and texts["r0"] == f"{text} 0"
    assert {r["encoding"] for r in got.read} == {recorded}
    write_dataset(got, tmp_path / "ds")
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert {r["encoding"] for r in manifest["read"]} == {recorded}


def test_an_earlier_output_inside_the_folder_is_not_read_back(tmp_path: Path) -> None:
    """An old --out inside the input (from before --out was checked) held a stale corpus.jsonl that came back as
    a source and made the edited file a "duplicate id"."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The first version.")
    write_dataset(ingest_folder(docs), tmp_path / "out")
    (tmp_path / "out").rename(docs / "out")
    (docs / "a.txt").write_text("The edited version.")
    got = ingest_folder(docs)
    assert [d["text"] for d in got.docs] == ["The edited version."]
    assert [(s.path, s.reason.split(" (")[0]) for s in got.skipped] == [
        ("out/", "a dataset folder ragsweep ingest wrote")
    ]
