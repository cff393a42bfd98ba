"""Which library extracts text from HTML and PDF for `ragsweep ingest`: speed and quality on data/mixed_docs.

Quality: token precision and recall of the extracted text against the article it was made from (xquad_en's
text): precision falls when navigation, scripts or footers leak in, recall when article text is lost.
Speed: milliseconds per file, median of 20 runs after one warm-up, in this process.

    .venv/bin/python benchmarks/ingest_extractors.py        # needs trafilatura, selectolax, pypdf, pypdfium2
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "data" / "mixed_docs" / "docs"
SOURCE = {
    json.loads(line)["title"]: json.loads(line)["text"]
    for line in (REPO / "data" / "xquad_en" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
}
CASES = {
    "web/oxygen.html": "Oxygen",
    "web/packet_switching.html": "Packet switching",
    "oxygen, div soup.html": "Oxygen",
    "apollo_program.pdf": "Apollo program",
}


def div_soup(tmp: Path) -> Path:
    """oxygen.html as many real pages are written: the menu, header and footer in plain <div>s, no semantic tags
    (a by-tag stripper keeps them; content detection should not)."""
    text = (DOCS / "web" / "oxygen.html").read_text(encoding="utf-8")
    for tag in ("nav", "header", "footer", "main", "article"):
        text = text.replace(f"<{tag}>", f'<div class="{tag}-box">').replace(f"</{tag}>", "</div>")
    path = tmp / "oxygen, div soup.html"
    path.write_text(text, encoding="utf-8")
    return path


def tokens(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def precision_recall(got: str, want: str) -> tuple[float, float]:
    g, w = tokens(got), tokens(want)
    common = sum((g & w).values())
    return common / max(1, sum(g.values())), common / max(1, sum(w.values()))


def html_trafilatura(path: Path) -> str:
    import trafilatura

    return trafilatura.extract(path.read_text(encoding="utf-8"), include_comments=False) or ""


def html_selectolax(path: Path) -> str:
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    tree = HTMLParser(path.read_text(encoding="utf-8"))
    tree.strip_tags(["script", "style", "nav", "header", "footer", "noscript", "aside", "form"])
    body = tree.body
    return body.text(separator="\n") if body is not None else ""


def html_all_text(path: Path) -> str:  # the floor: every text node, nothing removed
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    return HTMLParser(path.read_text(encoding="utf-8")).text(separator="\n")


def pdf_pypdf(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def pdf_pypdfium2(path: Path) -> str:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(path)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


def ragsweep_extract(path: Path) -> str:  # what `ragsweep ingest` runs (pipelines/extract.py)
    from ragsweep.pipelines.extract import EXTRACTORS as CHOSEN

    return CHOSEN.get(path.suffix)(path).text


EXTRACTORS: dict[str, list[tuple[str, Callable[[Path], str]]]] = {
    ".html": [
        ("ragsweep (furniture cut, then trafilatura)", ragsweep_extract),
        ("trafilatura", html_trafilatura),
        ("selectolax (tags stripped)", html_selectolax),
        ("all text (no cleaning)", html_all_text),
    ],
    ".pdf": [("ragsweep (pypdfium2)", ragsweep_extract), ("pypdf", pdf_pypdf), ("pypdfium2", pdf_pypdfium2)],
}


def main() -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    soup = div_soup(tmp)
    print(f"{'file':28} {'extractor':42} {'ms/file':>8} {'precision':>9} {'recall':>7}")
    for rel, title in CASES.items():
        path = soup if rel == soup.name else DOCS / rel
        for name, fn in EXTRACTORS[path.suffix]:
            fn(path)
            times = []
            for _ in range(20):
                t = time.perf_counter()
                text = fn(path)
                times.append(time.perf_counter() - t)
            p, r = precision_recall(text, SOURCE[title])
            print(f"{rel:28} {name:42} {statistics.median(times) * 1000:8.2f} {p:9.3f} {r:7.3f}")


if __name__ == "__main__":
    main()
