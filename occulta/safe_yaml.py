"""YAML read within a budget. A few hundred bytes of anchors and aliases (`&a [*b, *b, ...]`) stand for
billions of values; PyYAML builds them as shared references, but anything that walks or serialises
the result expands them. The document is composed first (linear in its text) and its expanded size
and depth counted without recursion, before anything walks it."""

from __future__ import annotations

import yaml

MAX_NODES = 100_000  # values after alias expansion (a card naming 21,843 classes has ~22,000)
MAX_DEPTH = 32


class YamlBudgetError(ValueError):
    """The document is past the node or depth budget; the message says which."""


def check_budget(root: yaml.Node | None, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    stack: list[tuple[yaml.Node, int]] = [(root, 0)] if root is not None else []
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise YamlBudgetError(f"expands to more than {max_nodes} values (YAML aliases?)")
        if depth > max_depth:
            raise YamlBudgetError(f"is nested deeper than {max_depth} levels")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))


def compose_bounded(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> yaml.Node | None:
    """The node graph of one document, refused past the budget. Raises yaml.YAMLError for bad YAML."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise YamlBudgetError(f"is nested deeper than {max_depth} levels") from None
    check_budget(root, max_nodes=max_nodes, max_depth=max_depth)
    return root


def load_bounded(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> object:
    """`yaml.safe_load`, within the budget."""
    root = compose_bounded(text, max_nodes=max_nodes, max_depth=max_depth)
    if root is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()
