"""Clean text out of one file, by its kind: the extractors `ragsweep ingest` uses (registry ``EXTRACTORS``).

Contract: an extractor takes a path and returns ``Extracted`` (title, text) or raises ``Unreadable`` with a short
reason (encrypted PDF, broken file, binary content, undecodable text, nothing but markup). Nothing else escapes.
The libraries were chosen by benchmarks/ingest_extractors.py (speed and token precision/recall on
data/mixed_docs against the articles the files were made from): trafilatura for HTML (it drops navigation,
scripts, styles and boilerplate by content, not only by tag name), pypdfium2 for PDF (same text as pypdf,
3x faster), charset-normalizer for plain text in any encoding, markdown-it-py for Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragsweep.pipelines.registry import Registry


class Unreadable(Exception):
    """The file has no text ragsweep can use; the message says why (one line)."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str


MAX_CONTROL = 0.01  # share of control/replacement characters above which decoded bytes are not text


def _clean(text: str) -> str:
    """Normalise whitespace: no trailing spaces, at most one blank line between paragraphs."""
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def decode(data: bytes) -> str:
    """Bytes of a text file in any common encoding -> str; Unreadable for binary content or an unknown encoding."""
    from charset_normalizer import from_bytes

    if b"\x00" in data[:8192]:
        raise Unreadable("binary content (NUL bytes), not text")
    best = from_bytes(data).best()
    if best is None:
        raise Unreadable("undecodable: no text encoding fits its bytes")
    text = str(best)
    bad = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t\f"))
    if bad > MAX_CONTROL * max(1, len(text)):
        raise Unreadable(f"undecodable: {bad} control or replacement characters as {best.encoding}")
    return text


def _first_line_title(text: str, path: Path) -> str:
    first = text.strip().split("\n", 1)[0].strip()
    return first if 0 < len(first) <= 120 else path.stem.replace("_", " ")


def extract_text(path: Path) -> Extracted:
    text = _clean(decode(path.read_bytes()))
    return Extracted(_first_line_title(text, path), text)


def extract_markdown(path: Path) -> Extracted:
    """Markdown -> the text a reader sees: headings, paragraphs, list items, table cells and code, without markup."""
    from markdown_it import MarkdownIt

    source = decode(path.read_bytes())
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    blocks: list[str] = []
    title = ""
    for i, tok in enumerate(tokens):
        if tok.type == "inline":
            text = "".join(c.content for c in (tok.children or []) if c.type in ("text", "code_inline", "softbreak")
                           or c.type == "hardbreak") if tok.children else tok.content
            text = text.replace("\n", " ")
            if not title and i > 0 and tokens[i - 1].type == "heading_open":
                title = text
            blocks.append(text)
        elif tok.type in ("fence", "code_block"):
            blocks.append(tok.content.rstrip())
    text = _clean("\n\n".join(b for b in blocks if b.strip()))
    return Extracted(title or _first_line_title(text, path), text)


def extract_html(path: Path) -> Extracted:
    """The main content of a page (trafilatura): no scripts, styles, navigation, headers, footers or cookie text."""
    import lxml.html
    import trafilatura

    html = decode(path.read_bytes())
    meta = trafilatura.extract_metadata(html)
    # trafilatura falls back to any text it finds when a page has no main content (a page of navigation only
    # came out as "Home"): page furniture is removed first, by tag, so what is left is content or nothing.
    tree = lxml.html.fromstring(html) if html.strip() else None
    if tree is None:
        return Extracted(path.stem, "")
    for el in tree.xpath("//nav|//header|//footer|//aside|//script|//style|//noscript|//form|//template"):
        el.drop_tree()
    text = trafilatura.extract(lxml.html.tostring(tree, encoding="unicode"), include_comments=False,
                               include_tables=True, favor_recall=True) or ""
    title = (meta.title if meta is not None and meta.title else "") or _first_line_title(text, path)
    return Extracted(title, _clean(text))


def extract_pdf(path: Path) -> Extracted:
    """The text layer of every page (pypdfium2). Encrypted or broken files are Unreadable; a scan without a text
    layer comes out empty (and is skipped as empty by the caller): ragsweep does no OCR."""
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        reason = str(e).lower()
        if "password" in reason:
            raise Unreadable("encrypted PDF (a password is needed)") from None
        raise Unreadable(f"broken PDF ({e})") from None
    try:
        pages = [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
        title = (doc.get_metadata_dict().get("Title") or "").strip()
    finally:
        doc.close()
    text = _clean("\n\n".join(pages))
    return Extracted(title or _first_line_title(text, path), text)


EXTRACTORS: Registry[Callable[[Path], Extracted]] = Registry("file kind")
EXTRACTORS.add(".txt", "plain text in any common encoding (charset-normalizer)", extract_text)
EXTRACTORS.add(".md", "Markdown, rendered to its text (markdown-it-py); title: the first heading", extract_markdown)
EXTRACTORS.add(".markdown", "as .md", extract_markdown)
EXTRACTORS.add(".html", "the page's main content (trafilatura); title: <title>", extract_html)
EXTRACTORS.add(".htm", "as .html", extract_html)
EXTRACTORS.add(".pdf", "the text layer of every page (pypdfium2); no OCR", extract_pdf)
