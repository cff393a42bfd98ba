"""Prompt templates are data: named, versioned texts loaded from YAML, never code.

Contract: :func:`load_templates` returns the bundled templates (``pipelines/templates.yaml``),
overridden or extended by a user file. A template's ``version`` is a hash of its text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

BUNDLED = Path(__file__).with_name("templates.yaml")


class PromptError(ValueError):
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


def _load_file(path: Path) -> dict[str, PromptTemplate]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PromptError(f"{path}: cannot read prompt templates: {e}") from None
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping of template name -> {{system, user}}")
    out = {}
    for name, spec in data.items():
        if not isinstance(spec, dict) or set(spec) != {"system", "user"}:
            raise PromptError(f"{path}: template {name!r} must have exactly the keys 'system' and 'user'")
        user = str(spec["user"])
        for slot in ("{question}", "{context}"):
            if slot not in user:
                raise PromptError(f"{path}: template {name!r}: user text lacks {slot}")
        out[str(name)] = PromptTemplate(str(name), str(spec["system"]), user)
    return out


def load_templates(extra_file: Path | None = None) -> dict[str, PromptTemplate]:
    templates = _load_file(BUNDLED)
    if extra_file is not None:
        templates.update(_load_file(extra_file))
    return templates
