"""Prompt templates are data: named, versioned texts loaded from YAML, never code.

Contract: :func:`load_templates` returns the bundled templates (``pipelines/templates.yaml``),
overridden or extended by a user file. A template's ``version`` is a hash of its text.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.base.files import read_text_file
from ragsweep.pipelines.base.yaml_lines import load_yaml, yaml_error_line

BUNDLED = Path(__file__).with_name("templates.yaml")


class PromptError(BadInput):
    """A template file is malformed; the message names the file and template."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.system}\x00{self.user}".encode()).hexdigest()[:12]

    @property
    def text(self) -> str:
        return f"[system]\n{self.system}\n\n[user]\n{self.user}\n"

    def render(self, question: str, contexts: Sequence[str]) -> tuple[tuple[str, str], ...]:
        context = "\n\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, start=1))
        return (("system", self.system), ("user", self.user.format(question=question, context=context)))


def _placeholders(text: str) -> list[str]:
    """The ``{name}`` fields ``str.format`` would fill in ``text`` (ValueError for an unpaired brace)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _check_slots(path: Path, name: str, user: str) -> None:
    """The user text renders with a dummy question and context: only {question} and {context}, braces paired."""
    literal = "write {{ and }} for a literal brace, e.g. in a JSON example"
    try:
        fields = _placeholders(user)
    except ValueError as e:
        raise PromptError(f"{path}: template {name!r}: user text has an unpaired brace ({e}); {literal}") from None
    other = sorted({f for f in fields if f not in ("question", "context")})
    if other:
        raise PromptError(
            f"{path}: template {name!r}: user text has placeholder(s) {', '.join(other)}; only "
            f"{{question}} and {{context}} are filled; {literal}"
        )
    for slot in ("question", "context"):
        if slot not in fields:
            raise PromptError(f"{path}: template {name!r}: user text lacks {{{slot}}}")


def _load_file(path: Path) -> dict[str, PromptTemplate]:
    text = read_text_file(path, "prompt templates file", PromptError)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        line = yaml_error_line(e)
        raise PromptError(
            f"{path}: {f'line {line}: ' if line else ''}invalid YAML: {getattr(e, 'problem', None) or e}"
        ) from None
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping of template name -> {{system, user}}")
    out = {}
    for name, spec in data.items():
        if not isinstance(spec, dict) or set(spec) != {"system", "user"}:
            raise PromptError(f"{path}: template {name!r} must have exactly the keys 'system' and 'user'")
        if not all(isinstance(spec[k], str) for k in ("system", "user")):
            raise PromptError(f"{path}: template {name!r}: 'system' and 'user' must be text")
        user = spec["user"]
        _check_slots(path, str(name), user)
        out[str(name)] = PromptTemplate(str(name), str(spec["system"]), user)
    return out


def load_templates(extra_file: Path | None = None) -> dict[str, PromptTemplate]:
    templates = _load_file(BUNDLED)
    if extra_file is not None:
        templates.update(_load_file(extra_file))
    return templates
