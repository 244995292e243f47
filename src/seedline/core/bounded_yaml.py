"""Loading YAML with a bound on how far its aliases expand.

An alias (``*a``) makes the loaded data share one object in many places; a document of a
few hundred bytes can name the same list a billion times ("billion laughs"). Loading it is
cheap, but everything that walks the data afterwards (validation, canonical JSON,
fingerprints) expands every reference. So before constructing anything we count the nodes
the document would have once every alias is written out, and refuse it past a limit.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_NODES = 100_000
"""The most nodes (scalars, lists, mappings) a spec may have once its aliases are expanded."""


class YAMLExpansionError(ValueError):
    """Raised when a YAML document's aliases expand past the node limit, or an alias contains itself."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in the document under ``root`` with every alias written out, counted up to ``limit`` + 1.

    Shared nodes are counted once per reference (that is the expansion) but visited once
    (memoised), so counting a bomb costs as much as its text, not its expansion.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in children)
            sizes[key] = min(total, limit + 1)
            continue
        if key in on_path:
            raise YAMLExpansionError(
                "a YAML alias refers to a collection that contains it (a recursive structure)",
                line=node.start_mark.line + 1,
            )
        on_path.add(key)
        stack.append((node, True))
        for c in children:
            if id(c) in on_path:
                raise YAMLExpansionError(
                    "a YAML alias refers to a collection that contains it (a recursive structure)",
                    line=c.start_mark.line + 1,
                )
            if id(c) not in sizes:
                stack.append((c, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_bounded(text: str, *, max_nodes: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load`` that refuses documents expanding to more than ``max_nodes`` nodes.

    Raises ``yaml.YAMLError`` for malformed YAML and :class:`YAMLExpansionError` for a
    document whose aliases expand too far.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = expanded_size(node, max_nodes)
        if size > max_nodes:
            raise YAMLExpansionError(
                f"the YAML document expands to more than {max_nodes:,} values once its aliases "
                "(*name) are written out"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
