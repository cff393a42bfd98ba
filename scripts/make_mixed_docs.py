"""Writes data/mixed_docs/docs/: nine articles of the bundled xquad_en corpus (Wikipedia text, CC BY-SA 4.0) as the
kinds of files users have (Markdown, HTML pages with navigation and scripts, plain text in two encodings, a PDF,
a JSONL corpus, one exact duplicate), for `ragsweep ingest` and the README's folder-to-champion chain.

    .venv/bin/pip install fpdf2 && .venv/bin/python scripts/make_mixed_docs.py      # regenerate (deterministic)
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "data" / "mixed_docs"
OUT = ROOT / "docs"  # the folder to ingest; README.md (attribution) stays outside it
DOCS = {
    json.loads(line)["id"]: json.loads(line)
    for line in (REPO / "data" / "xquad_en" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
}


def paragraphs(doc_id: str) -> list[str]:
    return DOCS[doc_id]["text"].split("\n\n")


def markdown(doc_id: str, path: str) -> None:
    d = DOCS[doc_id]
    body = "\n\n".join(paragraphs(doc_id))
    (OUT / path).write_text(f"# {d['title']}\n\n{body}\n", encoding="utf-8")


def html(doc_id: str, path: str) -> None:
    d = DOCS[doc_id]
    paras = "\n".join(f"    <p>{p}</p>" for p in paragraphs(doc_id))
    (OUT / path).write_text(
        f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{d["title"]}</title>
<style>body {{ font-family: serif; }} nav a {{ margin: 1em; }}</style>
<script>window.analytics = {{track: function () {{ return "tracking pixel"; }}}};</script>
</head><body>
<nav><a href="/">Home</a> <a href="/about">About this site</a> <a href="/contact">Contact us</a></nav>
<header><p>Site header: Encyclopedia mirror</p></header>
<main><article>
    <h1>{d["title"]}</h1>
{paras}
</article></main>
<footer><p>Copyright notice and cookie banner. Accept all cookies?</p></footer>
<script>document.write("ad slot");</script>
</body></html>
""",
        encoding="utf-8",
    )


def text(doc_id: str, path: str, encoding: str) -> None:
    d = DOCS[doc_id]
    (OUT / path).write_bytes(f"{d['title']}\n\n{d['text']}\n".encode(encoding))


def pdf(doc_id: str, path: str) -> None:
    from fpdf import FPDF

    d = DOCS[doc_id]
    doc = FPDF()
    doc.set_title(d["title"])
    doc.set_creation_date(__import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC))
    doc.add_page()
    doc.set_font("Helvetica", size=16)
    doc.multi_cell(0, 10, d["title"], new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", size=11)
    for p in paragraphs(doc_id):
        doc.multi_cell(0, 6, p.encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN", new_y="NEXT")
        doc.ln(3)
    doc.output(str(OUT / path))


def main() -> None:
    (OUT / "guides").mkdir(parents=True, exist_ok=True)
    (OUT / "web").mkdir(exist_ok=True)
    markdown("xquad-03", "guides/nikola_tesla.md")
    markdown("xquad-11", "guides/steam_engine.md")
    html("xquad-12", "web/oxygen.html")
    html("xquad-19", "web/packet_switching.html")
    text("xquad-40", "prime_number.txt", "utf-8")
    text("xquad-32", "jacksonville_latin1.txt", "latin-1")
    pdf("xquad-14", "apollo_program.pdf")
    with open(OUT / "more.jsonl", "w", encoding="utf-8") as f:
        for doc_id in ("xquad-21", "xquad-39"):
            d = DOCS[doc_id]
            f.write(json.dumps({"id": d["id"], "title": d["title"], "text": d["text"]}) + "\n")
    (OUT / "web" / "oxygen_copy.html").write_bytes((OUT / "web" / "oxygen.html").read_bytes())  # a duplicate
    (ROOT / "README.md").write_text(
        """# mixed_docs (sample folder for `ragsweep ingest`)

`docs/` holds nine Wikipedia articles in ten files from the bundled xquad_en corpus (`../xquad_en`), written as
the kinds of files a team has: Markdown (`guides/`), HTML pages with navigation, styles and scripts (`web/`, one of them
twice), plain text in UTF-8 and Latin-1, a PDF, and a JSONL file in ragsweep's corpus layout.
`scripts/make_mixed_docs.py` writes them.

    ragsweep ingest data/mixed_docs/docs --out my-dataset

License: CC BY-SA 4.0, as the source (`../xquad_en/LICENSE.txt`). The text is Wikipedia's, via SQuAD v1.1 and
XQuAD (Artetxe, Ruder & Yogatama, ACL 2020; Rajpurkar et al., EMNLP 2016). Nobody on this project wrote it.
""",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
