"""Where each key of a YAML file is, so validation errors can name the line.

Contract: :func:`key_lines` maps every key path (mapping keys and list indexes as strings) to its 1-based
line; text that does not parse gives an empty map (the YAML error is reported elsewhere).
"""

from __future__ import annotations

import yaml


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
