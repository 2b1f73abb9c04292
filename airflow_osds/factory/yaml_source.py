"""Reading pipeline YAML: fast on the happy path, precise on errors.

Files are read with libyaml's C loader. Line and column positions are only needed
when something is wrong, so the node tree (which carries them) is composed again
only then, instead of paying for positions on every DAG parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from airflow_osds.exceptions import PipelineSpecError, SpecProblem

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


def read_yaml(path: Path) -> tuple[str, Any]:
    """Return the file's text and its data; a YAML syntax error becomes a located ``PipelineSpecError``."""
    text = path.read_text(encoding="utf-8")
    try:
        return text, yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise PipelineSpecError(str(path), [SpecProblem(message, line=line, column=column)]) from None


def locate(text: str, location: Sequence[str | int]) -> tuple[int | None, int | None]:
    """1-based line and column of the node at ``location`` (keys and list indexes) in ``text``.

    When the location does not exist (a missing key), the closest existing parent is given.
    """
    node = yaml.compose(text, Loader=_Loader)  # noqa: S506
    if node is None:
        return 1, 1
    for part in location:
        child = _child(node, part)
        if child is None:
            break
        node = child
    return node.start_mark.line + 1, node.start_mark.column + 1


def locate_key(text: str, location: Sequence[str | int]) -> tuple[int | None, int | None]:
    """Position of the *key* at the end of ``location`` (for unknown keys), else of its value."""
    if location and isinstance(location[-1], str):
        parent = yaml.compose(text, Loader=_Loader)  # noqa: S506
        for part in location[:-1]:
            parent = _child(parent, part) if parent is not None else None
        if isinstance(parent, yaml.MappingNode):
            for key, _value in parent.value:
                if key.value == location[-1]:
                    return key.start_mark.line + 1, key.start_mark.column + 1
    return locate(text, location)


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None
