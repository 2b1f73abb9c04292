"""Our decoder against a real third-party reader: Snowplow's Python Analytics SDK 0.2.3.

A generated corpus (every event type, plus lines the SDK must reject) goes through the SDK's
``transform`` in its own virtualenv (``_venv.py``; one subprocess, JSON lines out) and every
field it returns is compared with :func:`airflow_osds.snowplow.tsv.decode`, mapping the SDK's
known quirks:

* field 122 is ``refr_device_tstamp`` there (the real name is ``refr_dvce_tstamp``);
* ``se_value`` stays a string;
* timestamps are strings, ``2026-03-01T10:00:00.123Z`` (parsed here and compared as instants);
* empty fields are absent, not null;
* the JSON fields are "shredded": ``contexts_<vendor>_<name>_<model>`` (a list per schema, from
  ``contexts`` and ``derived_contexts`` alike) and ``unstruct_event_<vendor>_<name>_<model>``;
* ``geo_location`` = ``"<lat>,<lon>"`` is added.

Any other difference fails, naming the line and the field. The virtualenv must build: under CI a
failure to build it fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.snowplow import tsv
from airflow_osds.snowplow.fields import FIELDS
from airflow_osds.snowplow.generate import generate_labelled

from ._venv import ensure_sdk_venv

START = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)

_CHILD = r"""
import json, sys
from snowplow_analytics_sdk.event_transformer import transform
from snowplow_analytics_sdk.snowplow_event_transformation_exception import SnowplowEventTransformationException
out = sys.stdout
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        try:
            out.write(json.dumps({"event": transform(line.rstrip("\n"))}) + "\n")
        except SnowplowEventTransformationException as exc:
            out.write(json.dumps({"errors": exc.error_messages}) + "\n")
"""


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    try:
        return ensure_sdk_venv()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the snowplow-analytics-sdk virtualenv could not be built: {exc}")
        pytest.skip(f"the snowplow-analytics-sdk virtualenv could not be built: {exc}")


def _sdk_key(prefix: str, schema: str) -> str:
    """The SDK's ``fix_schema``: vendor dots to underscores, camelCase name to snake_case, the model."""
    vendor, name, _, version = schema.removeprefix("iglu:").split("/")
    snake = re.sub("([^A-Z_])([A-Z])", r"\g<1>_\g<2>", name).lower()
    return f"{prefix}_{vendor.replace('.', '_').lower()}_{snake}_{version.split('-')[0]}"


def expected_shredded(event: dict[str, Any]) -> dict[str, Any]:
    shredded: dict[str, Any] = {}
    for field in ("contexts", "derived_contexts"):
        if event[field] is None:
            continue
        own: dict[str, list[Any]] = {}
        for entity in event[field]["data"]:
            own.setdefault(_sdk_key("contexts", entity["schema"]), []).append(entity["data"])
        assert not set(own) & set(shredded), "a schema in both contexts and derived_contexts"
        shredded.update(own)
    if event["unstruct_event"] is not None:
        inner = event["unstruct_event"]["data"]
        shredded[_sdk_key("unstruct_event", inner["schema"])] = inner["data"]
    return shredded


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between our decoded event and the SDK's output for the same line, one entry per field."""
    diffs = []
    theirs = dict(theirs)
    for f in FIELDS:
        if f.kind == "json":
            continue
        key = "refr_device_tstamp" if f.name == "refr_dvce_tstamp" else f.name
        value = theirs.pop(key, None)
        mine = ours[f.name]
        if mine is None:
            if value is not None:
                diffs.append(f"{f.name}: ours empty, SDK {value!r}")
            continue
        if value is None:
            diffs.append(f"{f.name}: ours {mine!r}, SDK has none")
        elif f.kind == "tstamp":
            if not (isinstance(value, str) and value.endswith("Z") and datetime.fromisoformat(value) == mine):
                diffs.append(f"{f.name}: ours {mine.isoformat()}, SDK {value!r}")
        elif f.name == "se_value":
            if not (isinstance(value, str) and float(value) == mine):
                diffs.append(f"{f.name}: ours {mine!r}, SDK {value!r}")
        elif type(value) is not type(mine) or value != mine:
            diffs.append(f"{f.name}: ours {mine!r} ({type(mine).__name__}), SDK {value!r} ({type(value).__name__})")
    geo = theirs.pop("geo_location", None)
    if ours["geo_latitude"] is not None and ours["geo_longitude"] is not None:
        lat, _, lon = (geo or "").partition(",")
        if not geo or (float(lat), float(lon)) != (ours["geo_latitude"], ours["geo_longitude"]):
            diffs.append(f"geo_location: ours {ours['geo_latitude']},{ours['geo_longitude']}, SDK {geo!r}")
    elif geo is not None:
        diffs.append(f"geo_location: SDK {geo!r} without both coordinates")
    for key, value in expected_shredded(ours).items():
        if key not in theirs:
            diffs.append(f"{key}: ours {value!r}, SDK has none")
        elif theirs.pop(key) != value:
            diffs.append(f"{key}: shredded entities differ")
    diffs += [f"{key}: only the SDK has it ({value!r:.80})" for key, value in theirs.items()]
    return diffs


def test_sdk_reads_our_corpus_as_we_decode_it(sdk_python: Path, tmp_path: Path) -> None:
    corpus = list(generate_labelled(2000, seed=17, start=START, bad=40, bad_kinds=["not_tsv", "field_count"]))
    path = tmp_path / "enriched.tsv"
    path.write_text("".join(f"{line}\n" for _, line in corpus), encoding="utf-8")
    done = subprocess.run([str(sdk_python), "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(corpus)

    diffs: list[str] = []
    event_types: Counter[str] = Counter()
    for number, ((kind, line), result) in enumerate(zip(corpus, results, strict=True), start=1):
        if kind != "good":
            # The SDK knows the 131-field layout too: it refuses what split() refuses.
            failure = tsv.split(line)
            assert isinstance(failure, tsv.NotTSV | tsv.FieldNumberMismatch)
            expected_count = 1 if isinstance(failure, tsv.NotTSV) else failure.fieldCount
            assert result == {"errors": [f"Expected 131 fields, received {expected_count} fields."]}, (number, result)
            continue
        assert "event" in result, (number, result)
        ours = tsv.decode(line.split("\t"))
        event_types[ours["event"]] += 1
        diffs += [f"line {number} ({ours['event']}): {d}" for d in differences(ours, result["event"])]
    assert not diffs, "\n".join(diffs[:30]) + (f"\n... {len(diffs)} differences" if len(diffs) > 30 else "")
    assert set(event_types) == {"page_view", "page_ping", "struct", "unstruct", "transaction", "transaction_item"}, event_types


def test_the_comparison_notices_a_difference() -> None:
    # The comparison itself must be able to fail: a changed value, a missing key, a foreign key.
    line = next(line for kind, line in generate_labelled(1000, seed=1, start=START) if "\tunstruct\t" in line)
    parts = line.split("\t")
    ours = tsv.decode(parts)
    sdk_like: dict[str, Any] = {}
    for f in FIELDS:
        if f.kind != "json" and ours[f.name] is not None:
            key = "refr_device_tstamp" if f.name == "refr_dvce_tstamp" else f.name
            value = ours[f.name]
            if f.kind == "tstamp":
                value = parts[f.index].replace(" ", "T") + "Z"
            elif f.name == "se_value":
                value = parts[f.index]
            sdk_like[key] = value
    sdk_like["geo_location"] = f"{parts[22]},{parts[23]}"
    sdk_like.update(expected_shredded(ours))
    assert differences(ours, sdk_like) == []
    assert differences(ours, {**sdk_like, "page_urlport": 80}) == ["page_urlport: ours 443 (int), SDK 80 (int)"]
    assert differences(ours, {**sdk_like, "br_cookies": 1})  # 1 is not True
    assert differences(ours, {**sdk_like, "extra": 1}) == ["extra: only the SDK has it (1)"]
    missing = dict(sdk_like)
    del missing["contexts_com_acme_cart_1"]
    assert differences(ours, missing)[0].startswith("contexts_com_acme_cart_1: ours")
