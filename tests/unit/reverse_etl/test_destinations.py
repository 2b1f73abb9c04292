"""The destinations' pure parts: Retry-After parsing, scrubbing secrets, the idempotency key, Mailchimp's
subscriber hash (that every destination module imports without Airflow is tests/unit/test_engine_imports.py's)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from airflow_osds.reverse_etl.destinations._http import excerpt, retry_after_seconds, scrub, secret_forms
from airflow_osds.reverse_etl.destinations.base import Change
from airflow_osds.reverse_etl.destinations.http import idempotency_key
from airflow_osds.reverse_etl.destinations.mailchimp import subscriber_hash

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, expected", [
    ("0.2", 0.2), (" 7 ", 7.0), ("-3", 0.0), (None, None), ("", None), ("soon", None),
    ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0), ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),
])
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == expected


def test_every_form_of_a_secret_is_scrubbed() -> None:
    secret = 'pa"ss\\word'
    forms = secret_forms(secret, login="me")
    assert forms == (secret, 'pa\\"ss\\\\word', base64.b64encode(f"me:{secret}".encode()).decode())
    text = f'raw {secret}, json "pa\\"ss\\\\word", header Basic {forms[2]}'
    assert scrub(text, forms) == 'raw ***, json "***", header Basic ***'
    assert scrub("the key abc is short", "abc") == "the key abc is short"  # < 4 characters: words would vanish
    assert secret_forms("") == ()


def test_an_excerpt_is_one_scrubbed_line_cut_after_the_scrub() -> None:
    text = "x" * 495 + "TOKEN-1234 and more\n lines"
    assert excerpt(text, "TOKEN-1234") == "x" * 495 + "*** a…"
    assert excerpt("a\n  b\tc", "") == "a b c"


def test_the_idempotency_key_changes_with_the_records_and_nothing_else() -> None:
    batch = [Change("1", "create", {"a": 1, "b": [1, 2]}, ("g",)), Change("2", "delete", {})]
    key = idempotency_key("sink/x", batch)
    assert key == idempotency_key("sink/x", [Change("1", "create", {"b": [1, 2], "a": 1}, ("g",)), Change("2", "delete", {})])
    variants = [
        idempotency_key("sink/y", batch),
        idempotency_key("sink/x", batch[::-1]),
        idempotency_key("sink/x", [Change("1", "update", {"a": 1, "b": [1, 2]}, ("g",)), batch[1]]),
        idempotency_key("sink/x", [Change("1", "create", {"a": 2, "b": [1, 2]}, ("g",)), batch[1]]),
        idempotency_key("sink/x", [Change("1", "create", {"a": 1, "b": [1, 2]}, ()), batch[1]]),
    ]
    assert key not in variants and len(set(variants)) == len(variants)


def test_the_subscriber_hash_is_the_md5_of_the_lower_cased_address() -> None:
    # md5("urist.mcvankab@freddiesjokes.com"), the example of Mailchimp's docs
    assert subscriber_hash(" Urist.McVankab@FreddiesJokes.com ") == "62eeb292278cc15f5817cb78f7790b08"
