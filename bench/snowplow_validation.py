"""µs per Iglu validation: our compiled validators vs jsonschema's Draft4Validator, valid and invalid data.

    PYTHONPATH=. python bench/snowplow_validation.py [--iglu-central /work/shared/iglu-central] [--number 20000]

Measures the resolver's hot path (``resolver.validator(key)(data)``, the schema already
compiled and cached), a whole self-describing check (``validate_self_describing``), one
``entities.extract`` of a contexts field with two entities, and ``jsonschema.Draft4Validator``
on the same data for comparison. Best of 5 repeats.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import timeit
from pathlib import Path
from typing import Any

from airflow_osds.snowplow import entities
from airflow_osds.snowplow.iglu import Resolver, SchemaKey, StaticRepository
from airflow_osds.snowplow.validation import FORMATS

SELF_DESC = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
WEB_PAGE = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0")
CUSTOM = SchemaKey.parse("iglu:com.acme/checkout/jsonschema/1-0-0")
CUSTOM_SCHEMA = {
    "$schema": SELF_DESC,
    "self": {"vendor": "com.acme", "name": "checkout", "format": "jsonschema", "version": "1-0-0"},
    "type": "object",
    "properties": {
        "orderId": {"type": "string", "maxLength": 36},
        "total": {"type": "number", "minimum": 0},
        "items": {"type": "integer", "minimum": 0, "maximum": 1000},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "coupon": {"type": ["string", "null"], "maxLength": 20},
        "placedAt": {"type": "string", "format": "date-time"},
        "customerId": {"type": "string", "format": "uuid"},
        "express": {"type": "boolean"},
    },
    "required": ["orderId", "total", "placedAt"],
    "additionalProperties": False,
}
GOOD = {
    WEB_PAGE: {"id": "6e4a2e3c-0d7b-4c8f-9a32-123456789abc"},
    CUSTOM: {
        "orderId": "ord-0001",
        "total": 59.9,
        "items": 3,
        "currency": "EUR",
        "coupon": None,
        "placedAt": "2024-05-01T10:00:00.123Z",
        "customerId": "6e4a2e3c-0d7b-4c8f-9a32-123456789abc",
        "express": False,
    },
}
BAD = {
    WEB_PAGE: {"id": "not-a-uuid"},
    CUSTOM: dict(GOOD[CUSTOM], items=-1, currency="JPY"),
}


def best_us(func: Any, number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iglu-central", default="/work/shared/iglu-central")
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()

    import jsonschema

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schemas" / CUSTOM.path
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(CUSTOM_SCHEMA))
        resolver = Resolver([StaticRepository(tmp, name="acme"), StaticRepository(args.iglu_central, name="Iglu Central")])
        checker = jsonschema.FormatChecker(formats=())
        for name, check in FORMATS.items():
            checker.checks(name)(check)
        print(f"{'case':<42}{'ours µs':>10}{'Draft4Validator µs':>20}")
        for key in (WEB_PAGE, CUSTOM):
            validator = resolver.validator(key)
            reference = jsonschema.Draft4Validator(resolver.lookup(key), format_checker=checker)
            for label, data, number in (("valid", GOOD[key], args.number), ("invalid", BAD[key], max(1, args.number // 20))):
                assert (validator(data) == []) is (label == "valid")
                ours = best_us(lambda: validator(data), number)
                theirs = best_us(lambda: list(reference.iter_errors(data)), number)
                print(f"{key.name + ' ' + label:<42}{ours:>10.2f}{theirs:>20.2f}")
        instance = {"schema": CUSTOM.uri, "data": GOOD[CUSTOM]}
        print(f"{'validate_self_describing(checkout)':<42}{best_us(lambda: resolver.validate_self_describing(instance), args.number):>10.2f}")
        field = json.dumps(
            {
                "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                "data": [{"schema": WEB_PAGE.uri, "data": GOOD[WEB_PAGE]}, {"schema": CUSTOM.uri, "data": GOOD[CUSTOM]}],
            }
        )
        print(f"{'entities.extract(contexts, 2 entities)':<42}{best_us(lambda: entities.extract('contexts', field, resolver), args.number // 4):>10.2f}")


if __name__ == "__main__":
    main()
