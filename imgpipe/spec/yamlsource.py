"""YAML loading that remembers where every value came from, so each error can
name file, line and column. PyYAML's composer gives node marks; we build plain
Python values from the nodes and keep a path -> position map beside them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Located:
    """A loaded document plus the position of each value and each mapping key."""

    data: Any
    file: str
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def position(self, path: Path_, *, key: bool = False) -> Position:
        """The position of `path`, or of its nearest located ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(self.file, 1, 1))


class YamlSyntaxError(Exception):
    def __init__(self, position: Position, problem: str) -> None:
        super().__init__(problem)
        self.position = position
        self.problem = problem


def _pos(file: str, node: yaml.Node) -> Position:
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = yaml.constructor.SafeConstructor()
        self.doc = Located(None, file)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.values[path] = _pos(self.file, node)
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise YamlSyntaxError(_pos(self.file, key_node), "mapping keys must be scalars")
                if key in out:
                    raise YamlSyntaxError(_pos(self.file, key_node), f"duplicate key {key!r}")
                self.doc.keys[(*path, key)] = _pos(self.file, key_node)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


def load_located(text: str, file: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError with a position on bad YAML."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(Position(file, line, col), str(exc.problem or exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Position(file, 1, 1), str(exc)) from None
    builder = _Builder(file)
    if node is None:
        builder.doc.data = None
        return builder.doc
    try:
        builder.doc.data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
        raise YamlSyntaxError(pos, str(exc.problem)) from None
    except RecursionError:
        raise YamlSyntaxError(Position(file, 1, 1), "document is nested too deeply") from None
    return builder.doc


def load_located_file(path: Path) -> Located:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(Position(str(path), 1, 1), f"not UTF-8 text: {exc}") from None
    return load_located(text, str(path))
