"""A folder of documents -> a corpus in ragsweep's layout (``corpus.jsonl``) and a manifest of what was read.

Contract:
- :func:`ingest_folder` reads ``folder`` recursively: every kind in ``extract.EXTRACTORS`` plus ``.jsonl`` files in
  the corpus layout (one ``{"id", "text", "title"?}`` per line). A document's id is its path relative to the
  folder (``guides/intro.md``); a JSONL row keeps its own id. Hidden files and folders are ignored.
- A file that cannot be used (unsupported kind, encrypted or broken PDF, binary junk, empty, undecodable, a bad
  JSONL row) is *skipped with a reason*, never raised; identical texts are kept once (the others are skipped as
  duplicates of the first, in path order). Two different texts with one id (in one file or two) are an error
  naming both places. Text files are decoded by :func:`text_decode.decode_text` (any common encoding; each
  document's ``encoding`` is in the manifest). A sub-folder ``ingest`` wrote earlier is skipped, never re-read.
- :func:`write_dataset` writes ``corpus.jsonl`` and ``manifest.json`` into a new folder at once (a temporary
  folder renamed into place): an error leaves nothing half-written.
- :func:`cached_corpus` is the same for ``dataset.corpus: FOLDER``: the corpus is parsed once per content
  (sha256 of every file's path and bytes, and the extractors' versions) and reused from ``cache_root``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ragsweep.pipelines.base.text_decode import NotText, decode_text, text_lines
from ragsweep.pipelines.data import DatasetError
from ragsweep.pipelines.extract import EXTRACTORS, Unreadable

MANIFEST = "manifest.json"
CORPUS = "corpus.jsonl"
LIBRARIES = ("trafilatura", "pypdfium2", "charset-normalizer", "markdown-it-py")


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class Ingested:
    """What :func:`ingest_folder` found: the documents (corpus rows) and a line for every file."""

    source: str
    docs: list[dict[str, str]] = field(default_factory=list)
    read: list[dict[str, Any]] = field(default_factory=list)  # {path (file[:line]), file, id, kind, chars}
    skipped: list[Skipped] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "files_read": len({r["file"] for r in self.read}),
            "documents": len(self.docs),
            "characters": sum(len(d["text"]) for d in self.docs),
            "skipped_files": len(self.skipped),
            "libraries": libraries(),
            "read": self.read,
            "skipped": [asdict(s) for s in self.skipped],
        }


def libraries() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _files(folder: Path, own: list[Path] | None = None) -> Iterator[Path]:
    """Every non-hidden file under ``folder`` in path order; a folder ``ragsweep ingest`` wrote (its manifest) is
    not walked into but appended to ``own``: an earlier output is never read back as a source."""
    for root, dirs, files in os.walk(folder):
        if own is not None and Path(root) != folder and _written_by_ingest(Path(root)):
            own.append(Path(root))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _jsonl_rows(path: Path, rel: str, out: Ingested) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
    """Rows of a corpus-layout JSONL file (any encoding) and its encoding; a bad row is skipped with its line
    number."""
    rows = []
    try:
        decoded = decode_text(path.read_bytes())
    except NotText as e:
        out.skipped.append(Skipped(rel, f"not a readable JSONL file: {e}"))
        return [], None
    for n, line in enumerate(text_lines(decoded.text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            out.skipped.append(Skipped(f"{rel}:{n}", f"invalid JSON ({e.msg})"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("text"), str):
            out.skipped.append(Skipped(f"{rel}:{n}", 'not a corpus row: needs string "id" and "text"'))
            continue
        rows.append((f"{rel}:{n}", {"id": row["id"], "title": str(row.get("title") or row["id"]), "text": row["text"]}))
    if not decoded.text.strip():
        out.skipped.append(Skipped(rel, "no text (an empty file)"))
    return rows, decoded.encoding


def ingest_folder(folder: Path, progress: Callable[[int, str], None] | None = None) -> Ingested:
    """Read every usable file under ``folder`` (see the module docstring); ``progress(files_done, path)``.
    Raises DatasetError naming both places when two documents share an id (with different texts)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    out = Ingested(str(folder.resolve()))
    seen = _Seen()
    own: list[Path] = []
    for i, path in enumerate(_files(folder, own), 1):
        rel = path.relative_to(folder).as_posix()
        if progress is not None:
            progress(i, rel)
        found = _read_file(path, rel, out)
        if found is None:
            continue
        candidates, encoding = found
        for where, doc in candidates:
            if seen.admit(folder, where, doc, out):
                out.docs.append(doc)
                out.read.append(
                    {
                        "path": where,
                        "file": rel,
                        "id": doc["id"],
                        "kind": path.suffix.lower(),
                        "chars": len(doc["text"]),
                        "encoding": encoding,
                    }
                )
    for p in own:
        out.skipped.append(
            Skipped(
                p.relative_to(folder).as_posix() + "/",
                "a dataset folder ragsweep ingest wrote (an earlier output, not a source): not read",
            )
        )
    return out


def _read_file(path: Path, rel: str, out: Ingested) -> tuple[list[tuple[str, dict[str, str]]], str | None] | None:
    """The candidate documents of one file (where, row) and its encoding; None when the file is skipped (the
    reason appended to ``out.skipped``)."""
    kind = path.suffix.lower()
    try:
        if kind == ".jsonl":
            return _jsonl_rows(path, rel, out)
        if kind in EXTRACTORS:
            extracted = EXTRACTORS.get(kind)(path)
            return [(rel, {"id": rel, "title": extracted.title, "text": extracted.text})], extracted.encoding
        known = ", ".join([*EXTRACTORS.names(), ".jsonl"])
        out.skipped.append(Skipped(rel, f"unsupported kind {kind or '(no extension)'} (read: {known})"))
    except Unreadable as e:
        out.skipped.append(Skipped(rel, str(e)))
    except OSError as e:
        out.skipped.append(Skipped(rel, f"cannot read ({e.strerror or e})"))
    except Exception as e:  # noqa: BLE001 - a parser's failure on a junk file is a skip, never a crash
        out.skipped.append(Skipped(rel, f"could not be parsed ({type(e).__name__}: {str(e)[:200]})"))
    return None


@dataclass
class _Seen:
    """Texts and ids read so far: an empty text or a repeated text is skipped, an id used twice is an error."""

    texts: dict[str, str] = field(default_factory=dict)  # sha256 of the text -> the id that has it
    ids: dict[str, str] = field(default_factory=dict)  # id -> where it was read (file[:line])

    def admit(self, folder: Path, where: str, doc: dict[str, str], out: Ingested) -> bool:
        if not doc["text"].strip():
            out.skipped.append(Skipped(where, "no text (empty, or a scanned PDF without a text layer)"))
            return False
        digest = hashlib.sha256(doc["text"].encode("utf-8")).hexdigest()
        if digest in self.texts:
            out.skipped.append(Skipped(where, f"duplicate of {self.texts[digest]}"))
            return False
        if doc["id"] in self.ids:
            raise DatasetError(
                f"{folder}: document id {doc['id']!r} is used twice, by {self.ids[doc['id']]} and "
                f"{where}, with different texts; ids must be unique across the corpus: rename one"
            )
        self.texts[digest] = doc["id"]
        self.ids[doc["id"]] = where
        return True


def write_dataset(ingested: Ingested, out: Path, *, overwrite: bool = False) -> Path:
    """``corpus.jsonl`` + ``manifest.json`` in ``out``, written in a temporary folder beside it and renamed into
    place. Refuses an ``out`` that exists and is not empty unless ``overwrite`` (then it is replaced whole)."""
    out = Path(out)
    check_out(out, overwrite)
    if not ingested.docs:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in ingested.skipped[:5]) or "the folder has no files"
        raise DatasetError(f"{ingested.source}: no usable documents ({reasons})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with open(tmp / CORPUS, "w", encoding="utf-8") as f:
            for doc in ingested.docs:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        (tmp / MANIFEST).write_text(
            json.dumps(ingested.manifest(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out``. An old ``out`` (checked by :func:`check_out` to be ingest's own)
    is renamed aside first and removed only once ``new`` is in place; if the second rename fails it is put back."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old / out.name, out)
        old.rmdir()
        raise
    shutil.rmtree(old)


def check_out(out: Path, overwrite: bool = False) -> None:
    """Before any work: ``out`` is new or an empty folder, or (with ``overwrite``) a dataset folder ragsweep wrote
    (its ``manifest.json`` names ingest's libraries): ``--overwrite`` never replaces anything else. Its parent must
    be writable."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise DatasetError(f"{out}: exists and is not empty (choose another --out, or pass --overwrite)")
        if not _written_by_ingest(out):
            raise DatasetError(
                f"{out}: exists and is not a dataset folder ragsweep ingest wrote (no {MANIFEST} of "
                "its own); --overwrite replaces only those: choose another --out"
            )
    parent = next(p for p in (out.parent, *out.parent.parents) if p.exists())
    if not os.access(parent, os.W_OK):
        raise DatasetError(f"{out}: cannot write in {parent}")


def _written_by_ingest(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"source", "libraries", "read", "skipped"} <= set(manifest)


def content_key(folder: Path) -> str:
    """sha256 of every file's relative path and bytes (hidden ones excluded) and the extractors' versions."""
    h = hashlib.sha256(json.dumps(libraries(), sort_keys=True).encode())
    for path in _files(folder):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as e:
            h.update(f"unreadable {e.errno}".encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def cached_corpus(folder: Path, cache_root: Path, say: Callable[[str], None] = print) -> Path:
    """The ``corpus.jsonl`` of ``folder``, parsed once per content into ``cache_root/<key>/``."""
    key = content_key(folder)
    target = cache_root / key
    if (target / CORPUS).is_file():
        say(f"corpus: {folder} -> {target / CORPUS} (parsed before; cache key {key})")
        return target / CORPUS
    t0 = time.perf_counter()
    ingested = ingest_folder(folder)
    write_dataset(ingested, target, overwrite=True)
    m = ingested.manifest()
    say(
        f"corpus: {folder} parsed in {time.perf_counter() - t0:.1f} s: {m['documents']} documents, "
        f"{m['characters']:,} characters, {m['skipped_files']} skipped (see {target / MANIFEST})"
    )
    return target / CORPUS
