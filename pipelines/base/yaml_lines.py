"""Reading the YAML files users write (experiment configs, prompt and judge files), strictly, with line numbers.

Contract:
- :func:`load_yaml` parses like ``yaml.safe_load`` except where YAML 1.1 guesses: a mapping with the same key twice
  is an error naming both lines, and only ``true``/``false`` are booleans (``yes``, ``no``, ``on``, ``off`` stay
  strings, so ``num_samples: yes`` is refused by validation instead of becoming 1). Errors are
  ``yaml.YAMLError`` with a ``problem_mark`` (see :func:`yaml_error_line`).
- :func:`key_lines` maps every key path (mapping keys and list indexes as strings) to its 1-based line; text
  that does not parse gives an empty map (the YAML error is reported elsewhere).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; SafeLoader reports it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first}): a mapping lists each key once",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 resolves yes/no/on/off (and y/n) to booleans; keep only true/false.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))


def load_yaml(text: str) -> Any:
    """``text`` parsed by :class:`StrictLoader`."""
    return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader


def yaml_error_line(err: yaml.YAMLError) -> int | None:
    """The 1-based line a YAML error points at, if it has one."""
    mark = getattr(err, "problem_mark", None)
    return mark.line + 1 if mark is not None else None


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML mapping tree to its 1-based line, for error messages."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = (*path, str(k.value))
                lines[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[path + (str(i),)] = v.start_mark.line + 1
                walk(v, path + (str(i),))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines
