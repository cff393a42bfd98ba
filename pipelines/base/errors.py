"""The one kind of error a user fixes by changing their input.

Contract: :class:`BadInput` (and every subclass: config, dataset, prompt, embedder, serving set-up, tracking,
resume, promotion, evaluation errors) carries one sentence naming the file and line, the flag, the config field
or the endpoint, and what to do. The CLI prints it and exits 2. Raised before any work starts, so nothing is left
half-written; anything else that escapes is a failure of the search (exit 1).
"""

from __future__ import annotations


class BadInput(ValueError):
    """Input the user can fix: the message names where it is and what is wrong."""
