"""The one YAML reader: every YAML imgclf reads (configs, ``--set`` values, run ``config.yaml``,
grids, search spaces) goes through it, with bounds that stop YAML bombs before they cost anything.

- Size: files over :data:`MAX_BYTES` are refused unread, and a document stops being read at
  :data:`MAX_NODES` values.
- Depth: nesting deeper than :data:`MAX_DEPTH` stops while composing (PyYAML's composer recurses
  and would raise ``RecursionError`` on 20,000 nested brackets).
- Aliases: a document whose values, with every alias expanded, number more than
  :data:`MAX_NODES` is refused before any Python object is built; so are recursive aliases
  (``&a [*a]``). A 400-byte alias bomb expands to billions of values, and every later step
  (validation, error messages, flattening) would walk all of them.

Every problem is one short line without the offending value.

Example::

    load_yaml("train: {epochs: 3}")                   # {'train': {'epochs': 3}}
    read_yaml_file("my.yaml", what="config file")     # ConfigError("config file my.yaml is not valid YAML at line 4")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

from imgclf.errors import ConfigError, ImgclfError

MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 10_000


class YAMLLimitError(yaml.YAMLError):
    """The document is too big, too deep or expands to too many values (one line, no value quoted)."""


class _BoundedComposer(Composer):
    """PyYAML's composer with a depth limit, a node count, and the expanded size checked per document."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLLimitError(f"nested deeper than {MAX_DEPTH} levels{_line(self.peek_event())}")
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise YAMLLimitError(f"holds over {MAX_NODES:,} values{_line(self.peek_event())}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node:
        node = super().compose_document()
        _expanded_size(node, {}, set(), 1)
        return node


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _Loader(_BoundedComposer, SafeConstructor, Resolver, CParser):
        """libyaml parses (25x faster than pure Python, and it stops at 1,000 levels itself);
        composing stays in Python so that it can count."""

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(_BoundedComposer, yaml.SafeLoader):  # type: ignore[no-redef]
        """Pure-Python parsing; its scanner looks far ahead for simple keys, so it is bounded too."""

        def fetch_flow_collection_start(self, token_class: Any) -> None:
            if self.flow_level >= MAX_DEPTH:
                raise YAMLLimitError(f"nested deeper than {MAX_DEPTH} levels (line {self.line + 1})")
            super().fetch_flow_collection_start(token_class)

        def add_indent(self, column: int) -> bool:
            if len(self.indents) >= MAX_DEPTH:
                raise YAMLLimitError(f"nested deeper than {MAX_DEPTH} levels (line {self.line + 1})")
            return super().add_indent(column)


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None) or getattr(event, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def _expanded_size(node: Node, sizes: dict[int, tuple[int, int]], open_nodes: set[int], depth: int) -> tuple[int, int]:
    """(values, depth) of ``node`` with aliases expanded; memoised, so linear in the document."""
    if depth > MAX_DEPTH:
        raise YAMLLimitError(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
    key = id(node)
    if key in sizes:
        count, height = sizes[key]
    elif key in open_nodes:
        raise YAMLLimitError("holds a recursive alias (an anchor used inside itself)")
    else:
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        open_nodes.add(key)
        count, height = 1, 1
        for child in children:
            child_count, child_height = _expanded_size(child, sizes, open_nodes, depth + 1)
            count, height = count + child_count, max(height, child_height + 1)
            if count > MAX_NODES:
                raise YAMLLimitError(f"expands to over {MAX_NODES:,} values through its aliases (a YAML alias bomb?)")
        open_nodes.discard(key)
        sizes[key] = (count, height)
    if depth + height - 1 > MAX_DEPTH:
        raise YAMLLimitError(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
    return count, height


def load_yaml(text: str) -> Any:
    """One YAML document, read safely and within the bounds above (``yaml.YAMLError`` otherwise;
    :class:`YAMLLimitError` when a bound is hit)."""
    if len(text) > MAX_BYTES:
        raise YAMLLimitError(f"is over {MAX_BYTES:,} characters")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):  # libyaml's own limit, met while scanning ahead
            raise YAMLLimitError(f"nested deeper than {MAX_DEPTH} levels{_line(exc)}") from None
        raise
    finally:
        getattr(loader, "dispose", lambda: None)()


def read_yaml_file(path: str | Path, what: str = "YAML file", error: type[ImgclfError] = ConfigError) -> Any:
    """The YAML document in ``path``; every problem is one ``error`` line naming ``what`` and the path."""
    path = Path(path)
    try:
        if not path.is_file():
            raise error(f"{what} not found: {path}")
        if path.stat().st_size > MAX_BYTES:
            raise error(f"{what} {path} is over {MAX_BYTES:,} bytes; a YAML file this big is refused")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not a UTF-8 text file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return load_yaml(text)
    except YAMLLimitError as exc:
        raise error(f"{what} {path} {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise error(f"{what} {path} is not valid YAML{where}") from None
