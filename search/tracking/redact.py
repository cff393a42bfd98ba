"""Mask personal data in the texts ragsweep logs (``mlflow.redact``).

Contract: :class:`Redactor` maps a string to the same string with every e-mail address replaced by ``[EMAIL]``,
every phone number by ``[PHONE]`` and every match of a configured pattern by ``[REDACTED]``; :meth:`Redactor.deep`
does the same for every string inside lists, tuples and dict values. With no settings it changes nothing but
secrets (:mod:`ragsweep.pipelines.base.secrets`), which it masks whatever the settings. Model artifacts (the champion's
corpus and config) are not redacted: the champion needs them to answer.
"""

from __future__ import annotations

import re
from typing import Any

from ragsweep.pipelines.base.secrets import SECRETS
from ragsweep.search.config import RedactSettings

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# A run of digits with optional +, spaces, dots, dashes, slashes and brackets; counted as a phone number only
# with 9 to 15 digits, so dates (8 digits) and ordinary figures stay.
_PHONE_RUN = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().\-/]{6,}\d(?!\w)")


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group())
    return "[PHONE]" if 9 <= digits <= 15 else match.group()


class Redactor:
    def __init__(self, settings: RedactSettings | None) -> None:
        self.enabled = settings is not None
        self._emails = bool(settings and settings.emails)
        self._phones = bool(settings and settings.phones)
        self._patterns = [re.compile(p) for p in settings.patterns] if settings else []

    def __call__(self, text: str) -> str:
        text = SECRETS.mask(text)  # always, whatever mlflow.redact says
        if not self.enabled or not text:
            return text
        for p in self._patterns:  # first, so a pattern may cover what the built-in masks would cut apart
            text = p.sub("[REDACTED]", text)
        if self._emails:
            text = EMAIL.sub("[EMAIL]", text)
        if self._phones:
            text = _PHONE_RUN.sub(_phone, text)
        return text

    def deep(self, value: Any) -> Any:
        """``value`` with every string inside it redacted (dict keys are left as they are)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.deep(v) for v in value)
        return value
