"""Reading pipeline YAML: fast on the happy path, precise on errors.

Files are composed by libyaml's C loader, and a document of plain maps, lists and scalars
(what pipelines are) is turned into data in one pass instead of by PyYAML's generator-based
constructor; anything else (merge keys, tags, duplicate keys) goes through PyYAML's. Line and
column positions are only needed when something is wrong: the :class:`Locator` composes the
text again then, and the happy path keeps no node tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from airflow_osds.exceptions import PipelineSpecError, SpecProblem

try:
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(Exception):
    def __init__(self, key: yaml.Node, first: yaml.Node) -> None:
        self.key = key
        self.first = first


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """libyaml's parser, with duplicate mapping keys refused (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, yaml.Node] = {}
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                if key_node.value in seen:
                    raise _DuplicateKey(key_node, seen[key_node.value])
                seen[key_node.value] = key_node
        return super().construct_mapping(node, deep=deep)


class _Unusual(Exception):
    """The document needs PyYAML's own constructor: a merge key, a duplicate key, another tag."""


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_SCALARS = {tag: yaml.SafeLoader.yaml_constructors[tag] for tag in (
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp")}


def _plain_data(node: yaml.Node | None) -> Any:
    """The data of a composed document made of plain maps, lists and scalars, as PyYAML's safe
    constructor would build it, in one pass without its generators (about twice as fast).

    :raises _Unusual: anything else; the caller then loads the text with the full constructor.
    """
    if node is None:
        return None
    scalar_of = yaml.SafeLoader("")  # the scalar constructors are methods; they read nothing else
    built: dict[int, Any] = {}  # containers by node: an alias is the same object, as in PyYAML

    def build(node: yaml.Node) -> Any:
        if node.__class__ is yaml.ScalarNode:
            if node.tag == _STR:
                return node.value
            construct = _SCALARS.get(node.tag)
            if construct is None:
                raise _Unusual
            return construct(scalar_of, node)
        done = built.get(id(node))
        if done is not None:
            return done
        if node.__class__ is yaml.SequenceNode and node.tag == _SEQ:
            items: list[Any] = []
            built[id(node)] = items
            items.extend([build(item) for item in node.value])
            return items
        if node.__class__ is yaml.MappingNode and node.tag == _MAP:
            mapping: dict[Any, Any] = {}
            built[id(node)] = mapping
            for key_node, value_node in node.value:
                if key_node.__class__ is not yaml.ScalarNode or key_node.tag == _MERGE_TAG:
                    raise _Unusual
                key = build(key_node)
                if key in mapping:
                    raise _Unusual  # a duplicate key: the full constructor reports it, located
                mapping[key] = build(value_node)
            return mapping
        raise _Unusual

    return build(node)


def read_yaml(path: Path) -> tuple[str, Any]:
    """Return the file's text and its data; unreadable text, YAML syntax and duplicate keys
    become a located ``PipelineSpecError``."""
    text = decode_utf8(path, path.read_bytes())
    try:
        try:
            return text, _plain_data(yaml.compose(text, Loader=_BaseLoader))  # noqa: S506 - a SafeLoader
        except _Unusual:
            return text, yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise PipelineSpecError(str(path), [SpecProblem(message, line=line, column=column)]) from None
    except _DuplicateKey as dup:
        first = dup.first.start_mark.line + 1
        message = f"duplicate key `{dup.key.value}` (first given on line {first}): keep one, YAML would silently use the last"
        mark = dup.key.start_mark
        raise PipelineSpecError(str(path), [SpecProblem(message, line=mark.line + 1, column=mark.column + 1)]) from None


def decode_utf8(path: Path, data: bytes) -> str:
    """The file's text; anything but UTF-8 is a located error naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        message = (
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded; save the file as UTF-8 "
            "(for example `iconv -f latin1 -t utf-8`)"
        )
        raise PipelineSpecError(str(path), [SpecProblem(message, line=line, column=column)]) from None


class Locator:
    """Line and column of nodes of one document; its node tree is composed once, on first use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._root: yaml.Node | None = None
        self._composed = False
        self._keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}  # mapping node → its entries

    @property
    def root(self) -> yaml.Node | None:
        if not self._composed:
            self._root = yaml.compose(self.text, Loader=_BaseLoader)  # noqa: S506
            self._composed = True
        return self._root

    def locate(self, location: Sequence[str | int]) -> tuple[int | None, int | None]:
        """1-based line and column of the node at ``location`` (keys and list indexes).

        When the location does not exist (a missing key), the closest existing parent is given.
        """
        node = self.root
        if node is None:
            return 1, 1
        for part in location:
            child = self._child(node, part)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _child(self, node: yaml.Node, part: str | int) -> yaml.Node | None:
        entry = self._entry(node, part)
        if entry is not None:
            return entry[1]
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            return node.value[part]
        return None

    def _entry(self, node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        entries = self._keys.get(id(node))
        if entries is None:
            entries = self._keys[id(node)] = {}
            for key, value in node.value:
                entries.setdefault(str(key.value), (key, value))
        return entries.get(str(part))

    def locate_key(self, location: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Position of the *key* at the end of ``location`` (for unknown keys), else of its value."""
        if location and isinstance(location[-1], str):
            parent = self.root
            for part in location[:-1]:
                parent = self._child(parent, part) if parent is not None else None
            entry = self._entry(parent, location[-1]) if parent is not None else None
            if entry is not None:
                return entry[0].start_mark.line + 1, entry[0].start_mark.column + 1
        return self.locate(location)


def locate(text: str, location: Sequence[str | int]) -> tuple[int | None, int | None]:
    return Locator(text).locate(location)


def locate_key(text: str, location: Sequence[str | int]) -> tuple[int | None, int | None]:
    return Locator(text).locate_key(location)
