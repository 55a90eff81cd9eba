"""YAML loading that remembers where every value came from, so each error can
name file, line and column. PyYAML's composer gives node marks; we build plain
Python values from the nodes and keep a path -> position map beside them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

MAX_DEPTH = 100  # nesting levels: far beyond any real spec, far below Python's recursion limit
MAX_NODES = 50_000  # values after expanding aliases: stops "billion laughs" documents


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


_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _pos(file: str, node: yaml.Node) -> Position:
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _too_deep(file: str, mark: yaml.Mark) -> YamlSyntaxError:
    return YamlSyntaxError(
        Position(file, mark.line + 1, mark.column + 1), f"nested deeper than {MAX_DEPTH} levels"
    )


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML's composer recurses once per level; refuse deep documents before Python does."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if not self.check_event(*_OPEN):
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _too_deep(self.name, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = yaml.constructor.SafeConstructor()
        self.doc = Located(None, file)
        self.count = 0
        self.positions: dict[int, Position] = {}  # an alias repeats its anchor's node

    def position(self, node: yaml.Node) -> Position:
        pos = self.positions.get(id(node))
        if pos is None:
            pos = self.positions[id(node)] = _pos(self.file, node)
        return pos

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlSyntaxError(
                _pos(self.file, node), f"more than {MAX_NODES} values (after expanding aliases)"
            )
        self.doc.values[path] = self.position(node)
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlSyntaxError(_pos(self.file, key_node), "mapping keys must be scalars")
                key = self.scalar(key_node)
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise YamlSyntaxError(_pos(self.file, key_node), "mapping keys must be scalars")
                if key in out:
                    raise YamlSyntaxError(_pos(self.file, key_node), f"duplicate key {key!r}")
                self.doc.keys[(*path, key)] = self.position(key_node)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - `!!int x`, `!!bool maybe`, an int of 5000 digits ...
            tag = node.tag.rsplit(":", 1)[-1]
            raise YamlSyntaxError(self.position(node), f"not a valid {tag}: {exc}") from None


def _compose(text: str, file: str) -> yaml.Node | None:
    """libyaml composes ~20x faster than PyYAML's Python code, whose scanner is also
    quadratic in flow nesting depth; PyYAML's composer is the fallback. Both composers
    recurse per level, so depth is checked first (on libyaml's event stream, or as
    PyYAML's composer descends)."""
    if getattr(yaml, "__with_libyaml__", False):
        try:
            depth = 0
            for event in yaml.parse(text, Loader=yaml.CSafeLoader):
                depth += isinstance(event, _OPEN) - isinstance(event, _CLOSE)
                if depth > MAX_DEPTH:
                    raise _too_deep(file, event.start_mark)
            return yaml.compose(text, Loader=yaml.CSafeLoader)
        except yaml.reader.ReaderError as exc:  # libyaml counts UTF-8 bytes, not characters
            chars = len(text.encode("utf-8", "surrogatepass")[: exc.position].decode("utf-8", "ignore"))
            raise yaml.reader.ReaderError(file, chars, exc.character, exc.encoding, exc.reason) from None
        except UnicodeEncodeError:
            pass  # a lone surrogate: PyYAML's reader names it
    loader = _DepthLimitedLoader(text)
    loader.name = file
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _check_size(node: yaml.Node, file: str) -> None:
    """Refuse documents whose aliases expand beyond MAX_NODES values, naming the
    smallest node that does, before building anything."""
    sizes: dict[int, int] = {}

    def children(n: yaml.Node) -> list[yaml.Node]:
        if isinstance(n, yaml.MappingNode):
            return [child for pair in n.value for child in pair]
        return list(n.value) if isinstance(n, yaml.SequenceNode) else []

    def size(n: yaml.Node) -> int:
        if id(n) not in sizes:
            sizes[id(n)] = 1 + sum(size(child) for child in children(n))
        return sizes[id(n)]

    if size(node) <= MAX_NODES:
        return
    while True:
        bigger = next((c for c in children(node) if size(c) > MAX_NODES), None)
        if bigger is None:
            raise YamlSyntaxError(_pos(file, node), f"more than {MAX_NODES} values (after expanding aliases)")
        node = bigger


def load_located(text: str, file: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError with a position on bad YAML."""
    try:
        node = _compose(text, file)
    except yaml.reader.ReaderError as exc:
        raise YamlSyntaxError(_index_position(text, exc.position, file), _reader_problem(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(Position(file, line, col), _syntax_problem(exc, text)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Position(file, 1, 1), str(exc).splitlines()[0]) from None
    except RecursionError:
        raise YamlSyntaxError(Position(file, 1, 1), "document is nested too deeply") from None
    if node is not None:
        _check_size(node, file)
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


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> str:
    problem = str(exc.problem or exc).splitlines()[0]
    mark = exc.problem_mark
    lines = text.splitlines()
    if mark and mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
        problem += " (a tab: YAML indents with spaces)"
    return problem


def _index_position(text: str, index: int, file: str) -> Position:
    line = text.count("\n", 0, index) + 1
    return Position(file, line, index - (text.rfind("\n", 0, index) + 1) + 1)


def _reader_problem(exc: yaml.reader.ReaderError) -> str:
    char = exc.character
    code = ord(char) if isinstance(char, str) else char
    return f"character #x{code:04x} is not allowed in YAML: {exc.reason}"


def load_located_file(path: Path) -> Located:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(Position(str(path), 1, 1), f"not UTF-8 text: {exc}") from None
    return load_located(text, str(path))
