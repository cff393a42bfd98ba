"""Split documents into overlapping chunks that keep their character offsets.

Contract: for every chunk ``c`` of document ``d``, ``c.text == d.text[c.start:c.end]``, ``c`` has at most
``chunk_size`` characters, and every non-space character of ``d`` lies in some chunk, whichever chunker
(:data:`CHUNKERS`) cut it. Offsets are what make retrieval metrics chunking-invariant (a chunk is gold when its
range overlaps an answer span).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.base.registry import Registry
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


def _cut_point(text: str, hi: int, limit: int, min_end: int) -> int:
    """The best boundary in ``text[min_end:limit]`` (exclusive end of the chunk), else ``limit``; ``hi`` when
    ``limit`` reaches it (the end of the text or section being cut)."""
    if limit >= hi:
        return hi
    for sep in _BREAKS:
        pos = text.rfind(sep, min_end, limit)
        if pos != -1:
            return pos + len(sep.rstrip()) if sep.strip() else pos
    return limit


def _char_ranges(
    text: str, lo: int, hi: int, chunk_size: int, chunk_overlap: int, token_end: Callable[[int], int] | None = None
) -> list[tuple[int, int]]:
    """The character chunker over ``text[lo:hi]``; ``token_end(start)`` caps a chunk's end (token-aware)."""
    ranges: list[tuple[int, int]] = []
    start = lo
    while start < hi:
        while start < hi and text[start].isspace():
            start += 1
        if start >= hi:
            break
        limit = min(start + chunk_size, token_end(start) if token_end else hi)
        end = _cut_point(text, hi, limit, start + (limit - start) // 2)
        ranges.append((start, end))
        if end >= hi:
            break
        nxt = max(end - chunk_overlap, start + 1)
        # Start the overlap on a word boundary so no chunk begins mid-word.
        if chunk_overlap and nxt < end:
            space = text.find(" ", nxt, end)
            nxt = space + 1 if space != -1 else nxt
        start = nxt
    return ranges


def _check(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size:
        raise ValueError(f"need chunk_size > 0 and 0 <= chunk_overlap < chunk_size, got {chunk_size}, {chunk_overlap}")


# A chunker's target: (document text, chunk_size, chunk_overlap, embedder spec) -> character ranges.
CHUNKERS: Registry[Callable[[str, int, int, str], list[tuple[int, int]]]] = Registry("chunker")


@CHUNKERS.register(
    "chars",
    "up to chunk_size characters, ending on a paragraph, sentence or word boundary when "
    "one lies in the last half (default)",
)
def _chars(text: str, chunk_size: int, chunk_overlap: int, embedder: str) -> list[tuple[int, int]]:
    return _char_ranges(text, 0, len(text), chunk_size, chunk_overlap)


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n\s*\n|\n")


def sentence_spans(text: str, lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """Sentences of ``text[lo:hi]`` as ranges without surrounding whitespace (a line break also ends one)."""
    hi = len(text) if hi is None else hi
    spans, start = [], lo
    for m in _SENTENCE_END.finditer(text, lo, hi):
        end = m.end() if m.group().strip() else m.start()
        spans.append((start, end))
        start = m.end()
    spans.append((start, hi))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def _pack(text: str, units: list[tuple[int, int]], chunk_size: int, chunk_overlap: int) -> list[tuple[int, int]]:
    """Whole units (sentences) packed into chunks of at most ``chunk_size`` characters; the next chunk starts at
    the earliest unit of the last ``chunk_overlap`` characters; a unit longer than a chunk is cut by characters."""
    ranges: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        start = units[i][0]
        if units[i][1] - start > chunk_size:
            ranges.extend(_char_ranges(text, start, units[i][1], chunk_size, chunk_overlap))
            i += 1
            continue
        j = i
        while j + 1 < len(units) and units[j + 1][1] - start <= chunk_size:
            j += 1
        end = units[j][1]
        ranges.append((start, end))
        if j == len(units) - 1:
            break
        nxt = j + 1
        while chunk_overlap and nxt - 1 > i and end - units[nxt - 1][0] <= chunk_overlap:
            nxt -= 1
        i = nxt
    return ranges


@CHUNKERS.register(
    "sentence",
    "whole sentences packed up to chunk_size characters (a longer sentence is cut by "
    "characters); the overlap is whole sentences",
)
def _sentence(text: str, chunk_size: int, chunk_overlap: int, embedder: str) -> list[tuple[int, int]]:
    return _pack(text, sentence_spans(text), chunk_size, chunk_overlap)


_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.MULTILINE)


@CHUNKERS.register(
    "markdown",
    "Markdown sections: a chunk never spans a heading; each section is cut by the "
    "character chunker (a document without headings is one section)",
)
def _markdown(text: str, chunk_size: int, chunk_overlap: int, embedder: str) -> list[tuple[int, int]]:
    bounds = [m.start() for m in _HEADING.finditer(text) if m.start() > 0]
    out: list[tuple[int, int]] = []
    for lo, hi in zip([0, *bounds], [*bounds, len(text)], strict=True):
        out.extend(_char_ranges(text, lo, hi, chunk_size, chunk_overlap))
    return out


@functools.lru_cache(maxsize=4)
def _tokenizer(embedder: str) -> tuple[Any, int]:
    """The embedder's fast tokenizer and its max sequence length (the bundled model's when it has none)."""
    import json

    from tokenizers import Tokenizer

    from ragsweep.pipelines.embedders.local import DEFAULT_EMBEDDER, resolve_embedder_path

    folder = resolve_embedder_path(DEFAULT_EMBEDDER)
    try:
        own = resolve_embedder_path(embedder.split("@")[0])
        if (own / "tokenizer.json").is_file():
            folder = own
    except (BadInput, OSError):
        pass  # an endpoint embedder: its tokenizer is not here
    config = folder / "sentence_bert_config.json"
    max_len = int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.is_file() else 256
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()  # a model's tokenizer.json may truncate (MiniLM's at 128): here every token is counted
    return tok, max_len


@CHUNKERS.register(
    "token",
    "the character chunker, capped at the embedder's max sequence length in its own "
    "tokens, so no chunk is cut short when it is embedded",
)
def _token(text: str, chunk_size: int, chunk_overlap: int, embedder: str) -> list[tuple[int, int]]:
    tok, max_len = _tokenizer(embedder)
    ends = [end for _, end in tok.encode(text, add_special_tokens=False).offsets]
    room = max_len - 2  # the [CLS] and [SEP] the model adds

    def token_end(start: int) -> int:
        last = bisect.bisect_left(ends, start + 1) + room - 1  # the room-th token ending after start
        return len(text) if last >= len(ends) else max(ends[last], start + 1)

    return _char_ranges(text, 0, len(text), chunk_size, chunk_overlap, token_end)


def chunk_document(
    doc: Document, chunk_size: int, chunk_overlap: int, chunker: str = "chars", embedder: str = "default"
) -> list[tuple[int, int]]:
    """Character ranges ``(start, end)`` of at most ``chunk_size`` chars, overlapping by about ``chunk_overlap``,
    cut by ``chunker`` (:data:`CHUNKERS`; ``token`` reads ``embedder``'s tokenizer)."""
    _check(chunk_size, chunk_overlap)
    return CHUNKERS.get(chunker)(doc.text, chunk_size, chunk_overlap, embedder)


def chunk_corpus(
    docs: Iterable[Document], chunk_size: int, chunk_overlap: int, chunker: str = "chars", embedder: str = "default"
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for doc in docs:
        for start, end in chunk_document(doc, chunk_size, chunk_overlap, chunker, embedder):
            chunks.append(Chunk(len(chunks), doc.id, start, end, doc.text[start:end]))
    return chunks
