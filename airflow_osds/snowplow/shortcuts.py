"""A yes-only check for the plainest schemas: the self-describing envelopes every entity field comes in.

Each entity field of an event is validated twice before its entities are: the document
against ``instance-iglu-only`` (an object of exactly a pattern-checked ``schema`` string and
``data``), and its data against ``contexts`` (an array of such objects) or
``unstruct_event``. fastjsonschema's generated code takes ~1.7 and ~3.2 µs for these on a
two-entity field, a tenth of the parse of an event whose contexts are new. For a schema made
only of the keywords below, :func:`shortcut` builds a check that answers *valid* in a few dict
operations (a pattern's verdict on a string is kept: the same few schema URIs come on every
event), or *cannot say*; then the compiled validator decides, as it always did.

It answers *valid* only where the compiled validator would too: it asks for exact ``dict``,
``list`` and ``str`` values (fastjsonschema also takes their subclasses), and runs the very
regular expressions fastjsonschema compiled for the schema's patterns (it reads ``$`` as end
of string). Verdicts and reports never change; a schema it does not recognise gets no shortcut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["shortcut"]

Check = Callable[[Any], bool]

# Annotations: they assert nothing.
_ANNOTATIONS = frozenset({"$schema", "self", "description", "title"})
_OBJECT_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties"}) | _ANNOTATIONS
_ARRAY_KEYWORDS = frozenset({"type", "items", "minItems", "maxItems"}) | _ANNOTATIONS
_STRING_KEYWORDS = frozenset({"type", "pattern", "maxLength", "minLength"}) | _ANNOTATIONS
_SEEN_AT_MOST = 4096  # strings whose pattern verdict is kept, per property
_ABSENT = object()


def shortcut(schema: Any, compiled: Callable[[Any], Any]) -> Check | None:
    """A check that returns ``True`` only for data ``compiled`` accepts, or ``None`` for a schema it cannot cover.

    :param compiled: ``schema``'s fastjsonschema validator, whose compiled patterns the check uses.
    """
    function = getattr(compiled, "func", compiled)  # a functools.partial when formats are given
    patterns = getattr(function, "__globals__", {}).get("REGEX_PATTERNS", {})
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "array":
        return _array(schema, patterns)
    return _object(schema, patterns)


def _object(schema: Any, patterns: dict[str, Any]) -> Check | None:
    if not isinstance(schema, dict) or not schema.keys() <= _OBJECT_KEYWORDS or schema.get("type") != "object":
        return None
    properties, required = schema.get("properties", {}), schema.get("required", [])
    if schema.get("additionalProperties", True) is not False or not isinstance(properties, dict):
        return None
    if not isinstance(required, list) or not all(isinstance(name, str) and name in properties for name in required):
        return None
    # (name, minLength, maxLength, regex or None, the regex's verdicts on the strings seen)
    strings: list[tuple[str, int, int | None, Any, dict[str, bool]]] = []
    for name, subschema in properties.items():
        if not isinstance(subschema, dict):
            return None
        if not subschema.keys() - _ANNOTATIONS:
            continue  # {}: any value
        string = _string(subschema, patterns)
        if string is None:
            return None
        strings.append((name, *string, {}))
    names, needed = frozenset(properties), tuple(required)

    def check(data: Any) -> bool:
        if data.__class__ is not dict or not data.keys() <= names:
            return False
        for name in needed:
            if name not in data:
                return False
        for name, shortest, longest, regex, seen in strings:  # inline: a call per value costs more than the check
            value = data.get(name, _ABSENT)
            if value is _ABSENT:
                continue
            if value.__class__ is not str or len(value) < shortest or (longest is not None and len(value) > longest):
                return False
            if regex is not None:
                matched = seen.get(value)  # the same few schema URIs on every event
                if matched is None:
                    matched = regex.search(value) is not None
                    if len(seen) < _SEEN_AT_MOST:
                        seen[value] = matched
                if not matched:
                    return False
        return True

    return check



def _string(schema: dict[str, Any], patterns: dict[str, Any]) -> tuple[int, int | None, Any] | None:
    """``(minLength, maxLength, compiled pattern)`` of a plain string schema, or ``None``."""
    if not schema.keys() <= _STRING_KEYWORDS or schema.get("type") != "string":
        return None
    pattern = schema.get("pattern")
    regex = patterns.get(pattern) if pattern is not None else None
    if pattern is not None and regex is None:
        return None  # not the regular expression the compiled validator runs
    longest, shortest = schema.get("maxLength"), schema.get("minLength", 0)
    if (longest is not None and type(longest) is not int) or type(shortest) is not int:
        return None
    return shortest, longest, regex


def _array(schema: dict[str, Any], patterns: dict[str, Any]) -> Check | None:
    if not schema.keys() <= _ARRAY_KEYWORDS:
        return None
    item = _object(schema.get("items"), patterns)
    fewest, most = schema.get("minItems", 0), schema.get("maxItems")
    if item is None or type(fewest) is not int or (most is not None and type(most) is not int):
        return None

    def check(data: Any) -> bool:
        if data.__class__ is not list or len(data) < fewest or (most is not None and len(data) > most):
            return False
        for element in data:
            if not item(element):
                return False
        return True

    return check
