"""Named choices of one kind (judges, engines, samplers, retrievers, ...): the single source of their names.

Contract: a :class:`Registry` maps a name to a documented entry. Config validation (:meth:`Registry.field`), the
command line (:meth:`Registry.names`) and the docs (:meth:`Registry.markdown`) all read the same registry, so a
choice added here is valid, offered and documented everywhere at once. :meth:`Registry.get` returns the entry's
target; an unknown name raises :class:`UnknownName` with a "did you mean" hint and the known names.

A target may be given as ``"package.module:attribute"`` and is imported on first :meth:`~Registry.get`, so a
registry can be read (validation, ``--help``) without importing what its entries need (Ray, torch).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, WithJsonSchema

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not in a registry; the message offers the closest known name."""


def did_you_mean(name: str, known: Iterator[str] | list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    doc: str
    target: T | str | None  # the object, or "module:attribute" imported on first use, or None (a plain name)
    info: dict[str, Any]  # facts other code reads without loading the target (e.g. a sampler's objectives)


class Registry(Generic[T]):
    """Entries in registration order; ``kind`` names the thing in messages ("retriever", "LLM engine")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, doc: str, target: T | str | None = None, **info: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, doc, target, info)

    def register(self, name: str, doc: str, **info: Any) -> Any:
        """Decorator form of :meth:`add` for a class or function defined where it is registered."""

        def deco(obj: T) -> T:
            self.add(name, doc, obj, **info)
            return obj

        return deco

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        return f"unknown {self.kind} {name!r}{did_you_mean(str(name), self.names())}; known: {', '.join(self.names())}"

    def get(self, name: str) -> T:
        """The entry's target (imported on first use when registered as ``"module:attribute"``)."""
        entry = self.entry(name)
        if name not in self._loaded:
            target = entry.target
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                target = getattr(importlib.import_module(module), attr)
            self._loaded[name] = target  # type: ignore[assignment]
        return self._loaded[name]

    def check(self, name: str) -> str:
        """Pydantic validator: ``name`` itself, or :class:`UnknownName` (shown by pydantic with the field)."""
        self.entry(name)
        return name

    def field(self) -> Any:
        """An annotated ``str`` type for pydantic models: validated here, an ``enum`` in the JSON schema."""
        schema = WithJsonSchema({"type": "string", "enum": list(self.names())})
        return Annotated[str, AfterValidator(self.check), schema]

    def describe(self) -> str:
        """One line naming every choice and what it does (config field descriptions, ``--help``)."""
        return "; ".join(f"{e.name}: {e.doc}" for e in self)

    def markdown(self) -> str:
        """A two-column table of the names and what each does, for docs and ``--help``."""
        rows = [f"| `{e.name}` | {e.doc} |" for e in self]
        return "\n".join([f"| {self.kind} | what it does |", "|---|---|", *rows])
