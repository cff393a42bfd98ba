"""Bytes a user gave -> text, whatever encoding their editor or spreadsheet saved it in: the one decoder that
ingest, the JSONL/CSV/YAML loaders and review use.

Contract: :func:`decode_text` returns ``Decoded(text, encoding)`` or raises :class:`NotText` with one short
reason. The rule, in order:

1. A byte-order mark decides (UTF-32 LE/BE, UTF-8, UTF-16 LE/BE); the mark is not part of the text.
2. UTF-16/32 without a mark is recognised by its NUL bytes in every second (fourth) position.
3. Other NUL bytes: binary content, not text.
4. Valid UTF-8 is UTF-8 (ASCII included).
5. Bytes that are UTF-8 apart from a few broken sequences are *broken UTF-8*, not another encoding: NotText names
   the line and byte (reading them as cp1252 would garble every accented letter of the file).
6. Otherwise a legacy single- or multi-byte encoding, detected by charset-normalizer. Short texts fit several
   code pages equally well (cp1250 and cp1252 both decode "crêpes"); ties go to the more coherent language, then
   to the most common Western code pages (cp1252, latin-1, iso-8859-15), then to charset-normalizer's order.
7. Decoded text with more than 1% control or replacement characters is not text.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass


class NotText(Exception):
    """The bytes are not text in any encoding ragsweep recognises; the message says why (one line)."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # Python codec name, as recorded in manifests ("utf-8", "utf-16", "cp1252"...)


BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)
TIE_ORDER = ("cp1252", "latin_1", "iso8859_15")  # the commonest legacy files: Windows "ANSI" in the West
MAX_CONTROL = 0.01  # share of control/replacement characters above which decoded bytes are not text
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def decode_text(raw: bytes) -> Decoded:
    """``raw`` as text (see the module docstring for the rule), else :class:`NotText`."""
    for bom, codec, name in BOMS:
        if raw.startswith(bom):
            return _checked(_strict(raw[len(bom) :], codec, name), name)
    if b"\x00" in raw:  # (NUL is valid UTF-8, so UTF-16 of ASCII text would pass as UTF-8 with NULs)
        wide = _wide_unicode(raw)
        if wide is None:
            raise NotText("binary content (NUL bytes), not text")
        return _checked(_strict(raw, wide, wide), wide)
    try:
        return _checked(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as e:
        utf8_error = e
    if _UTF8_MULTIBYTE.search(raw):
        line = raw.count(b"\n", 0, utf8_error.start) + 1
        col = utf8_error.start - (raw.rfind(b"\n", 0, utf8_error.start) + 1)
        raise NotText(
            f"broken UTF-8 at line {line}, byte {col} of the line ({utf8_error.reason}); the rest of the "
            "file is UTF-8: fix or re-save that line"
        )
    return _legacy(raw)


def _strict(raw: bytes, codec: str, name: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as e:
        raise NotText(f"starts as {name} but byte {e.start} is not valid {name} ({e.reason})") from None


def _wide_unicode(raw: bytes) -> str | None:
    """UTF-16/32 without a byte-order mark, by where its NUL bytes fall (Latin text has a NUL per character)."""
    sample = raw[:4096]
    if len(sample) < 4 or len(sample) % 2:
        return None
    n = len(sample)
    if len(sample) % 4 == 0:
        quads = [sample[i : i + 4] for i in range(0, n, 4)]
        if sum(q[1:] == b"\0\0\0" for q in quads) > 0.6 * len(quads):
            return "utf-32-le"
        if sum(q[:3] == b"\0\0\0" for q in quads) > 0.6 * len(quads):
            return "utf-32-be"
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if odd > 0.4 * n / 2 and even == 0:
        return "utf-16-le"
    if even > 0.4 * n / 2 and odd == 0:
        return "utf-16-be"
    return None


def _legacy(raw: bytes) -> Decoded:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw))
    if not matches:
        raise NotText("undecodable: no text encoding fits its bytes")
    least = min(m.chaos for m in matches)
    tied = [m for m in matches if m.chaos == least]
    best_coherence = max(m.coherence for m in tied)
    tied = [m for m in tied if m.coherence == best_coherence]
    pick = next((m for name in TIE_ORDER for m in tied if m.encoding == name), tied[0])
    return _checked(raw.decode(pick.encoding), pick.encoding)


def _checked(text: str, encoding: str) -> Decoded:
    bad = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t\f"))
    if bad > MAX_CONTROL * max(1, len(text)):
        raise NotText(f"not text: {bad} control or replacement characters as {encoding}")
    return Decoded(text, encoding)


def text_lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only (``\\r\\n`` too): a JSON string may hold U+2028 or a form feed, which
    ``str.splitlines`` would also split at."""
    return [line.removesuffix("\r") for line in text.split("\n")]
