"""Singer property schemas as columns, record values as COPY text."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_osds.singer.columns import Unfit, columns_of, converters, copy_line, sql_type, strict_converters


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "integer"}, "BIGINT"),
        ({"type": ["null", "integer"]}, "BIGINT"),
        ({"type": ["null", "number"]}, "NUMERIC"),
        ({"type": "boolean"}, "BOOLEAN"),
        ({"type": ["string", "null"], "format": "date-time"}, "TIMESTAMPTZ"),
        ({"type": "string", "format": "date"}, "DATE"),
        ({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}, "TIMESTAMPTZ"),
        ({"type": "string"}, "TEXT"),
        ({"type": ["null", "object"]}, "JSONB"),
        ({"type": ["string", "integer"]}, "JSONB"),
        ({}, "JSONB"),
    ],
)
def test_sql_type(prop: dict[str, Any], expected: str) -> None:
    assert sql_type(prop) == expected


def test_copy_line_escapes_text_and_writes_nulls() -> None:
    cols = columns_of({"properties": {"id": {"type": "integer"}, "s": {"type": "string"}, "n": {"type": "number"},
                                      "b": {"type": "boolean"}, "o": {"type": "object"}}})
    conv = converters(cols)
    line = copy_line(conv, {"id": 7, "s": "a\tb\\c\nd\re", "n": 0.1, "b": False, "o": {"k": "x\ty"}}, ["\\N"])
    assert line == '7\ta\\tb\\\\c\\nd\\re\t0.1\tf\t{"k":"x\\\\ty"}\t\\N\n'
    assert copy_line(conv, {"id": 1}, []) == "1\t\\N\t\\N\t\\N\t\\N\n"


@pytest.mark.parametrize(
    ("prop", "value", "message"),
    [
        ({"type": "integer"}, 2**64, "x: a 64-bit integer, got 18446744073709551616"),
        ({"type": "integer"}, True, "x: an integer, got true"),
        ({"type": "number"}, float("nan"), "x: a finite number"),
        ({"type": "string"}, "a\x00b", "x: text with a NUL character (PostgreSQL text cannot hold it)"),
    ],
)
def test_values_a_column_cannot_hold_are_unfit(prop: dict[str, Any], value: Any, message: str) -> None:
    (col,) = columns_of({"properties": {"x": prop}})
    with pytest.raises(Unfit) as info:
        copy_line(converters([col]), {"x": value}, [])
    assert str(info.value) == message


def test_a_schema_without_properties_or_with_a_long_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'properties' object"):
        columns_of({"type": "object"})
    with pytest.raises(ValueError, match="cannot be a PostgreSQL column"):
        columns_of({"properties": {"x" * 64: {"type": "string"}}})


def test_strict_converters_cover_plain_schemas_only() -> None:
    plain = {"type": "object", "properties": {"id": {"type": "integer"}, "at": {"type": ["null", "string"],
                                                                                  "format": "date-time"}}}
    strict = strict_converters(plain)
    assert strict is not None and [(n, nullable) for n, _, nullable in strict] == [("id", False), ("at", True)]
    assert copy_line(strict, {"id": 1, "at": "2026-11-01T10:00:00Z"}, []) == "1\t2026-11-01T10:00:00Z\n"
    for record, message in [({"id": "1"}, "id: an integer"), ({"id": None}, "id: not null"),
                            ({"id": 1, "at": "yesterday"}, "at: an RFC 3339 date-time")]:
        with pytest.raises(Unfit, match=message):
            copy_line(strict, record, [])
    assert copy_line(strict, {}, []) == "\\N\t\\N\n"  # missing is fine: nothing is required
    for richer in ({**plain, "required": ["id"]}, {"properties": {"x": {"type": "string", "maxLength": 3}}},
                   {"properties": {"x": {"type": ["string", "integer"]}}},
                   {"properties": {"x": {"type": "string", "format": "email"}}}):
        assert strict_converters(richer) is None


def test_the_target_takes_meltanolabs_sqlalchemy_url_when_no_host_is_given() -> None:
    from airflow_osds.singer.target_postgres import TargetConfig, TargetError

    config = TargetConfig.from_dict({"sqlalchemy_url": "postgresql+psycopg://etl:pw@db.internal:6432/wh?sslmode=require"})
    assert config.conninfo == {"conninfo": "postgresql://etl:pw@db.internal:6432/wh?sslmode=require",
                               "application_name": "osds-target-postgres"}
    assert TargetConfig.from_dict({"host": "h", "sqlalchemy_url": "postgresql://x@y/z"}).conninfo == {
        "host": "h", "application_name": "osds-target-postgres"}
    with pytest.raises(TargetError, match="sqlalchemy_url must be a postgresql:// URL"):
        TargetConfig.from_dict({"sqlalchemy_url": "mysql://x@y/z"})


def test_numbers_decoded_as_decimal_keep_every_digit_and_integral_ones_fit_bigint() -> None:
    from decimal import Decimal

    (_, numeric, _), (_, bigint, _) = converters(columns_of({"properties": {"n": {"type": "number"}, "i": {"type": "integer"}}}))
    assert numeric(Decimal("12345678901234567.89")) == "12345678901234567.89"
    assert numeric(Decimal("25.00")) == "25.00"
    assert bigint(Decimal("7.0")) == "7"
    with pytest.raises(Unfit, match="an integer, got 7.5"):
        bigint(Decimal("7.5"))
    with pytest.raises(Unfit, match="a finite number"):
        numeric(Decimal("NaN"))


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_the_generated_line_function_writes_what_copy_line_writes_and_fails_alike(strict: bool) -> None:
    from decimal import Decimal

    from airflow_osds.singer.columns import copy_tail, line_function

    schema = {"properties": {"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
                             "score": {"type": ["null", "number"]}, "at": {"type": ["null", "string"], "format": "date-time"},
                             "tags": {"type": ["null", "object"]}, "ok": {"type": ["null", "boolean"]}}}
    conv = strict_converters(schema) if strict else converters(columns_of(schema))
    assert conv is not None
    line = line_function(conv)
    records: list[dict[str, Any]] = [
        {"id": 1, "name": "a\tb\\c\nd", "score": Decimal("2.50"), "at": "2026-01-01T00:00:00Z", "tags": {"x": [1]}, "ok": True},
        {"id": 2}, {"id": None}, {"id": "x"}, {"id": 3, "at": "nope"}, {"id": 2**70}, {"id": 4, "name": "x\x00"},
        {"id": 5, "score": 1.5, "name": None}, {"id": 6.0, "score": 7}, {"id": True}, {"id": 7, "ok": "yes"},
        {"id": 8, "name": 9}, {"id": 9, "score": float("nan")},
        {"id": 10, "name": "non-breaking\u00a0space, \x01 control, é"}, {"id": 11, "name": "x\ry"},
    ]
    for record in records:
        outcomes = []
        for build in (lambda r: copy_line(conv, r, ["E", "\\N"]), lambda r: line(r, copy_tail(["E", "\\N"]))):
            try:
                outcomes.append(build(record))
            except Unfit as exc:
                outcomes.append(f"Unfit: {exc}")
        assert outcomes[0] == outcomes[1], record
