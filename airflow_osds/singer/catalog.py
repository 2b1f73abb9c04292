"""A tap's discovered Singer catalog, with Meltano's ``select`` and ``metadata`` applied (no Airflow imports).

``select`` patterns are ``<tap_stream_id>.<property>``, each part an :func:`fnmatch` glob
(``public-customers.*``, ``*.id``); the stream part ends at the first ``.``. A pattern without a
``.`` means ``<stream>.*``; ``!pattern`` excludes, and an exclusion wins over any inclusion. A
property is selected when an inclusion matches it and no exclusion does; ``inclusion: automatic``
properties are always selected and ``inclusion: unsupported`` ones never. A stream is selected
when any of its properties is selected by a pattern. Without ``select``, every stream is
selected (Meltano's default ``*.*``) and property selection stays as the tap discovered it.

``metadata`` maps a stream glob to the root-breadcrumb metadata to set, e.g.
``{"public-orders": {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}}``;
its ``properties`` mapping (property glob -> metadata) sets property-level metadata. It is applied
after ``select``, so it has the last word. A ``replication-key`` without a ``replication-method``
makes the stream ``INCREMENTAL``.

The catalog shape is the Singer spec's (``{"streams": [{"tap_stream_id", "schema", "metadata":
[{"breadcrumb": [], "metadata": {...}}, {"breadcrumb": ["properties", "col"], ...}]}]}``);
see ../shared/reference/stack-components.md §2.1.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from airflow_osds.exceptions import OsdsError

__all__ = ["CatalogError", "apply", "selected_streams", "stream_names"]

REPLICATION_METHODS = ("FULL_TABLE", "INCREMENTAL", "LOG_BASED")
_GLOB_CHARS = frozenset("*?[")
_EMPTY: Mapping[str, Mapping[str, Any]] = {}


class CatalogError(OsdsError):
    """The catalog, a ``select`` pattern or the ``metadata`` cannot be applied; the message says what to fix."""


# -- patterns --------------------------------------------------------------------------------
class _Pattern:
    __slots__ = ("raw", "exclude", "stream", "prop")

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str):
            raise CatalogError(f"a select pattern must be a string, got {raw!r}")
        self.raw = raw
        self.exclude = raw.startswith("!")
        body = raw[1:] if self.exclude else raw
        stream, dot, prop = body.partition(".")
        if not stream or (dot and not prop):
            raise CatalogError(f"select pattern {raw!r} is not <stream>.<property> (e.g. 'public-customers.*' or "
                               "'public-customers.id'; '!' in front excludes)")
        self.stream, self.prop = stream, prop or "*"

    def matches(self, stream: str, prop: str) -> bool:
        return fnmatchcase(stream, self.stream) and fnmatchcase(prop, self.prop)

    @property
    def whole_stream(self) -> bool:
        return self.prop == "*"


def _patterns(select: Sequence[str]) -> list[_Pattern]:
    if isinstance(select, (str, bytes)) or not isinstance(select, Sequence):
        raise CatalogError(f"select must be a list of patterns, got {select!r}")
    return [_Pattern(p) for p in select]


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


# -- catalog access --------------------------------------------------------------------------
def _streams(catalog: Any) -> list[dict[str, Any]]:
    streams = catalog.get("streams") if isinstance(catalog, Mapping) else None
    if not isinstance(streams, list):
        raise CatalogError('a Singer catalog is a JSON object {"streams": [...]}, got '
                           f"{_short(catalog)}; is this the output of the tap's --discover?")
    for index, stream in enumerate(streams):
        if not isinstance(stream, Mapping) or not isinstance(stream.get("tap_stream_id"), str):
            raise CatalogError(f"stream #{index} of the catalog has no tap_stream_id: {_short(stream)}")
        if not isinstance(stream.get("metadata", []), list):
            raise CatalogError(f"the metadata of stream {stream['tap_stream_id']} is not a list")
    return streams


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _entry(stream: dict[str, Any], breadcrumb: list[str]) -> dict[str, Any]:
    """The metadata dict of ``breadcrumb``, created (at the end of the list) when missing."""
    entries = stream.setdefault("metadata", [])
    for entry in entries:
        if isinstance(entry, dict) and entry.get("breadcrumb") == breadcrumb:
            if not isinstance(entry.get("metadata"), dict):
                entry["metadata"] = {}
            return entry["metadata"]
    created: dict[str, Any] = {}
    entries.append({"breadcrumb": breadcrumb, "metadata": created})
    return created


def _find(stream: Mapping[str, Any], breadcrumb: list[str]) -> Mapping[str, Any]:
    for entry in stream.get("metadata") or ():
        if isinstance(entry, Mapping) and entry.get("breadcrumb") == breadcrumb:
            found = entry.get("metadata")
            return found if isinstance(found, Mapping) else {}
    return {}


def _schema_properties(stream: Mapping[str, Any]) -> list[str]:
    schema = stream.get("schema")
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    return list(props) if isinstance(props, Mapping) else []


def _properties(stream: Mapping[str, Any]) -> list[str]:
    """The schema's top-level properties, then any that only the metadata names."""
    names = _schema_properties(stream)
    for entry in stream.get("metadata") or ():
        crumb = entry.get("breadcrumb") if isinstance(entry, Mapping) else None
        if isinstance(crumb, list) and len(crumb) == 2 and crumb[0] == "properties" and crumb[1] not in names:
            names.append(crumb[1])
    return names


# -- select ----------------------------------------------------------------------------------
def _select(streams: list[dict[str, Any]], patterns: list[_Pattern]) -> None:
    includes = [p for p in patterns if not p.exclude]
    excludes = [p for p in patterns if p.exclude]
    used: set[int] = set()
    for stream in streams:
        sid = stream["tap_stream_id"]
        root = _entry(stream, [])
        any_selected = False
        for prop in _properties(stream):
            md = _entry(stream, ["properties", prop])
            hits = [i for i, p in enumerate(includes) if p.matches(sid, prop)]
            used.update(hits)
            chosen = bool(hits) and not any(p.matches(sid, prop) for p in excludes)
            if md.get("inclusion") == "unsupported":
                md["selected"] = False
            else:
                md["selected"] = chosen or md.get("inclusion") == "automatic"
                any_selected = any_selected or chosen
        root["selected"] = any_selected and root.get("inclusion") != "unsupported"
    for index, pattern in enumerate(includes):
        if index not in used:
            raise CatalogError(_unmatched(pattern, streams))


def _unmatched(pattern: _Pattern, streams: list[dict[str, Any]]) -> str:
    ids = [s["tap_stream_id"] for s in streams]
    matched = [s for s in streams if fnmatchcase(s["tap_stream_id"], pattern.stream)]
    if not matched:
        return (f"select pattern {pattern.raw!r} matches no stream; the tap's streams are: {_listing(ids)}"
                f"{_did_you_mean(pattern.stream, ids)}")
    props = sorted({p for s in matched for p in _properties(s)})
    names = ", ".join(s["tap_stream_id"] for s in matched)
    return (f"select pattern {pattern.raw!r} matches no property of {names}; its properties are: "
            f"{_listing(props)}{_did_you_mean(pattern.prop, props)}")


# -- metadata --------------------------------------------------------------------------------
def _metadata(streams: list[dict[str, Any]], metadata: Mapping[str, Mapping[str, Any]]) -> None:
    if not isinstance(metadata, Mapping):
        raise CatalogError(f"metadata must map a stream pattern to its metadata, got {_short(metadata)}")
    ids = [s["tap_stream_id"] for s in streams]
    merged: dict[str, dict[str, Any]] = {}  # per stream, every matching pattern's root metadata, later wins
    for pattern, values in metadata.items():
        if not isinstance(values, Mapping):
            raise CatalogError(f"metadata for {pattern!r} must be a mapping of metadata keys, got {_short(values)}")
        matched = [s for s in streams if fnmatchcase(s["tap_stream_id"], str(pattern))]
        if not matched:
            raise CatalogError(f"metadata pattern {pattern!r} matches no stream; the tap's streams are: "
                               f"{_listing(ids)}{_did_you_mean(str(pattern), ids)}")
        props = values.get("properties", {})
        if not isinstance(props, Mapping) or not all(isinstance(v, Mapping) for v in props.values()):
            raise CatalogError(f"metadata for {pattern!r}: 'properties' must map a property to its metadata, "
                               f"got {_short(props)}")
        for prop_pattern, prop_values in props.items():
            hits = 0
            for stream in matched:
                for prop in _properties(stream):
                    if fnmatchcase(prop, str(prop_pattern)):
                        _entry(stream, ["properties", prop]).update(copy.deepcopy(dict(prop_values)))
                        hits += 1
            if not hits:
                known = sorted({p for s in matched for p in _properties(s)})
                raise CatalogError(f"metadata for {pattern!r} names property {prop_pattern!r}, which is not a "
                                   f"property of {', '.join(s['tap_stream_id'] for s in matched)}; its properties "
                                   f"are: {_listing(known)}{_did_you_mean(str(prop_pattern), known)}")
        root_values = {k: copy.deepcopy(v) for k, v in values.items() if k != "properties"}
        for stream in matched:
            merged.setdefault(stream["tap_stream_id"], {}).update(root_values)
    for stream in streams:
        values = merged.get(stream["tap_stream_id"])
        if values is None:
            continue
        sid = stream["tap_stream_id"]
        method = values.get("replication-method")
        if method is not None and method not in REPLICATION_METHODS:
            raise CatalogError(f"metadata for {sid}: replication-method {method!r} is not one of "
                               f"{', '.join(REPLICATION_METHODS)}")
        key = values.get("replication-key")
        if key is not None:
            schema_props = _schema_properties(stream)
            if key not in schema_props:
                raise CatalogError(f"metadata for {sid}: replication-key {key!r} is not a property of the stream; "
                                   f"its properties are: {_listing(schema_props)}{_did_you_mean(str(key), schema_props)}")
            if method is None:
                values = {**values, "replication-method": "INCREMENTAL"}
        _entry(stream, []).update(values)


def _check_replication_keys(streams: list[dict[str, Any]]) -> None:
    for stream in streams:
        root = _find(stream, [])
        key = root.get("replication-key")
        if root.get("selected") and isinstance(key, str) and _find(stream, ["properties", key]).get("selected") is False:
            raise CatalogError(f"stream {stream['tap_stream_id']}: its replication-key {key!r} is not selected; "
                               "select it, or choose another key: the tap can only bookmark a property it sends")


# -- public ----------------------------------------------------------------------------------
def apply(catalog: dict[str, Any], select: Sequence[str] = (),
          metadata: Mapping[str, Mapping[str, Any]] = _EMPTY) -> dict[str, Any]:
    """A copy of ``catalog`` with ``select`` and ``metadata`` applied (see the module docstring).

    :raises CatalogError: the catalog is not ``{"streams": [...]}``; a select pattern (not an
        exclusion) or a metadata pattern matches nothing; a replication-key is not a property of
        its stream (or is deselected); or nothing ends up selected.
    """
    _streams(catalog)
    patterns = _patterns(select)
    result = copy.deepcopy(catalog)
    streams = _streams(result)
    if patterns:
        _select(streams, patterns)
    else:
        for stream in streams:
            root = _entry(stream, [])
            root["selected"] = root.get("inclusion") != "unsupported"
    _metadata(streams, metadata)
    _check_replication_keys(streams)
    if not selected_streams(result):
        ids = [s["tap_stream_id"] for s in streams]
        how = f"select {list(select)!r}" if patterns else "the catalog"
        hint = ("; select has only exclusions, add what to include first, e.g. '*.*'"
                if patterns and all(p.exclude for p in patterns) else "")
        raise CatalogError(f"nothing selected: {how} selects none of the tap's streams ({_listing(ids)}){hint}")
    return result


def selected_streams(catalog: dict[str, Any]) -> list[str]:
    """The tap_stream_ids selected at the root breadcrumb, in catalog order.

    ``selected`` decides; without it, ``selected-by-default`` (what a tap does); an
    ``inclusion: unsupported`` stream never is.
    """
    chosen = []
    for stream in _streams(catalog):
        root = _find(stream, [])
        selected = root.get("selected", root.get("selected-by-default", False))
        if selected is True and root.get("inclusion") != "unsupported":
            chosen.append(stream["tap_stream_id"])
    return chosen


def stream_names(select: Sequence[str]) -> tuple[list[str], list[str]]:
    """From ``select`` alone (no catalog): the stream ids it names literally, and the patterns whose stream part is a glob.

    Used before discovery (at DAG-parse time) to name the destination tables: glob patterns can
    only be resolved against a catalog. A literal stream that a whole-stream exclusion
    (``!stream`` or ``!stream.*``, globs allowed) removes is not named.
    """
    patterns = _patterns(select)
    whole_exclusions = [p for p in patterns if p.exclude and p.whole_stream]
    literal: list[str] = []
    globbed: list[str] = []
    for p in patterns:
        if p.exclude:
            continue
        if _GLOB_CHARS & set(p.stream):
            if p.raw not in globbed:
                globbed.append(p.raw)
        elif p.stream not in literal and not any(fnmatchcase(p.stream, x.stream) for x in whole_exclusions):
            literal.append(p.stream)
    return literal, globbed
