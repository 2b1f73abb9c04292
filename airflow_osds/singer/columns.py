"""Singer stream schemas as PostgreSQL columns, and record values as ``COPY`` text (no Airflow imports).

A property's JSON Schema type decides its column (the first non-null type wins; several, or an
object or array, make ``JSONB``):

========================  ===================  =========================================
JSON Schema               column               COPY text
========================  ===================  =========================================
``integer``               ``BIGINT``           the integer (out of 64-bit range: unfit)
``number``                ``NUMERIC``          the number as JSON writes it
``boolean``               ``BOOLEAN``          ``t`` / ``f``
``string`` (date-time)    ``TIMESTAMPTZ``      as given (RFC 3339; PostgreSQL parses it)
``string`` (date, time)   ``DATE`` / ``TIME``  as given
``string``                ``TEXT``             the text, escaped for COPY's text format
anything else             ``JSONB``            its JSON
========================  ===================  =========================================

A value of another type than its column's (a schema allowing several) is stored as its JSON
text in a ``TEXT`` or ``JSONB`` column; a value that cannot be stored (a NUL character, an
integer beyond 64 bits) raises :class:`Unfit`, which the target turns into a reject.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["Column", "Converter", "Unfit", "columns_of", "converters", "copy_line", "copy_tail", "json_text", "line_function", "quote_ident", "strict_converters"]

_INT64 = (-(2**63), 2**63 - 1)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_FORMATS = {"date-time": "TIMESTAMPTZ", "date": "DATE", "time": "TIME"}


class Unfit(ValueError):
    """A value its column cannot hold."""


_ENCODE: Callable[[Any], bytes] | None = None


def json_text(value: Any) -> str:
    """JSON text of a decoded value; numbers decoded as ``Decimal`` (the target's) stay numbers, digit for digit."""
    global _ENCODE
    if _ENCODE is None:
        import msgspec.json

        _ENCODE = msgspec.json.Encoder(decimal_format="number").encode
    return _ENCODE(value).decode()


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json_text(value)
    if "\x00" in text:
        raise Unfit("text with a NUL character (PostgreSQL text cannot hold it)")
    # Most values need no escape; four substring tests are much cheaper than a translate.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def _bigint(value: Any) -> str:
    if type(value) is int and -9223372036854775808 <= value <= 9223372036854775807:  # the common case first
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if (isinstance(value, float) and value.is_integer()) or (
                isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value()):
            value = int(value)
        else:
            raise Unfit(f"an integer, got {json_text(value)}")
    if not _INT64[0] <= value <= _INT64[1]:
        raise Unfit(f"a 64-bit integer, got {value}")
    return str(value)


def _numeric(value: Any) -> str:
    # The target decodes JSON numbers with a fraction as Decimal: written digit for digit, as the tap sent them.
    if type(value) is int or (type(value) is Decimal and value.is_finite()):
        return str(value)
    if type(value) is float and value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
        return repr(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise Unfit(f"a number, got {json_text(value)}")
    if value != value or value in (float("inf"), float("-inf")) or isinstance(value, Decimal):
        raise Unfit("a finite number")
    return repr(value) if isinstance(value, float) else str(value)


def _boolean(value: Any) -> str:
    if not isinstance(value, bool):
        raise Unfit(f"a boolean, got {json_text(value)}")
    return "t" if value else "f"


def _as_given(value: Any) -> str:
    if not isinstance(value, str):
        raise Unfit(f"a string, got {json_text(value)}")
    return _text(value)


_CONVERTERS: dict[str, Callable[[Any], str]] = {
    "BIGINT": _bigint,
    "NUMERIC": _numeric,
    "BOOLEAN": _boolean,
    "TIMESTAMPTZ": _as_given,
    "DATE": _as_given,
    "TIME": _as_given,
    "TEXT": _text,
    "JSONB": lambda value: _text(json_text(value)),
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql_type: str

    @property
    def convert(self) -> Callable[[Any], str]:
        return _CONVERTERS[self.sql_type]


def _types(prop: Mapping[str, Any]) -> list[str]:
    kinds = prop.get("type")
    if kinds is None and isinstance(prop.get("anyOf"), list):
        found: list[str] = []
        for option in prop["anyOf"]:
            found += [t for t in _types(option) if t not in found]
        return found
    if isinstance(kinds, str):
        return [kinds]
    return [k for k in kinds if isinstance(k, str)] if isinstance(kinds, list) else []


def sql_type(prop: Mapping[str, Any]) -> str:
    """The column type of one property's schema (see the module docstring)."""
    kinds = [k for k in _types(prop) if k != "null"]
    if len(kinds) != 1:
        return "JSONB"
    kind = kinds[0]
    if kind == "string":
        fmt = prop.get("format") or next((o.get("format") for o in prop.get("anyOf") or [] if o.get("format")), None)
        return _FORMATS.get(fmt, "TEXT")
    return {"integer": "BIGINT", "number": "NUMERIC", "boolean": "BOOLEAN"}.get(kind, "JSONB")


def columns_of(schema: Mapping[str, Any]) -> list[Column]:
    """The columns of a SCHEMA message's ``schema``, in property order.

    :raises ValueError: the schema has no ``properties`` object, or a property name PostgreSQL
        cannot take (empty, or longer than 63 bytes).
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        raise ValueError("the stream's schema has no 'properties' object")
    out = []
    for name, prop in properties.items():
        if not name or len(name.encode()) > 63:
            raise ValueError(f"property name {name!r} cannot be a PostgreSQL column (1–63 bytes)")
        out.append(Column(name, sql_type(prop if isinstance(prop, Mapping) else {})))
    return out


#: ``(property, converter, nullable)``: how :func:`copy_line` renders one column.
Converter = tuple[str, Callable[[Any], str], bool]


def converters(columns: Sequence[Column]) -> list[Converter]:
    """Lenient converters: any value its column can hold (the schema is checked by a validator)."""
    return [(c.name, c.convert, True) for c in columns]


def _string(value: Any) -> str:
    if type(value) is not str:
        raise Unfit(f"a string, got {json_text(value)}")
    return _text(value)


def _date_time(value: Any) -> str:
    if type(value) is not str or not _DATE_TIME(value):
        raise Unfit(f"an RFC 3339 date-time, got {json_text(value)}")
    return _text(value)


def _kind(check: type, label: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, check):
            raise Unfit(f"{label}, got {json_text(value)}")
        return _text(json_text(value))

    return convert


# fastjsonschema's date-time pattern, so both paths accept the same values.
_DATE_TIME = re.compile(
    r"^\d{4}-[01]\d-[0-3]\d[tT][0-2]\d:[0-5]\d:[0-5]\d(?:\.\d+)?(?:[+-][0-2]\d:[0-5]\d|[+-][0-2]\d[0-5]\d|[zZ])\Z"
).match
_STRICT: dict[tuple[str, str | None], Callable[[Any], str]] = {
    ("integer", None): _bigint, ("number", None): _numeric, ("boolean", None): _boolean,
    ("string", None): _string, ("string", "date-time"): _date_time,
    ("object", None): _kind(dict, "an object"), ("array", None): _kind(list, "an array"),
}
_PLAIN_PROPERTY = {"type", "format", "description", "title", "examples"}
_PLAIN_SCHEMA = {"type", "properties", "$schema", "description", "title", "additionalProperties"}


def strict_converters(schema: Mapping[str, Any]) -> list[Converter] | None:
    """Converters that check all the schema says, when it says only types, nullability and ``date-time``.

    That is the shape taps emit; then no JSON Schema validator runs per record. ``None`` when
    the schema says more (``required``, ``enum``, ``maxLength``, ``anyOf``, another format…).
    """
    if set(schema) - _PLAIN_SCHEMA or schema.get("additionalProperties", True) is not True:
        return None
    if schema.get("type", "object") not in ("object", ["object"], ["null", "object"], ["object", "null"]):
        return None
    out: list[Converter] = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping) or set(prop) - _PLAIN_PROPERTY:
            return None
        kinds = prop.get("type")
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(kinds, list):
            return None
        real = [k for k in kinds if k != "null"]
        convert = _STRICT.get((real[0], prop.get("format"))) if len(real) == 1 else None
        if convert is None or (prop.get("format") and real[0] != "string"):
            return None
        out.append((name, convert, "null" in kinds))
    return out


# Inline fast paths of the converters the generated line functions know, as expressions of `v` that
# stand for `convert(v)` when the condition holds (the converter itself runs otherwise, and decides).
_INLINE: dict[Callable[[Any], str], tuple[str, str]] = {
    _bigint: ("type(v) is int and -9223372036854775808 <= v <= 9223372036854775807", "str(v)"),
    _numeric: ("type(v) is int or type(v) is Decimal and v.is_finite()", "str(v)"),
    # isprintable() is false for tab, newline, CR, NUL (and other characters the converter then decides on).
    _string: ("type(v) is str and v.isprintable() and '\\\\' not in v", "v"),
    _date_time: ("type(v) is str and _DATE_TIME(v) is not None", "v"),
}


def line_function(converters: Sequence[Converter]) -> Callable[[Mapping[str, Any], str], str]:
    """:func:`copy_line` for these converters, generated once (a stream's SCHEMA): the same lines and
    errors, without the per-column loop and with the common values converted inline.

    The generated ``line(record, tail)`` takes the rest of the line ready-made (the extra columns,
    tab-separated, and the newline: :func:`copy_tail`), which is the same for nearly every record.
    """
    names: dict[str, Any] = {"Unfit": Unfit, "Decimal": Decimal, "_DATE_TIME": _DATE_TIME}
    body = ["def line(record, tail):", "    get = record.get"]
    for i, (name, convert, nullable) in enumerate(converters):
        names[f"c{i}"], names[f"n{i}"] = convert, name
        fast = _INLINE.get(convert)
        null = "'\\\\N'" if nullable else f"_not_null(n{i}, record)"
        body += [f"    v = get(n{i})",
                 f"    if v is None: f{i} = {null}"]
        if fast:
            body += [f"    elif {fast[0]}: f{i} = {fast[1]}"]
        body += ["    else:",
                 f"        try: f{i} = c{i}(v)",
                 f"        except Unfit as exc: raise Unfit(f'{{n{i}}}: {{exc}}') from None"]
    # An f-string of the fields: cheaper than joining a tuple of them.
    fields = "".join(f"{{f{i}}}\\t" for i in range(len(converters)))
    body.append(f"    return f'{fields}{{tail}}'")
    names["_not_null"] = _not_null
    exec("\n".join(body), names)  # noqa: S102 - generated from our own templates, no user text in the code
    return names["line"]  # type: ignore[no-any-return]


def copy_tail(extra: Sequence[str]) -> str:
    """What follows a record's columns on its ``COPY`` line: ``extra`` tab-separated, and the newline."""
    return "\t".join(extra) + "\n"


def _not_null(name: str, record: Mapping[str, Any]) -> str:
    if name in record:
        raise Unfit(f"{name}: not null")
    return "\\N"


def copy_line(converters: Sequence[Converter], record: Mapping[str, Any], extra: Sequence[str]) -> str:
    """One line of ``COPY … FROM STDIN`` (text format): the record's columns, then ``extra`` as given.

    A missing property or JSON ``null`` is ``\\N`` (a ``null`` where the converter is not
    nullable is unfit).

    :raises Unfit: a value its column cannot hold (the message names the column).
    """
    values = []
    get = record.get
    for name, convert, nullable in converters:
        value = get(name)
        if value is None:
            if not nullable and name in record:
                raise Unfit(f"{name}: not null")
            values.append("\\N")
            continue
        try:
            values.append(convert(value))
        except Unfit as exc:
            raise Unfit(f"{name}: {exc}") from None
    values += extra
    return "\t".join(values) + "\n"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
