"""Split documents into overlapping chunks that keep their character offsets.

Contract: for every chunk ``c`` of document ``d``, ``c.text == d.text[c.start:c.end]``. Offsets are what
make retrieval metrics chunking-invariant (a chunk is gold when its range overlaps an answer span).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ragsweep.pipelines.data import Document

# Where a chunk may end, best first: paragraph break, sentence end, any whitespace.
_BREAKS = ("\n\n", ". ", "? ", "! ", "\n", " ")


@dataclass(frozen=True)
class Chunk:
    id: int  # position in the index; stable for a given corpus and chunking
    doc_id: str
    start: int
    end: int
    text: str


def _cut_point(text: str, start: int, limit: int, min_end: int) -> int:
    """The best boundary in ``text[min_end:limit]`` (exclusive end of the chunk), else ``limit``."""
    if limit >= len(text):
        return len(text)
    for sep in _BREAKS:
        pos = text.rfind(sep, min_end, limit)
        if pos != -1:
            return pos + len(sep.rstrip()) if sep.strip() else pos
    return limit


def chunk_document(doc: Document, chunk_size: int, chunk_overlap: int) -> list[tuple[int, int]]:
    """Character ranges ``(start, end)`` of at most ``chunk_size`` chars, overlapping by about ``chunk_overlap``.

    Chunks end on a paragraph, sentence or word boundary when one lies in the last half of the window.
    """
    if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size:
        raise ValueError(f"need chunk_size > 0 and 0 <= chunk_overlap < chunk_size, got {chunk_size}, {chunk_overlap}")
    text = doc.text
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        while start < len(text) and text[start].isspace():
            start += 1
        if start >= len(text):
            break
        end = _cut_point(text, start, start + chunk_size, start + chunk_size // 2)
        ranges.append((start, end))
        if end >= len(text):
            break
        nxt = max(end - chunk_overlap, start + 1)
        # Start the overlap on a word boundary so no chunk begins mid-word.
        if chunk_overlap and nxt < end:
            space = text.find(" ", nxt, end)
            nxt = space + 1 if space != -1 else nxt
        start = nxt
    return ranges


def chunk_corpus(docs: Iterable[Document], chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for doc in docs:
        for start, end in chunk_document(doc, chunk_size, chunk_overlap):
            chunks.append(Chunk(len(chunks), doc.id, start, end, doc.text[start:end]))
    return chunks
