"""Reading the files a user names (configs, datasets, prompt and judge files) with errors that say which and why.

Contract: :func:`read_bytes_file`, :func:`read_text_file` and :func:`read_user_text` return the content or raise
``error`` (the caller's bad-input exception type) with one sentence naming the path and what is wrong with it:
missing, a folder, not readable, not text. Text is decoded by :func:`text_decode.decode_text` (byte-order marks,
UTF-16/32, legacy code pages), so every file a user gives is read the same way. No other exception escapes for a
bad path.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ragsweep.pipelines.base.text_decode import Decoded, NotText, decode_text


def _why(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(e, PermissionError):
        return "permission denied (not readable)"
    if isinstance(e, NotADirectoryError) or e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    return e.strerror or type(e).__name__


def read_bytes_file(path: Path, what: str, error: type[Exception]) -> bytes:
    """The bytes of ``path`` (a ``what``: "config file", "questions file"...), else ``error``."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {_why(e)}") from None


def read_user_text(path: Path, what: str, error: type[Exception]) -> Decoded:
    """The text of ``path`` and the encoding it was saved in, else ``error`` naming the path and why it is not
    text."""
    raw = read_bytes_file(path, what, error)
    try:
        return decode_text(raw)
    except NotText as e:
        raise error(f"{path}: the {what} is not readable text: {e}") from None


def read_text_file(path: Path, what: str, error: type[Exception]) -> str:
    """:func:`read_user_text` without the encoding."""
    return read_user_text(path, what, error).text


def check_apart(out: Path, flag: str, inputs: dict[str, Path | None], error: type[Exception]) -> None:
    """Refuse an output that is one of ``inputs``, lies inside one (an input folder) or holds one (a parent folder
    of an input): writing or replacing it would overwrite or delete what the user gave, or read it back as input
    next time. ``inputs``: the flag or key that named each path. Called before anything is read or written."""
    o = Path(out).expanduser().resolve()
    for name, given in inputs.items():
        if given is None:
            continue
        i = Path(given).expanduser().resolve()
        if o == i:
            why = "is"
        elif i in o.parents:
            why = "lies inside"
        elif o in i.parents:
            why = "holds"
        else:
            continue
        raise error(
            f"{flag} {out}: {why} the input {name} {given}; ragsweep never writes where it reads: choose "
            f"a {flag} outside every input"
        )


def write_text_atomic(out: Path, text: str) -> None:
    """Write ``out`` whole or not at all: a temporary file beside it, renamed over it. Missing parent folders are
    created, and removed again when the write fails, so a failure leaves nothing behind."""
    out = Path(out)
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for p in missing:  # innermost first; only folders this call made, and only while still empty
            try:
                p.rmdir()
            except OSError:
                break
        raise
