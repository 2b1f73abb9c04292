"""Self-describing bad rows, shaped as the Snowplow Postgres Loader writes them.

Three kinds, from ``com.snowplowanalytics.snowplow.badrows`` in Iglu Central:

* ``loader_parsing_error/jsonschema/2-0-0`` — the line is not an enriched event (not TSV, wrong
  field count, values that do not decode); the payload is the raw line.
* ``loader_iglu_error/jsonschema/2-0-1`` — an entity (context, derived context, self-describing
  event) whose schema cannot be resolved, that does not validate, or whose JSON is not an entity
  at all; the payload is the event as JSON (:func:`event_payload`).
* ``loader_runtime_error/jsonschema/1-0-1`` — the database refused the event; the payload is the
  event as JSON and the failure the database's message.

Every bad row is ``{"schema": "iglu:...", "data": {"processor": ..., "failure": ..., "payload": ...}}``
with ``processor = {"artifact": "airflow-osds", "version": airflow_osds.__version__}``.

**JSON that does not parse in a JSON field.** Snowplow's own analytics SDKs decode the JSON
fields while reading the line, so for them such a line is a *parsing* error (``InvalidValue`` on
``contexts``). This loader validates JSON fields with the entities, after the line has been
accepted, so it reports them with the other entity problems as a ``loader_iglu_error``. Of the
failure kinds that schema allows, the one that describes it is **WrongType** (``{schemaKey,
value, expected}``: "JSON type mismatch against schema"): the field holds a JSON *string* (the
raw text, kept whole in ``value``) where the envelope schema named in ``schemaKey`` expects an
object. See :func:`invalid_json`. In the payload the field is ``null`` — the 2-0-1 payload only
allows an object or null there — and the raw text lives in the failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_osds import __version__
from airflow_osds.snowplow import _json
from airflow_osds.snowplow.fields import ATOMIC_FIELDS, FIELD_COUNT, FIELD_INDEX, JSON_FIELDS
from airflow_osds.snowplow.tsv import parse_tstamp

__all__ = [
    "ENVELOPES",
    "IGLU_ERROR",
    "PARSING_ERROR",
    "PROCESSOR",
    "RUNTIME_ERROR",
    "data_report",
    "data_reports_from_jsonschema",
    "event_payload",
    "iglu_error",
    "invalid_json",
    "lookup",
    "parsing_error",
    "resolution_error",
    "runtime_error",
    "validation_error",
]

_BADROWS = "iglu:com.snowplowanalytics.snowplow.badrows"
PARSING_ERROR = f"{_BADROWS}/loader_parsing_error/jsonschema/2-0-0"
IGLU_ERROR = f"{_BADROWS}/loader_iglu_error/jsonschema/2-0-1"
RUNTIME_ERROR = f"{_BADROWS}/loader_runtime_error/jsonschema/1-0-1"
PROCESSOR: dict[str, str] = {"artifact": "airflow-osds", "version": __version__}

# The envelope schema each JSON field must carry: the schemaKey of an invalid_json failure.
ENVELOPES: dict[str, str] = {
    "contexts": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
    "derived_contexts": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
    "unstruct_event": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
}
_MESSAGE_MAX = 256  # lookupHistory error messages (loader_iglu_error 2-0-1)


def _bad_row(schema: str, failure: Any, payload: Any) -> dict[str, Any]:
    return {"schema": schema, "data": {"processor": dict(PROCESSOR), "failure": failure, "payload": payload}}


# ---------------------------------------------------------------------------------------------
# loader_parsing_error
# ---------------------------------------------------------------------------------------------


def parsing_error(line: str, failure: Mapping[str, Any]) -> dict[str, Any]:
    """``loader_parsing_error/2-0-0`` for a raw line; ``failure`` is ``ParseFailure.to_failure()``."""
    return _bad_row(PARSING_ERROR, dict(failure), line)


# ---------------------------------------------------------------------------------------------
# loader_iglu_error
# ---------------------------------------------------------------------------------------------


def iglu_error(payload: Mapping[str, Any], failures: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``loader_iglu_error/2-0-1``: an event (see :func:`event_payload`) and what failed, one entry each."""
    entries = [dict(f) for f in failures]
    if not entries:
        raise ValueError("a loader_iglu_error needs at least one failure")
    return _bad_row(IGLU_ERROR, entries, dict(payload))


def lookup(
    repository: str,
    errors: Iterable[Mapping[str, Any]] = ({"error": "NotFound"},),
    *,
    attempts: int = 1,
    last_attempt: datetime | None = None,
) -> dict[str, Any]:
    """One ``lookupHistory`` entry: what one repository answered.

    ``errors`` are ``{"error": "NotFound" | "RepoFailure" | "ClientFailure", "message"?: ...}``;
    a message is cut to the schema's 256 characters.
    """
    stamp = (last_attempt or datetime.now(timezone.utc)).astimezone(timezone.utc)
    entries = []
    for error in errors:
        entry = {"error": error["error"]}
        if error.get("message") is not None:
            entry["message"] = str(error["message"])[:_MESSAGE_MAX]
        entries.append(entry)
    if not entries:
        raise ValueError("a lookupHistory entry needs at least one error")
    return {
        "repository": repository,
        "errors": entries,
        "attempts": attempts,
        "lastAttempt": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def resolution_error(schema_key: str, lookup_history: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The failure entry for a schema no repository has (``ResolutionError``; see :func:`lookup`)."""
    history = [dict(h) for h in lookup_history]
    if not history:
        raise ValueError("a ResolutionError needs at least one lookupHistory entry")
    return {"schemaKey": schema_key, "error": {"error": "ResolutionError", "lookupHistory": history}}


def data_report(message: str, path: str | None = "$", keyword: str | None = None, targets: list[Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """One ``dataReports`` entry of a ``ValidationError``: where the datum fails and why."""
    return {"message": message, "path": path, "keyword": keyword, "targets": targets}


def _json_path(error: Any) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def data_reports_from_jsonschema(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """``dataReports`` from ``jsonschema`` ``ValidationError`` objects (``Draft4Validator.iter_errors``).

    ``path`` is a JSONPath into the entity's data (``$.items[0].sku``), ``keyword`` the failing
    JSON Schema keyword, ``targets`` what the keyword names, as Iglu's Scala client reports
    them: the missing properties for ``required``, the unexpected ones for
    ``additionalProperties``, the allowed types for ``type``, the allowed values for ``enum``.
    Sorted by path, then keyword, so a report is stable.
    """
    reports = []
    for error in errors:
        keyword = error.validator
        value = error.validator_value
        targets: list[Any] | None
        if keyword == "required":
            targets = [p for p in value if isinstance(error.instance, dict) and p not in error.instance]
        elif keyword == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            targets = sorted(k for k in error.instance if k not in allowed)
        elif keyword == "type":
            targets = list(value) if isinstance(value, list) else [value]
        elif keyword == "enum":
            targets = [v if isinstance(v, str) else _json.dumps(v) for v in value]
        else:
            targets = [value if isinstance(value, str) else _json.dumps(value)]
        reports.append(data_report(error.message, _json_path(error), keyword, targets))
    reports.sort(key=lambda r: (r["path"] or "", r["keyword"] or "", r["message"]))
    return reports


def validation_error(schema_key: str, data_reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The failure entry for an entity that does not validate against its schema (``ValidationError``)."""
    reports = [dict(r) for r in data_reports]
    if not reports:
        raise ValueError("a ValidationError needs at least one data report")
    for report in reports:
        missing = {"message", "path", "keyword", "targets"} - report.keys()
        if missing:
            raise ValueError(f"a data report needs {sorted(missing)}")
    return {"schemaKey": schema_key, "error": {"error": "ValidationError", "dataReports": reports}}


def invalid_json(field: str, value: str, message: str) -> dict[str, Any]:
    """The failure entry for a JSON field whose text is not the JSON entity envelope it must be.

    A ``WrongType`` entry (see the module docstring for why): ``schemaKey`` is the envelope the
    field must carry (:data:`ENVELOPES`), ``value`` the raw text, ``expected`` says what was
    expected and, from ``message``, why the text is not it (the parser's error, or "an array,
    not an object").
    """
    if field not in ENVELOPES:
        raise ValueError(f"{field!r} is not a JSON field; expected one of {sorted(ENVELOPES)}")
    return {
        "schemaKey": ENVELOPES[field],
        "value": value,
        "expected": f"field {field}: a self-describing JSON object ({ENVELOPES[field]}); {message}",
    }


# ---------------------------------------------------------------------------------------------
# loader_runtime_error
# ---------------------------------------------------------------------------------------------


def runtime_error(payload: Mapping[str, Any], message: str) -> dict[str, Any]:
    """``loader_runtime_error/1-0-1``: an event (see :func:`event_payload`) the database refused."""
    return _bad_row(RUNTIME_ERROR, str(message), dict(payload))


# ---------------------------------------------------------------------------------------------
# The event as JSON
# ---------------------------------------------------------------------------------------------


def _iso(value: str) -> str | None:
    try:
        stamp = parse_tstamp(value)
    except ValueError:
        return None
    return stamp.isoformat(timespec="microseconds" if stamp.microsecond % 1000 else "milliseconds").replace("+00:00", "Z")  # fmt: skip


def _int(value: str) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None


def _float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _bool(value: str) -> bool | None:
    return True if value == "1" else False if value == "0" else None


def _text(max_length: int) -> Any:
    return lambda value: value[:max_length]


_ENCODERS = {
    "tstamp": lambda f: _iso,
    "int": lambda f: _int,
    "float": lambda f: _float,
    "bool": lambda f: _bool,
    "uuid": lambda f: _text(36),
    "text": lambda f: _text(f.max_length),
}
_PAYLOAD_ATOMIC = tuple((f.name, f.index, _ENCODERS[f.kind](f), f.required) for f in ATOMIC_FIELDS)
_PAYLOAD_JSON = tuple((name, FIELD_INDEX[name]) for name in JSON_FIELDS)


def event_payload(parts: list[str]) -> dict[str, Any]:
    """The enriched event as the JSON payload of ``loader_iglu_error``/``loader_runtime_error``.

    The 128 atomic fields typed as the payload schema has them (timestamps as RFC 3339 UTC
    strings, ints, numbers, booleans, strings; empty fields ``null``), then ``contexts``,
    ``unstruct_event`` and ``derived_contexts`` parsed. It validates against the 2-0-1 payload
    schema for any line that passed ``tsv.invalid_values``; that is what it is for. Given another
    line it still validates but loses data: a value that does not decode becomes ``null`` (the
    four required fields keep their raw text, as the schema wants a string there) and an
    over-long one is cut to its column's size. A JSON field whose text does not parse as a JSON
    object is ``null`` here: report its raw text with :func:`invalid_json`.
    """
    if len(parts) != FIELD_COUNT:
        raise ValueError(f"expected {FIELD_COUNT} fields, got {len(parts)}")
    payload: dict[str, Any] = {}
    for name, index, encode, required in _PAYLOAD_ATOMIC:
        value = parts[index]
        encoded = encode(value) if value else None
        if encoded is None and required:  # the schema wants a string here, whatever it holds
            encoded = value[:100]
        payload[name] = encoded
    for name, index in _PAYLOAD_JSON:
        value = parts[index]
        parsed = None
        if value:
            try:
                parsed = _json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                parsed = None
        payload[name] = parsed
    return payload
