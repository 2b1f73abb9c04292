"""Splitting, checking and decoding one enriched line."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_osds.snowplow import tsv
from airflow_osds.snowplow.fields import FIELD_INDEX, FIELDS
from airflow_osds.snowplow.generate import generate

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
UTC = timezone.utc


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return list(generate(600, seed=7, start=START))


@pytest.fixture(scope="module")
def line(lines: list[str]) -> str:
    """A checkout event: contexts, an unstruct event and derived contexts all set."""
    return next(item for item in lines if "\tunstruct\t" in item)


def with_value(line: str, key: str, value: str) -> list[str]:
    parts = line.split("\t")
    parts[FIELD_INDEX[key]] = value
    return parts


def errors_for(line: str, key: str, value: str) -> list[dict]:
    """invalid_values of the line with one field replaced; the fast path and the exact checks must agree."""
    parts = with_value(line, key, value)
    errors = tsv.invalid_values(parts)
    assert errors == tsv._invalid_values_exact(parts), (key, value)
    checked = tsv.check("\t".join(parts))
    if errors:
        assert checked == tsv.RowDecodingError(tuple(errors))
        assert tsv.check_event("\t".join(parts)) == checked
    else:
        assert checked == parts
        assert tsv.check_event("\t".join(parts)) == event_fields(parts)
    return errors


def event_fields(parts: list[str]) -> tsv.EventFields:
    """What check_event must return for a valid line, from its split fields."""
    json_fields = {FIELD_INDEX[name] for name in ("contexts", "unstruct_event", "derived_contexts")}
    atomic = "\t".join(p for i, p in enumerate(parts) if i not in json_fields)
    named = ("contexts", "unstruct_event", "derived_contexts", "event_id", "collector_tstamp", "event_fingerprint")
    return tsv.EventFields(atomic, *(parts[FIELD_INDEX[name]] for name in named))


def assert_valid(line: str, key: str, value: str) -> None:
    assert errors_for(line, key, value) == [], (key, value)


def assert_invalid(line: str, key: str, value: str, message: str | None = None) -> None:
    errors = errors_for(line, key, value)
    assert [e["key"] for e in errors] == [key], (key, value, errors)
    assert errors[0]["type"] == "InvalidValue" and errors[0]["value"] == value
    if message is not None:
        assert message in errors[0]["message"], errors[0]["message"]


# -- split --------------------------------------------------------------------------------------


def test_split_a_good_line(line: str) -> None:
    parts = tsv.split(line)
    assert isinstance(parts, list) and len(parts) == 131
    assert "\t".join(parts) == line


@pytest.mark.parametrize("raw", ["", "\n", "\r\n", "not an event", '{"schema":"iglu:x/y/jsonschema/1-0-0"}'])
def test_a_line_without_tabs_is_not_tsv(raw: str) -> None:
    assert tsv.split(raw) == tsv.NotTSV()
    assert tsv.check(raw) == tsv.check_event(raw) == tsv.NotTSV()
    assert tsv.NotTSV().to_failure() == {"type": "NotTSV"}


@pytest.mark.parametrize("count", [2, 108, 130, 132, 200])
def test_wrong_field_count(line: str, count: int) -> None:
    parts = line.split("\t")
    raw = "\t".join((parts * 2)[:count])
    assert tsv.split(raw) == tsv.FieldNumberMismatch(count)
    assert tsv.check(raw + "\n") == tsv.check_event(raw + "\n") == tsv.FieldNumberMismatch(count)
    assert tsv.FieldNumberMismatch(count).to_failure() == {"type": "FieldNumberMismatch", "fieldCount": count}


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_one_line_ending_is_removed(line: str, ending: str) -> None:
    assert tsv.split(line + ending) == line.split("\t")
    assert tsv.check(line + ending) == line.split("\t")


def test_only_one_line_ending_is_removed(line: str) -> None:
    parts = tsv.split(line + "\n\n")
    assert isinstance(parts, list) and parts[-1] == "\n"  # true_tstamp
    assert [e["key"] for e in tsv.invalid_values(parts)] == ["true_tstamp"]
    assert tsv.split(line + "\r") == [*line.split("\t")[:-1], "\r"]  # a lone CR is data


# -- invalid values: ints -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "1", "2147483647", "-2147483648", "+5", "007", "-0", "0000000000002147483647"])
def test_integers_in_postgres_integer_range(line: str, value: str) -> None:
    assert_valid(line, "page_urlport", value)
    assert tsv.decode(with_value(line, "page_urlport", value))["page_urlport"] == int(value)


@pytest.mark.parametrize(
    "value",
    ["2147483648", "-2147483649", "99999999999999999999", "9" * 5000, "1.0", "1e3", " 1", "1 ", "٣", "1_000", "0x10", "+", "-", "--1", "one"],  # fmt: skip
)
def test_integers_postgres_or_snowplow_refuse(line: str, value: str) -> None:
    assert_invalid(line, "domain_sessionidx", value, "Cannot parse key domain_sessionidx into integer")


# -- floats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1.5", "-0.0", "0", "+1", ".5", "5.", "1e10", "1E-5", "-1.25e+2", "4.9e-324", "0e-400", "1e308", "12.345678901234567890123"])  # fmt: skip
def test_finite_doubles(line: str, value: str) -> None:
    assert_valid(line, "se_value", value)
    assert tsv.decode(with_value(line, "se_value", value))["se_value"] == float(value)


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-inf", "Infinity", "1e400", "-1e309", "1e-400", "1,5", "0x1p3", " 1", "1.5f", "e5", ".", "-", "1e", "١"])  # fmt: skip
def test_doubles_postgres_refuses_or_are_not_finite(line: str, value: str) -> None:
    assert_invalid(line, "geo_latitude", value, "Cannot parse key geo_latitude into double")


# -- booleans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, decoded", [("1", True), ("0", False)])
def test_booleans_are_1_or_0(line: str, value: str, decoded: bool) -> None:
    assert_valid(line, "br_cookies", value)
    assert tsv.decode(with_value(line, "br_cookies", value))["br_cookies"] is decoded


@pytest.mark.parametrize("value", ["true", "false", "t", "f", "yes", "2", "01", " 1", "1.0", "TRUE"])
def test_other_booleans_are_refused(line: str, value: str) -> None:
    assert_invalid(line, "dvce_ismobile", value, "Cannot parse key dvce_ismobile into boolean")


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", range(0, 10))
def test_timestamps_with_0_to_9_fraction_digits(line: str, digits: int) -> None:
    fraction = "123456789"[:digits]
    value = "2026-03-01 10:20:30" + (f".{fraction}" if digits else "")
    assert_valid(line, "collector_tstamp", value)
    decoded = tsv.decode(with_value(line, "collector_tstamp", value))["collector_tstamp"]
    micros = round(int(fraction.ljust(9, "0")) / 1000) if digits else 0  # 7-9 digits round to the microsecond
    assert decoded == datetime(2026, 3, 1, 10, 20, 30, micros, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-03-01T10:20:30.123Z", datetime(2026, 3, 1, 10, 20, 30, 123000, tzinfo=UTC)),
        ("2026-03-01T10:20:30", datetime(2026, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2026-03-01 10:20:30Z", datetime(2026, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-02-29 00:00:00.000", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2000-02-29 12:00:00", datetime(2000, 2, 29, 12, tzinfo=UTC)),
        ("0001-01-01 00:00:00", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31 23:59:59.999999", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-03-01 10:20:59.9999995", datetime(2026, 3, 1, 10, 21, tzinfo=UTC)),  # rounds into the next minute
        ("2026-12-31 23:59:59.99999951", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_timestamp_forms_decode_to_utc(line: str, value: str, expected: datetime) -> None:
    assert_valid(line, "dvce_sent_tstamp", value)
    decoded = tsv.decode(with_value(line, "dvce_sent_tstamp", value))["dvce_sent_tstamp"]
    assert decoded == expected and decoded.tzinfo == UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-29 00:00:00", "1900-02-29 00:00:00", "2026-04-31 00:00:00", "2026-13-01 00:00:00",
        "2026-00-10 00:00:00", "2026-01-00 00:00:00", "0000-01-01 00:00:00", "2026-03-01 24:00:00",
        "2026-03-01 23:60:00", "2026-03-01 23:59:60", "2026-03-01 10:00", "2026-3-1 10:00:00",
        "2026-03-01  10:00:00", "2026-03-01 10:00:00.", "2026-03-01 10:00:00.1234567890",
        "2026-03-01 10:00:00+00:00", "2026-03-01 10:00:00+02", "2026-03-01T10:00:00ZZ", "1772323200000",
        "9999-12-31 23:59:59.9999999", "2026-03-01", "2026-03-01 10:00:00 UTC", "２０２６-03-01 10:00:00",
    ],
)  # fmt: skip
def test_bad_timestamps(line: str, value: str) -> None:
    assert_invalid(line, "etl_tstamp", value, "Cannot parse key etl_tstamp into datetime")


# -- uuid, required fields ----------------------------------------------------------------------


def test_event_id_is_a_canonical_uuid(line: str) -> None:
    assert_valid(line, "event_id", "3F2504E0-4F89-41D3-9A0C-0305E82C3301")
    for bad in ("3f2504e04f8941d39a0c0305e82c3301", "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}", "3f2504e0-4f89-41d3-9a0c-0305e82c330", "not-a-uuid"):  # fmt: skip
        assert_invalid(line, "event_id", bad, "Cannot parse key event_id into UUID")


@pytest.mark.parametrize("key", ["collector_tstamp", "event_id", "v_collector", "v_etl"])
def test_required_fields_cannot_be_empty(line: str, key: str) -> None:
    assert_invalid(line, key, "", f"Field {key} cannot be empty")


def test_empty_is_null_everywhere_else(line: str) -> None:
    parts = line.split("\t")
    for f in FIELDS:
        if not f.required:
            parts[f.index] = ""
    assert tsv.invalid_values(parts) == []
    decoded = tsv.decode(parts)
    assert all(decoded[f.name] is None for f in FIELDS if not f.required)


# -- text ---------------------------------------------------------------------------------------


def test_every_text_column_takes_its_size_and_not_one_more(line: str) -> None:
    for f in FIELDS:
        if f.kind != "text":
            continue
        assert f.max_length is not None
        assert_valid(line, f.name, "é" * f.max_length)  # characters, not bytes, as PostgreSQL counts
        assert_invalid(line, f.name, "x" * (f.max_length + 1), f"Field {f.name} longer than maximum allowed size {f.max_length}")  # fmt: skip


def test_char_columns(line: str) -> None:
    assert_valid(line, "geo_country", "NL")
    assert_valid(line, "geo_country", "N")
    assert_invalid(line, "geo_country", "NLD")
    assert_valid(line, "tr_currency", "EUR")
    assert_invalid(line, "tr_currency", "EURO")


def test_nul_characters_are_refused(line: str) -> None:
    assert_invalid(line, "page_title", "a\x00b", "NUL")
    assert_invalid(line, "v_etl", "\x00")


def test_several_errors_come_in_field_order(line: str) -> None:
    parts = line.split("\t")
    parts[FIELD_INDEX["true_tstamp"]] = "yesterday"
    parts[FIELD_INDEX["app_id"]] = "a" * 300
    parts[FIELD_INDEX["br_cookies"]] = "yes"
    errors = tsv.invalid_values(parts)
    assert [e["key"] for e in errors] == ["app_id", "br_cookies", "true_tstamp"]
    failure = tsv.check("\t".join(parts))
    assert isinstance(failure, tsv.RowDecodingError)
    assert failure.to_failure() == {"type": "RowDecodingError", "errors": errors}


def test_json_fields_are_not_checked_here(line: str) -> None:
    assert_valid(line, "contexts", '{"schema": broken')
    assert_valid(line, "unstruct_event", "[]")


def test_fast_path_and_exact_checks_agree_on_generated_lines(lines: list[str]) -> None:
    for item in lines:
        parts = item.split("\t")
        assert tsv.invalid_values(parts) == tsv._invalid_values_exact(parts) == []
        assert tsv.check(item) == parts
        assert tsv.check_event(item + "\n") == event_fields(parts)


# -- decode -------------------------------------------------------------------------------------


def test_decode_types(line: str) -> None:
    event = tsv.decode(tsv.split(line))  # type: ignore[arg-type]
    assert len(event) == 131
    assert isinstance(event["collector_tstamp"], datetime) and event["collector_tstamp"].tzinfo == UTC
    assert isinstance(event["domain_sessionidx"], int) and isinstance(event["geo_latitude"], float)
    assert event["br_cookies"] is True and isinstance(event["event_id"], str)
    assert event["contexts"]["schema"].startswith("iglu:com.snowplowanalytics.snowplow/contexts/")
    assert event["unstruct_event"]["data"]["schema"] == "iglu:com.acme/checkout_step/jsonschema/1-0-0"
    assert isinstance(event["derived_contexts"]["data"], list)
    assert event["true_tstamp"] is None and event["se_value"] is None


def test_decode_raises_naming_the_field(line: str) -> None:
    with pytest.raises(tsv.InvalidField) as raised:
        tsv.decode(with_value(line, "pp_yoffset_max", "lots"))
    assert raised.value.key == "pp_yoffset_max" and isinstance(raised.value, ValueError)
    assert raised.value.errors == [
        {"type": "InvalidValue", "key": "pp_yoffset_max", "value": "lots", "message": "Cannot parse key pp_yoffset_max into integer"}  # fmt: skip
    ]
    with pytest.raises(tsv.InvalidField) as raised:
        tsv.decode(with_value(line, "contexts", '{"schema":'))
    assert raised.value.key == "contexts" and "JSON" in raised.value.message
    with pytest.raises(ValueError):
        tsv.decode(line.split("\t")[:130])


def test_parse_tstamp_rejects_what_invalid_values_rejects() -> None:
    with pytest.raises(ValueError):
        tsv.parse_tstamp("2026-02-30 00:00:00")
    assert tsv.parse_tstamp("2026-03-01 00:00:00.5") == datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=UTC)


def test_fast_path_never_accepts_what_the_exact_checks_refuse(line: str) -> None:
    # Random values from the characters that matter, in every field kind: the one-regex fast path
    # must agree with the field-by-field checks on every one (it may only ever send more to them).
    import random

    rng = random.Random(1234)
    alphabet = "0123456789" * 3 + "+-.eEZT :x\x00é"
    seeds = {
        "tstamp": "2026-03-01 10:20:30.123", "int": "2147483647", "float": "-12.5e3",
        "bool": "1", "uuid": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "text": "NL",
    }  # fmt: skip
    fields = {kind: [f for f in FIELDS if f.kind == kind] for kind in seeds}
    parts = line.split("\t")
    for _ in range(4000):
        kind = rng.choice(list(seeds))
        f = rng.choice(fields[kind])
        value = list(seeds[kind] if kind != "text" else "x" * rng.choice((0, 1, 2, 3, f.max_length or 0, (f.max_length or 0) + 1)))  # fmt: skip
        for _ in range(rng.randint(0, 3)):
            position = rng.randrange(len(value) + 1)
            action = rng.random()
            if action < 0.4 and value:
                value[min(position, len(value) - 1)] = rng.choice(alphabet)
            elif action < 0.7:
                value.insert(position, rng.choice(alphabet))
            elif value:
                del value[min(position, len(value) - 1)]
        mutated = list(parts)
        mutated[f.index] = "".join(value)
        assert tsv.invalid_values(mutated) == tsv._invalid_values_exact(mutated), (f.name, mutated[f.index])
