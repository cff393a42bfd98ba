"""Reading the files a user names (configs, datasets, prompt and judge files) with errors that say which and why.

Contract: :func:`read_bytes_file` and :func:`read_text_file` return the content or raise ``error`` (the caller's
bad-input exception type) with one sentence naming the path and what is wrong with it: missing, a folder, not
readable, not UTF-8. No other exception escapes for a bad path.
"""

from __future__ import annotations

import errno
from pathlib import Path


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


def read_text_file(path: Path, what: str, error: type[Exception]) -> str:
    """:func:`read_bytes_file` decoded as UTF-8 (a UTF-8 byte-order mark is dropped), else ``error``."""
    raw = read_bytes_file(path, what, error)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{path}: the {what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


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
        raise error(f"{flag} {out}: {why} the input {name} {given}; ragsweep never writes where it reads: choose "
                    f"a {flag} outside every input")
