from __future__ import annotations

import pytest

from ragsweep.pipelines.chunking import chunk_corpus, chunk_document
from ragsweep.pipelines.data import Document, load_dataset
from tests.conftest import SAMPLE


@pytest.mark.parametrize(("size", "overlap"), [(400, 0), (400, 100), (800, 100), (1200, 0), (60, 20)])
def test_offsets_reproduce_text_and_cover_document(size: int, overlap: int) -> None:
    ds = load_dataset(SAMPLE / "corpus.jsonl", SAMPLE / "questions.jsonl")
    docs = list(ds.corpus.values())[:6]
    chunks = chunk_corpus(docs, size, overlap)
    by_doc = {d.id: d for d in docs}
    for i, c in enumerate(chunks):
        assert c.id == i
        assert c.text == by_doc[c.doc_id].text[c.start : c.end]
        assert 0 < c.end - c.start <= size
    for d in docs:  # every non-space character is inside some chunk
        covered = set()
        for c in chunks:
            if c.doc_id == d.id:
                covered.update(range(c.start, c.end))
        assert all(i in covered for i, ch in enumerate(d.text) if not ch.isspace())


def test_prefers_sentence_boundaries() -> None:
    doc = Document("d", "", "First sentence here. Second sentence is a bit longer. Third.")
    ranges = chunk_document(doc, 36, 0)
    assert doc.text[ranges[0][0] : ranges[0][1]] == "First sentence here."


def test_overlap_repeats_text() -> None:
    doc = Document("d", "", " ".join(f"w{i}" for i in range(200)))
    ranges = chunk_document(doc, 100, 30)
    assert all(b[0] < a[1] for a, b in zip(ranges, ranges[1:], strict=False))


def test_rejects_bad_params() -> None:
    with pytest.raises(ValueError):
        chunk_document(Document("d", "", "text"), 100, 100)
