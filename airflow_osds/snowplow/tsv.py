"""One enriched-event line: split it, find the values PostgreSQL would refuse, decode it.

A value is valid when the ``atomic.events`` column takes it and reads it the way Snowplow
means it; then one bad line cannot fail a whole COPY batch. Empty means NULL and is always
valid, except in the four required fields (``collector_tstamp``, ``event_id``, ``v_collector``,
``v_etl``). What each kind accepts is a subset of both what the analytics SDKs decode and what
PostgreSQL's input functions parse, so both read a valid value identically:

=========  ==================================================================================
kind       accepted (anything else is an ``InvalidValue``)
=========  ==================================================================================
text       at most the column's ``VARCHAR(n)``/``CHAR(n)`` characters, no NUL character
           (PostgreSQL text cannot hold one)
int        ASCII ``[+-]digits`` within PostgreSQL ``INTEGER`` (-2147483648 … 2147483647)
float      ASCII decimal ``[+-]digits[.digits][e±digits]``, finite in ``DOUBLE PRECISION``
           (no ``NaN``/``Infinity``, no overflow, no underflow of a non-zero value to 0,
           which PostgreSQL rejects as out of range)
bool       ``1`` or ``0`` only (``true``/``false`` are not Snowplow's encoding)
tstamp     ``YYYY-MM-DD HH:MM:SS[.f]`` as Enrich writes it, or with ``T`` for the space and/or
           a trailing ``Z`` (the ISO form the SDKs print); 1–9 fraction digits; years
           0001–9999, real calendar dates, hours 00–23, seconds 00–59. Always UTC: no other
           offset is accepted, because ``TIMESTAMP`` (without time zone) ignores an offset
           instead of applying it. PostgreSQL rounds more than 6 fraction digits to the
           microsecond (half to even); :func:`parse_tstamp` rounds the same way.
uuid       ``event_id``: the canonical 8-4-4-4-12 hex form, either case
json       not checked here (the loader parses and validates the entities)
=========  ==================================================================================

Error messages follow the Scala analytics SDK's ``ValueDecoder`` (``Cannot parse key x into
integer``, ``Field x cannot be empty``, ``Field x longer than maximum allowed size n``).

:func:`invalid_values` runs on every line the loader reads, so its common case, a valid line,
is one precompiled regular expression matched over the whole line in C; only a line it rejects
(or a rare valid form it leaves to the exact checks, such as 29 February or 7–9 fraction
digits) is examined field by field. :func:`check` does the same straight on the raw line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from airflow_osds.snowplow import _json
from airflow_osds.snowplow.fields import FIELD_COUNT, FIELD_INDEX, FIELDS, Field

__all__ = [
    "EventFields",
    "FieldNumberMismatch",
    "InvalidField",
    "NotTSV",
    "ParseFailure",
    "RowDecodingError",
    "check",
    "check_event",
    "decode",
    "invalid_values",
    "parse_tstamp",
    "split",
]

_UTC = timezone.utc


# ---------------------------------------------------------------------------------------------
# Parse failures: the ``failure`` object of loader_parsing_error/jsonschema/2-0-0
# ---------------------------------------------------------------------------------------------


class ParseFailure:
    """Why a line is not an enriched event; :meth:`to_failure` is the bad row's ``failure``."""

    __slots__ = ()

    def to_failure(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class NotTSV(ParseFailure):
    """The line has no tab at all."""

    def to_failure(self) -> dict[str, Any]:
        return {"type": "NotTSV"}


@dataclass(frozen=True, slots=True)
class FieldNumberMismatch(ParseFailure):
    """The line has tabs but not 131 fields."""

    fieldCount: int  # noqa: N815 - the bad-row schema's spelling

    def to_failure(self) -> dict[str, Any]:
        return {"type": "FieldNumberMismatch", "fieldCount": self.fieldCount}


@dataclass(frozen=True, slots=True)
class RowDecodingError(ParseFailure):
    """131 fields, some of which do not decode: ``InvalidValue`` entries, in field order."""

    errors: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_failure(self) -> dict[str, Any]:
        return {"type": "RowDecodingError", "errors": [dict(e) for e in self.errors]}


class InvalidField(ValueError):
    """A field that does not decode (raised by :func:`decode`); ``errors`` holds all of the line's."""

    def __init__(self, key: str, value: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.message = message
        self.errors = errors if errors is not None else [_invalid(key, value, message)]


def _invalid(key: str, value: str, message: str) -> dict[str, Any]:
    return {"type": "InvalidValue", "key": key, "value": value, "message": message}


# ---------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------


def _strip_newline(line: str) -> str:
    if line.endswith("\n"):
        return line[:-2] if line.endswith("\r\n") else line[:-1]
    return line


def split(line: str) -> list[str] | ParseFailure:
    """The 131 fields of ``line``, or why it is not an enriched event.

    One trailing ``\\n`` or ``\\r\\n`` is removed first (a line as read from a file). A line
    with no tab is :class:`NotTSV` (as the SDKs decide: one field), any other count is
    :class:`FieldNumberMismatch`.
    """
    line = _strip_newline(line)
    parts = line.split("\t")
    n = len(parts)
    if n == FIELD_COUNT:
        return parts
    if n == 1:
        return NotTSV()
    return FieldNumberMismatch(n)


# ---------------------------------------------------------------------------------------------
# The exact, per-field checks (the authority; the fast path below only ever accepts a subset)
# ---------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TSTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z?"
)
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_NONZERO_DIGITS = frozenset("123456789")


def parse_tstamp(value: str) -> datetime:
    """A timestamp field as a timezone-aware UTC ``datetime``, as PostgreSQL's ``TIMESTAMP`` reads it.

    :raises ValueError: not one of the accepted forms (see the module docstring), or not a
        real date and time.
    """
    match = _TSTAMP_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"not a timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction = match.groups()
    # datetime() rejects day 30 of February, hour 24, second 60 and year 0.
    stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=_UTC)
    if fraction:
        if len(fraction) <= 6:
            micros = int(fraction.ljust(6, "0"))
        else:
            # PostgreSQL: fsec = rint(strtod(".fraction") * 1e6), half to even; so does round().
            micros = round(float("0." + fraction) * 1_000_000)
        try:
            stamp += timedelta(microseconds=micros)
        except OverflowError as exc:  # 9999-12-31 23:59:59.9999995 and later
            raise ValueError(f"timestamp out of range: {value!r}") from exc
    return stamp


def _text_error(f: Field, value: str) -> str | None:
    assert f.max_length is not None
    if len(value) > f.max_length:
        return f"Field {f.name} longer than maximum allowed size {f.max_length}"
    if "\x00" in value:
        return f"Field {f.name} contains a NUL character, which PostgreSQL text cannot store"
    return None


def _int_error(f: Field, value: str) -> str | None:
    if _INT_RE.fullmatch(value) is None:
        return f"Cannot parse key {f.name} into integer"
    digits = value.lstrip("+-").lstrip("0")
    if len(digits) > 10 or not _INT_MIN <= int(value) <= _INT_MAX:
        return f"Cannot parse key {f.name} into integer: out of range for PostgreSQL INTEGER"
    return None


def _float_error(f: Field, value: str) -> str | None:
    if _FLOAT_RE.fullmatch(value) is None:
        return f"Cannot parse key {f.name} into double"
    number = float(value)
    if math.isinf(number):
        return f"Cannot parse key {f.name} into double: out of range for PostgreSQL DOUBLE PRECISION"
    if number == 0.0 and not _NONZERO_DIGITS.isdisjoint(value.partition("e")[0].partition("E")[0]):
        return f"Cannot parse key {f.name} into double: underflows PostgreSQL DOUBLE PRECISION"
    return None


def _bool_error(f: Field, value: str) -> str | None:
    return None if value == "1" or value == "0" else f"Cannot parse key {f.name} into boolean"


def _tstamp_error(f: Field, value: str) -> str | None:
    try:
        parse_tstamp(value)
    except ValueError:
        return f"Cannot parse key {f.name} into datetime"
    return None


def _uuid_error(f: Field, value: str) -> str | None:
    return None if _UUID_RE.fullmatch(value) else f"Cannot parse key {f.name} into UUID"


def _json_error(f: Field, value: str) -> str | None:
    return None  # entities are parsed and validated by the loader, against Iglu


_CHECKS = {
    "text": _text_error,
    "int": _int_error,
    "float": _float_error,
    "bool": _bool_error,
    "tstamp": _tstamp_error,
    "uuid": _uuid_error,
    "json": _json_error,
}
_FIELD_CHECKS = tuple((f, _CHECKS[f.kind]) for f in FIELDS)


def _invalid_values_exact(parts: list[str]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for f, check_value in _FIELD_CHECKS:
        value = parts[f.index]
        if not value:
            if f.required:
                errors.append(_invalid(f.name, value, f"Field {f.name} cannot be empty"))
            continue
        message = check_value(f, value)
        if message is not None:
            errors.append(_invalid(f.name, value, message))
    return errors


# ---------------------------------------------------------------------------------------------
# The fast path: one regular expression for a whole valid line
# ---------------------------------------------------------------------------------------------
# Each field's pattern matches a subset of what its exact check accepts, and none matches a tab,
# so a full match means 131 fields, all valid. Left to the exact checks: exponents, a leading
# "+" or ".", 7-9 fraction digits (rounding may carry into the next second), 29 February (leap
# years), 10-digit ints, and NUL characters (tested apart: a negated one-character class is
# several times faster in `re` than a two-character one, and text is most of a line).
# Every quantifier is possessive: a field is followed by a tab and holds none, so giving back
# characters can never help, and a failing line is rejected without backtracking.

_DATE = (
    r"(?!0000)[0-9]{4}-"
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
)
_TSTAMP_FAST = _DATE + r"[ T](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?+Z?+"
_FAST = {
    "int": r"(?:-?[0-9]{1,9})?+",
    "float": r"(?:-?[0-9]{1,300}(?:\.[0-9]{1,300})?+)?+",
    "bool": r"[01]?+",
    "tstamp": f"(?:{_TSTAMP_FAST})?+",
    "uuid": r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?+",
    "json": r"[^\t]*+",
}


def _fast_pattern(f: Field) -> str:
    if f.kind == "text":
        return f"[^\\t]{{{1 if f.required else 0},{f.max_length}}}+"
    pattern = _FAST[f.kind]
    if f.required:  # the optional group, made mandatory
        assert pattern.startswith("(?:") and pattern.endswith(")?+")
        pattern = pattern[:-2]
    return pattern


#: The fields :class:`EventFields` names; each is a group of the whole-line pattern.
_NAMED = ("contexts", "unstruct_event", "derived_contexts", "event_id", "collector_tstamp", "event_fingerprint")
_JSON_FIELDS = frozenset(("contexts", "unstruct_event", "derived_contexts"))


def _line_pattern() -> str:
    """The whole-line pattern: the named fields and the runs of other fields between them are groups.

    A run ``a0`` … ``a3`` holds consecutive non-JSON fields; joined by tabs they are the line
    without its JSON fields. Groups do not change what matches.
    """
    out: list[str] = []
    run: list[str] = []
    for f in FIELDS:
        pattern = _fast_pattern(f)
        if f.name in _NAMED:
            pattern = f"(?P<{f.name}>{pattern})"
        if f.name in _JSON_FIELDS:
            if run:
                out.append(f"(?P<a{len(out) // 2}>" + "\t".join(run) + ")")
                run = []
            out.append(pattern)
        else:
            run.append(pattern)
    out.append(f"(?P<a{len(out) // 2}>" + "\t".join(run) + ")")
    return "\t".join(out)


def _line_ok(line: str) -> re.Match[str] | None:
    """``fullmatch`` of the whole-line pattern; compiled on first use (≈20 ms), keeping imports cheap.

    The first call rebinds the module global to the compiled pattern's own ``fullmatch``, so
    later calls go straight to C.
    """
    global _line_ok
    _line_ok = re.compile(_line_pattern()).fullmatch
    return _line_ok(line)


def invalid_values(parts: list[str]) -> list[dict[str, Any]]:
    """Every field of a split line that does not decode, as Snowplow's ``InvalidValue`` objects.

    ``[]`` for a valid line. ``parts`` is what :func:`split` returned (131 fields). Each entry is
    ``{"type": "InvalidValue", "key": <field>, "value": <raw value>, "message": <why>}``, in field
    order, ready for :class:`RowDecodingError`.
    """
    line = "\t".join(parts)
    if "\x00" not in line and _line_ok(line) is not None:
        return []
    return _invalid_values_exact(parts)


def check(line: str) -> list[str] | ParseFailure:
    """:func:`split` and :func:`invalid_values` in one: the fields of a valid line, or its failure.

    The fast path matches the raw line once and splits it only then; a failing line gets the
    exact diagnosis (:class:`NotTSV`, :class:`FieldNumberMismatch` or :class:`RowDecodingError`).
    """
    line = _strip_newline(line)
    if "\x00" not in line and _line_ok(line) is not None:
        return line.split("\t")
    parts = split(line)
    if isinstance(parts, ParseFailure):
        return parts
    errors = _invalid_values_exact(parts)
    if errors:
        return RowDecodingError(tuple(errors))
    return parts


_JSON_INDEXES = tuple(FIELD_INDEX[name] for name in ("contexts", "unstruct_event", "derived_contexts"))


class EventFields(NamedTuple):
    """What the loader needs of a valid line: :func:`check_event`."""

    atomic: str  #: the 128 fields other than the three JSON ones, tab-separated, in field order
    contexts: str
    unstruct_event: str
    derived_contexts: str
    event_id: str
    collector_tstamp: str
    event_fingerprint: str


def check_event(line: str) -> EventFields | ParseFailure:
    """:func:`check` for the loader: the fields it uses, or the line's failure.

    A valid line is matched once and never split: 131 field strings cost twice what the match
    does. A line the fast pattern leaves to the exact checks is split and checked by :func:`check`.
    """
    line = _strip_newline(line)
    if "\x00" not in line:
        match = _line_ok(line)
        if match is not None:
            return EventFields("\t".join(match.group("a0", "a1", "a2", "a3")), *match.group(*_NAMED))
    parts = check(line)
    if isinstance(parts, ParseFailure):
        return parts
    atomic = [p for i, p in enumerate(parts) if i not in _JSON_INDEXES]
    return EventFields("\t".join(atomic), *(parts[FIELD_INDEX[name]] for name in _NAMED))


# ---------------------------------------------------------------------------------------------
# Decoding to Python values (tests, bad-row payloads; not the load path)
# ---------------------------------------------------------------------------------------------


def _decode_json(f: Field, value: str) -> Any:
    try:
        return _json.loads(value)
    except ValueError as exc:
        message = f"Cannot parse key {f.name} into JSON: {exc}"
        raise InvalidField(f.name, value, message) from exc


_CONVERT = {
    "text": lambda f, v: v,
    "uuid": lambda f, v: v,
    "int": lambda f, v: int(v),
    "float": lambda f, v: float(v),
    "bool": lambda f, v: v == "1",
    "tstamp": lambda f, v: parse_tstamp(v),
    "json": _decode_json,
}
_FIELD_CONVERTERS = tuple((f.name, f.index, _CONVERT[f.kind], f) for f in FIELDS)


def decode(parts: list[str]) -> dict[str, Any]:
    """The typed event: all 131 fields by name.

    Timestamps are timezone-aware UTC ``datetime``, ints ``int``, floats ``float``, booleans
    ``bool``, ``event_id`` a ``str``, empty fields ``None``, and the three JSON fields parsed
    (``None`` when empty). Only the JSON syntax is checked, not the self-describing envelope.

    :raises InvalidField: the first field that does not decode (``.errors`` has all of them).
    """
    if len(parts) != FIELD_COUNT:
        raise ValueError(f"expected {FIELD_COUNT} fields, got {len(parts)}")
    errors = invalid_values(parts)
    if errors:
        first = errors[0]
        raise InvalidField(first["key"], first["value"], first["message"], errors)
    return {name: (convert(f, parts[i]) if parts[i] else None) for name, i, convert, f in _FIELD_CONVERTERS}
