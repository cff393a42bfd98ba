from __future__ import annotations

import pytest

from ragsweep.pipelines.chunking import CHUNKERS, _tokenizer, chunk_corpus, chunk_document
from ragsweep.pipelines.data import Document, load_dataset
from tests.conftest import SAMPLE


@pytest.mark.parametrize("chunker", CHUNKERS.names())
@pytest.mark.parametrize(("size", "overlap"), [(400, 0), (400, 100), (800, 100), (1200, 0), (60, 20)])
def test_offsets_reproduce_text_and_cover_document(size: int, overlap: int, chunker: str) -> None:
    ds = load_dataset(SAMPLE / "corpus.jsonl", SAMPLE / "questions.jsonl")
    docs = [*list(ds.corpus.values())[:6], Document("md", "", MARKDOWN)]
    chunks = chunk_corpus(docs, size, overlap, chunker)
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


MARKDOWN = """# Steam engines

A steam engine is a heat engine. It does mechanical work using steam as its working fluid!

## History

The first commercial engine was built in 1712. Is that early? Yes.
### Watt
Watt improved it in 1769 (a separate condenser).
"""


def test_sentence_chunks_hold_whole_sentences_and_overlap_by_sentences() -> None:
    doc = Document("d", "", "One is short. Two is a little longer! Three asks why? Four ends here.")
    ranges = chunk_document(doc, 40, 15, "sentence")
    texts = [doc.text[s:e] for s, e in ranges]
    assert texts == ["One is short. Two is a little longer!", "Three asks why? Four ends here."]
    overlapped = chunk_document(doc, 40, 25, "sentence")
    assert [doc.text[s:e] for s, e in overlapped][1].startswith("Two is")  # the last sentence, repeated


def test_markdown_chunks_never_span_a_heading() -> None:
    doc = Document("md", "", MARKDOWN)
    texts = [MARKDOWN[s:e] for s, e in chunk_document(doc, 400, 0, "markdown")]
    assert texts[0].startswith("# Steam engines") and not any("## History" in t[1:] for t in texts)
    assert [t.splitlines()[0] for t in texts] == ["# Steam engines", "## History", "### Watt"]
    assert chunk_document(doc, 400, 0, "chars") == [(0, len(MARKDOWN))]  # chars ignores headings


def test_token_chunks_fit_the_embedders_window() -> None:
    doc = Document("d", "", " ".join(f"antidisestablishment{i}" for i in range(400)))
    tok, max_len = _tokenizer("default")
    assert max_len == 256
    ranges = chunk_document(doc, 4000, 0, "token")
    assert len(ranges) > len(chunk_document(doc, 4000, 0, "chars"))
    assert all(len(tok.encode(doc.text[s:e], add_special_tokens=False).ids) <= max_len - 2 for s, e in ranges)


def test_rejects_bad_params() -> None:
    with pytest.raises(ValueError):
        chunk_document(Document("d", "", "text"), 100, 100)
