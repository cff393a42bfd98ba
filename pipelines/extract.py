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
from typing import Any

from ragsweep.pipelines.base.registry import Registry
from ragsweep.pipelines.base.text_decode import Decoded, NotText, decode_text


class Unreadable(Exception):
    """The file has no text ragsweep can use; the message says why (one line)."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    encoding: str | None = None  # how the file's bytes were decoded (None: a PDF, whose text layer is Unicode)


def _clean(text: str) -> str:
    """Normalise whitespace: no trailing spaces, at most one blank line between paragraphs."""
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def decode(data: bytes) -> Decoded:
    """Bytes of a text file in any common encoding (:func:`text_decode.decode_text`), else Unreadable."""
    try:
        return decode_text(data)
    except NotText as e:
        raise Unreadable(str(e)) from None


def _first_line_title(text: str, path: Path) -> str:
    first = text.strip().split("\n", 1)[0].strip()
    return first if 0 < len(first) <= 120 else path.stem.replace("_", " ")


def extract_text(path: Path) -> Extracted:
    decoded = decode(path.read_bytes())
    text = _clean(decoded.text)
    return Extracted(_first_line_title(text, path), text, decoded.encoding)


def extract_markdown(path: Path) -> Extracted:
    """Markdown -> the text a reader sees (markdown-it-py's CommonMark parse, tables on), by this rule:

    - a soft line break (a hard-wrapped line) is a space, a hard break a newline: words never fuse;
    - every heading, paragraph and list item is a block of its own (a blank line between blocks), a table row is a
      line with its cells joined by `` | ``;
    - code (fenced, indented and inline) is kept as written: questions about a project's docs ask about it;
    - an image is its alt text; raw HTML is its text, without the tags; link targets and comments are dropped.
    """
    from markdown_it import MarkdownIt

    decoded = decode(path.read_bytes())
    tokens = MarkdownIt("commonmark").enable("table").parse(decoded.text)
    blocks: list[str] = []
    row: list[str] | None = None
    title = ""
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and row is not None:
            blocks.append(" | ".join(row))
            row = None
        elif tok.type == "inline":
            text = _inline_text(tok.children or [])
            if row is not None:
                row.append(text.replace("\n", " "))
                continue
            if not title and i > 0 and tokens[i - 1].type == "heading_open":
                title = text
            blocks.append(text)
        elif tok.type in ("fence", "code_block"):
            blocks.append(tok.content.rstrip())
        elif tok.type == "html_block":
            blocks.append(_html_text(tok.content))
    text = _clean("\n\n".join(b for b in blocks if b.strip()))
    return Extracted(title or _first_line_title(text, path), text, decoded.encoding)


def _inline_text(children: list[Any]) -> str:
    parts = []
    for c in children:
        if c.type in ("text", "code_inline", "image"):  # an image's content is its alt text
            parts.append(c.content)
        elif c.type == "softbreak":
            parts.append(" ")
        elif c.type == "hardbreak" or (c.type == "html_inline" and re.match(r"<br\b", c.content, re.I)):
            parts.append("\n")
    return "".join(parts)


def _html_text(fragment: str) -> str:
    """The text of raw HTML in Markdown (a ``<details>`` block, a centred paragraph), tags and comments removed."""
    import lxml.html

    if not re.sub(r"<!--.*?-->", "", fragment, flags=re.S).strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except Exception:  # noqa: BLE001 - a stray closing tag is not content: its text is what is left without tags
        return re.sub(r"<[^>]*>", " ", fragment)
    for comment in root.xpath("//comment()"):
        comment.drop_tree()
    for br in root.xpath("//br"):
        br.tail = "\n" + (br.tail or "")
    return str(root.text_content())


def extract_html(path: Path) -> Extracted:
    """The main content of a page (trafilatura): no scripts, styles, navigation, headers, footers or cookie text."""
    import lxml.html
    import trafilatura

    decoded = decode(path.read_bytes())
    html = decoded.text
    meta = trafilatura.extract_metadata(html)
    # trafilatura falls back to any text it finds when a page has no main content (a page of navigation only
    # came out as "Home"): page furniture is removed first, by tag, so what is left is content or nothing.
    tree = lxml.html.fromstring(html) if html.strip() else None
    if tree is None:
        return Extracted(path.stem, "")
    for el in tree.xpath("//nav|//header|//footer|//aside|//script|//style|//noscript|//form|//template"):
        el.drop_tree()
    _unwrap(tree)
    text = (
        trafilatura.extract(
            lxml.html.tostring(tree, encoding="unicode"), include_comments=False, include_tables=True, favor_recall=True
        )
        or ""
    )
    title = (meta.title if meta is not None and meta.title else "") or _first_line_title(text, path)
    return Extracted(title, _clean(text), decoded.encoding)


def _unwrap(tree: Any) -> None:
    """A line break in HTML source is a space on the page: hard-wrapped source lines are joined here (outside
    ``<pre>``), so no extractor can keep them as line breaks inside a paragraph (or fuse the words around them)."""
    for el in tree.iter():
        if not isinstance(el.tag, str) or el.tag == "pre" or any(a.tag == "pre" for a in el.iterancestors()):
            continue
        if el.text:
            el.text = re.sub(r"\s+", " ", el.text)
        if el.tail and el.getparent() is not None and el.getparent().tag != "pre":
            el.tail = re.sub(r"\s+", " ", el.tail)


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
