"""Text as written: every word a reader sees in a source file reaches the corpus whole, never fused with the next.

Hard-wrapped Markdown once lost the space at every line break ("our\\ncommunity" -> "ourcommunity"). The oracle of
a Markdown file's visible words is an independent path: markdown-it's HTML rendering read back by lxml (what a
browser shows). The real documents are this project's own docs (hard-wrapped at 120 columns) and the bundled
mixed_docs; Hypothesis adds generated hard-wrapped Markdown, HTML and PDF (matplotlib writes the PDF). Examples
are bounded and derandomised for CI; ``RAGSWEEP_FUZZ_EXAMPLES`` raises the bound.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragsweep.pipelines.extract import extract_html, extract_markdown, extract_pdf
from tests.conftest import REPO
from tests.unit.test_fuzz_loaders import EXAMPLES as RAGSWEEP_EXAMPLES
from tests.unit.test_fuzz_loaders import FUZZ as FUZZ_LOADERS

EXAMPLES = max(10, RAGSWEEP_EXAMPLES // 4)
FUZZ = settings(FUZZ_LOADERS, max_examples=EXAMPLES)
WORD = re.compile(r"\w+")
REAL_MARKDOWN = sorted(
    p
    for folder in ("docs", "benchmarks", "data", ".")
    for p in (REPO / folder).glob("**/*.md" if folder != "." else "*.md")
    if ".venv" not in p.parts
)


def _visible_words(markdown: str) -> list[str]:
    """The words a browser shows for ``markdown``: its HTML rendering's text and image alt texts."""
    import lxml.html
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(markdown)
    if not html.strip():
        return []
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    for br in root.xpath("//br"):
        br.tail = "\n" + (br.tail or "")
    alts = " ".join(str(a) for a in root.xpath("//img/@alt"))
    return WORD.findall(str(root.text_content()) + " " + alts)


def _unfused(source_words: list[str], corpus_text: str) -> tuple[set[str], set[str]]:
    """(words of the source missing from the corpus, corpus words that are in no source: fused or invented)."""
    got = set(WORD.findall(corpus_text))
    return set(source_words) - got, got - set(source_words)


def test_the_real_markdown_is_hard_wrapped() -> None:
    wrapped = [p for p in REAL_MARKDOWN if re.search(r"[a-z,]\n[a-z]", p.read_text(encoding="utf-8"))]
    assert len(wrapped) >= 10  # the property below is tested on what it is about


@pytest.mark.parametrize("path", REAL_MARKDOWN, ids=lambda p: p.relative_to(REPO).as_posix())
def test_real_markdown_keeps_every_visible_word_unfused(path: Path) -> None:
    missing, fused = _unfused(_visible_words(path.read_text(encoding="utf-8")), extract_markdown(path).text)
    assert not missing and not fused, (sorted(missing)[:10], sorted(fused)[:10])


words = st.lists(st.text("abcdefghijklmnopqrstuvwxyzéß", min_size=1, max_size=9), min_size=1, max_size=40)


@st.composite
def wrapped_markdown(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Headings, paragraphs and list items with continuation lines, hard-wrapped at a drawn width."""
    blocks, all_words = [], []
    for _ in range(draw(st.integers(1, 5))):
        ws = draw(words)
        all_words += ws
        width = draw(st.integers(12, 60))
        kind = draw(st.sampled_from(["p", "h", "li"]))
        if kind == "h":
            blocks.append("## " + " ".join(ws))
        elif kind == "li":
            lines = textwrap.wrap(" ".join(ws), width)
            blocks.append("- " + "\n  ".join(lines))
        else:
            blocks.append("\n".join(textwrap.wrap(" ".join(ws), width)))
    return "\n\n".join(blocks) + "\n", all_words


@FUZZ
@given(wrapped_markdown())
def test_wrapped_markdown_keeps_its_words_in_order(
    tmp_path_factory: pytest.TempPathFactory, doc: tuple[str, list[str]]
) -> None:
    source, expected = doc
    path = tmp_path_factory.mktemp("md") / "doc.md"
    path.write_text(source, encoding="utf-8")
    assert WORD.findall(extract_markdown(path).text) == expected


FILLER = (
    "This paragraph is here so that the page has enough running text for a main-content extractor to keep "
    "it, as real articles do."
)


@settings(FUZZ, max_examples=max(5, EXAMPLES // 4))
@given(st.lists(words, min_size=1, max_size=3), st.integers(10, 50))
def test_wrapped_html_source_keeps_its_words(
    tmp_path_factory: pytest.TempPathFactory, paragraphs: list[list[str]], width: int
) -> None:
    body = "\n".join("<p>" + "\n    ".join(textwrap.wrap(" ".join(ws), width)) + "</p>" for ws in paragraphs)
    path = tmp_path_factory.mktemp("html") / "page.html"
    path.write_text(
        f"<html><head><title>T</title></head><body><article><h1>Title</h1>\n{body}\n<p>{FILLER}</p>"
        "</article></body></html>",
        encoding="utf-8",
    )
    text = extract_html(path).text
    expected = [w for ws in paragraphs for w in ws]
    missing, fused = _unfused(expected + WORD.findall("Title " + FILLER), text)
    assert not missing and not fused, (missing, fused, text)
    for ws in paragraphs:  # a wrapped paragraph comes out as one line
        assert " ".join(ws) in text.split("\n")


@settings(FUZZ, max_examples=max(3, EXAMPLES // 10))
@given(words, st.integers(20, 60))
def test_wrapped_pdf_lines_keep_their_words(
    tmp_path_factory: pytest.TempPathFactory, ws: list[str], width: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = [w.replace("ß", "s") for w in ws]  # the PDF's built-in font has every letter here but ß
    path = tmp_path_factory.mktemp("pdf") / "doc.pdf"
    fig = plt.figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.95, "\n".join(textwrap.wrap(" ".join(ws), width)), va="top", family="DejaVu Sans", size=10)
    fig.savefig(path)
    plt.close(fig)
    missing, fused = _unfused(ws, extract_pdf(path).text)
    assert not missing and not fused, (missing, fused)
