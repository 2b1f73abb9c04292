"""The entities of an enriched event: its ``contexts``, ``derived_contexts`` and ``unstruct_event`` fields, validated.

Each of these TSV fields holds a self-describing JSON envelope — ``contexts/jsonschema/1-0-*``
(an array of ``{schema, data}``) or ``unstruct_event/jsonschema/1-0-*`` (one ``{schema, data}``).
:func:`extract` parses one field, validates the envelope and every entity against its schema
(through a :class:`~airflow_osds.snowplow.iglu.Resolver`), and returns the valid entities and
the failures, the latter already shaped as entries of ``loader_iglu_error/jsonschema/2-0-1``'s
``failure`` array. Snowplow's loader turns an event with any failure into one bad row (all
failures listed, the event as payload); that decision is the loader's.

Failure kinds, all allowed by 2-0-1:

* the schema cannot be found → ``{"schemaKey", "error": {"error": "ResolutionError", "lookupHistory"}}``;
* the data is invalid → ``{"schemaKey", "error": {"error": "ValidationError", "dataReports"}}``;
* the schema itself is invalid → ``{"schemaKey", "error": {"error": "ValidationError", "schemaIssues"}}``;
* the field is not JSON at all → ``WrongType``: ``{"schemaKey": <the field's envelope, e.g.
  iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0>, "value": <the raw text>,
  "expected": "..."}``. We chose ``WrongType`` because its ``value`` keeps the unparsable
  text: the bad row's ``payload`` cannot (2-0-1 types ``payload.contexts`` as an object). Snowplow
  itself rejects such an event earlier, as ``loader_parsing_error`` (RowDecodingError).
* an envelope of the wrong schema (``unstruct_event`` in ``contexts``) → ``WrongType`` with the
  parsed value and the expected criterion.

JSON's non-standard ``NaN``/``Infinity`` literals are invalid JSON here, as for the JVM parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from airflow_osds.snowplow.iglu import DataValidationError, IgluError, Resolver, SchemaCriterion, SchemaKey
from airflow_osds.snowplow.tables import entity_canonical, entity_hash_text

__all__ = [
    "ENVELOPES",
    "ENTITY_FIELDS",
    "EntityMemo",
    "Entity",
    "extract",
    "extract_event",
    "number_occurrences",
]

_CONTEXTS = SchemaCriterion("com.snowplowanalytics.snowplow", "contexts", "jsonschema", 1, 0, None)
_UNSTRUCT = SchemaCriterion("com.snowplowanalytics.snowplow", "unstruct_event", "jsonschema", 1, 0, None)
#: The envelope each entity field must carry.
ENVELOPES: dict[str, SchemaCriterion] = {
    "contexts": _CONTEXTS,
    "derived_contexts": _CONTEXTS,
    "unstruct_event": _UNSTRUCT,
}
#: The entity fields in the order Snowplow's loader shreds them (``transform.shredEvent``).
ENTITY_FIELDS = ("contexts", "derived_contexts", "unstruct_event")


class Entity(NamedTuple):
    """One valid entity of an event (a named tuple: cheap to make, one per entity per event).

    :param field: the TSV field it came from.
    :param occurrence: how many identical entities (same schema and data) precede it on the
        event; it makes repeats distinct rows (see :mod:`airflow_osds.snowplow.tables`).
    :param hash: its ``osds_entity_hash``.
    :param canonical: :func:`~airflow_osds.snowplow.tables.entity_canonical` of it, the same text
        for the same schema and data (a cache key for what is derived from the data alone).
    """

    key: SchemaKey
    data: Any
    field: str
    occurrence: int = 0
    hash: str = ""
    canonical: str = ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> tuple[Any, bool]:
    """The JSON value, and whether msgspec read it (then every number in it is finite).

    msgspec is ≈2× faster on the loader's hot path. Where it refuses the text (a lone
    surrogate escape, a number out of float range) the standard parser decides, so what is
    accepted, and how, stays the standard library's.
    """
    try:
        return _fast_loads(text), True
    except ValueError:
        return json.loads(text, parse_constant=_reject_constant), False


def _fast_loads(text: str) -> Any:
    global _fast_loads
    try:
        import msgspec.json
    except ImportError:  # pragma: no cover - msgspec comes with Airflow
        _fast_loads = _refuse
    else:
        _fast_loads = msgspec.json.Decoder().decode
    return _fast_loads(text)


def _refuse(text: str) -> Any:
    raise ValueError("no fast JSON parser")


def _envelope_key(criterion: SchemaCriterion) -> str:
    return f"iglu:{criterion.vendor}/{criterion.name}/{criterion.format}/1-0-0"


def _wrong_type(criterion: SchemaCriterion, value: Any, expected: str) -> dict[str, Any]:
    return {"schemaKey": _envelope_key(criterion), "value": value, "expected": expected}


def extract(field: str, raw: str | None, resolver: Resolver) -> tuple[list[Entity], list[dict[str, Any]]]:
    """Parse and validate one entity field: ``(entities, failures)``.

    An empty field has neither. Entities are in field order; identical repeats are numbered
    within the field (use :func:`extract_event` to number them across the event's fields).

    :raises KeyError: ``field`` is not one of :data:`ENTITY_FIELDS`.
    """
    entities, failures = _extract(field, raw, resolver, {})
    return number_occurrences(entities), failures


def _extract(
    field: str, raw: str | None, resolver: Resolver, seen: EntityMemo
) -> tuple[list[Entity], list[dict[str, Any]]]:
    """:func:`extract` without the numbering: each entity has its first-occurrence hash."""
    criterion = ENVELOPES[field]
    if raw is None or raw == "":
        return [], []
    try:
        document, finite = _loads(raw)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        return [], [_wrong_type(criterion, raw, f"self-describing JSON ({criterion.uri}); invalid JSON: {exc}")]
    try:
        envelope_key = resolver.self_describing_key(document)
    except IgluError as exc:
        return [], [exc.failure()]
    if not criterion.matches(envelope_key):
        return [], [_wrong_type(criterion, document, f"a {field} envelope, {criterion.uri}; got {envelope_key.uri}")]
    payload = document["data"]
    try:
        resolver.validate(envelope_key, payload)
    except IgluError as exc:
        return [], [exc.failure()]
    items = payload if field != "unstruct_event" else [payload]
    entities: list[Entity] = []
    failures: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        # The envelope's schema has checked each item is {"schema": <iglu pattern>, "data"}.
        try:
            key = SchemaKey.parse(item["schema"])
        except ValueError as exc:
            path = f"$[{index}].schema" if field != "unstruct_event" else "$.schema"
            report = {"message": f"{path}: {exc}", "path": path, "keyword": "pattern", "targets": [item["schema"]]}
            failures.append(DataValidationError(envelope_key, [report]).failure())
            continue
        data = item["data"]
        try:
            canonical = entity_canonical(key, data, finite=finite)
        except ValueError:  # a number past a double's range (1e999), which the standard parser reads as inf
            failures.append(_out_of_range(key, raw))
            continue
        # Validity and hash depend on the canonical text alone: an entity repeated inside field
        # texts that differ (one spiders-and-robots context beside ever-new yauaa ones) is
        # validated and hashed once per memo.
        known = seen.get(canonical)
        if known is None:
            try:
                resolver.validate(key, data)
            except IgluError as exc:
                known = exc.failure()
            else:
                known = entity_hash_text(canonical)
            seen[canonical] = known
        if isinstance(known, dict):
            failures.append(known)
            continue
        entities.append(Entity(key, data, field, 0, known, canonical))
    return entities, failures


def _out_of_range(key: SchemaKey, raw: str) -> dict[str, Any]:
    # The value is the field's text: the parsed data holds an infinity, which JSON cannot write.
    return {"schemaKey": key.uri, "value": raw,
            "expected": "numbers within a double's range (one is not: it can be neither hashed nor stored)"}


def number_occurrences(entities: Iterable[Entity]) -> list[Entity]:
    """Number identical entities (same schema URI and data) in order and set their hashes."""
    counts: dict[str, int] = {}
    numbered = []
    for entity in entities:
        canonical = entity.canonical or entity_canonical(entity.key, entity.data)
        occurrence = counts.get(canonical, 0)
        counts[canonical] = occurrence + 1
        if occurrence == 0 and entity.occurrence == 0 and entity.hash and entity.canonical:
            numbered.append(entity)  # numbered already, as a first occurrence (extract gave its hash)
            continue
        numbered.append(Entity(entity.key, entity.data, entity.field, occurrence, entity_hash_text(canonical, occurrence),
                               canonical))
    return numbered


#: What :func:`extract_event` keeps per distinct field text: ``{(field, raw): (entities, failures)}``.
FieldMemo = dict[tuple[str, "str | None"], tuple[list[Entity], list[dict[str, Any]]]]
#: What it keeps per distinct entity: its canonical text → its hash (valid) or its failure (invalid).
EntityMemo = dict[str, "str | dict[str, Any]"]


def extract_event(
    fields: Mapping[str, str | None],
    resolver: Resolver,
    memo: FieldMemo | None = None,
    seen: EntityMemo | None = None,
) -> tuple[list[Entity], list[dict[str, Any]]]:
    """All entities of one event (``contexts``, ``derived_contexts``, ``unstruct_event``) and all failures.

    Identical entities are numbered across the three fields, so an entity sent both as a
    context and as a derived context stays two rows. Missing fields count as empty.

    :param memo: a dict kept across the events of one batch: a field text seen before (the
        derived contexts of one user agent, the contexts of a page's pings) is parsed and
        validated once. It holds every distinct text: give each batch a new one.
    :param seen: the same for distinct entities (an :data:`EntityMemo`), which field texts
        that differ may share.
    """
    if seen is None:
        seen = {}
    entities: list[Entity] = []
    failures: list[dict[str, Any]] = []
    for field in ENTITY_FIELDS:
        raw = fields.get(field)
        if memo is None:
            found, failed = _extract(field, raw, resolver, seen)
        else:
            cached = memo.get((field, raw))
            if cached is None:
                cached = memo[(field, raw)] = _extract(field, raw, resolver, seen)
            found, failed = cached
        entities.extend(found)
        failures.extend(failed)
    return number_occurrences(entities), failures
