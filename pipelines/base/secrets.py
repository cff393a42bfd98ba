"""Secrets never reach a log: one process-wide mask for every text ragsweep prints or records.

Contract:
- :data:`SECRETS` is this process's :class:`SecretMask`. :meth:`SecretMask.add` registers values to hide (the
  config registers the values of ``llm.<endpoint>.env``, the variables ``api_key_env`` names and the passwords in
  its URIs; see ``ExperimentConfig.secret_values``); values shorter than 4 characters are not registered (they
  would mask ordinary text).
- :meth:`SecretMask.mask` returns the text with every registered value and every match of :data:`PATTERNS`
  (common token shapes: OpenAI/Hugging Face/GitHub/Slack/AWS keys, bearer tokens, JWTs, ``password=...``-style
  assignments, ``user:password@`` in URLs) replaced by ``***``. :meth:`SecretMask.deep` does the same inside
  dicts, lists and tuples. Masking applies whether or not ``mlflow.redact`` is on.
- It is applied where text leaves the process: the console and log file, MLflow params, tags, JSON and config
  artifacts, answers and traces (through the Redactor), and the CLI's error messages.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 4

# (pattern, replacement): the replacement keeps what names the secret (a key, "Bearer", the user) and drops it.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"), MASK),  # OpenAI, Anthropic
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MASK),  # Hugging Face
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),  # GitHub
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),  # Slack
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),  # AWS access key id
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),  # JWT
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{MASK}"),
    (
        re.compile(
            r"(?i)(\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key)[\"']?"
            r"\s*[:=]\s*[\"']?)[^\s\"',;}&]+"
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"(://[^/\s:@]+):[^/\s@]+@"), rf"\1:{MASK}@"),  # scheme://user:password@host
)


class SecretMask:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        with self._lock:
            new = {v for v in values if v and len(v) >= MIN_SECRET_CHARS} - self._values
            if new:
                self._values |= new
                # longest first, so a secret that contains another is masked whole
                alts = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alts))

    def mask(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def deep(self, value: Any) -> Any:
        """``value`` with every string inside it masked (dict keys stay)."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.deep(v) for v in value)
        return value


SECRETS = SecretMask()
