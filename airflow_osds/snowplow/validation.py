"""JSON Schema draft-04 validation of Iglu data: compiled once, a fast yes/no, precise reports when invalid.

Snowplow validates with networknt's draft-04 validator (``iglu-scala-client`` ``CirceValidator``).
Here each schema is compiled once with ``fastjsonschema`` (generated Python, several times
faster than ``jsonschema``) and that compiled function decides valid/invalid for every datum.
Only for an invalid datum — rare — the detailed reports are built with
``jsonschema.Draft4Validator``, which lists *every* error with its path; its messages follow
networknt's wording (``$.name: may only be 10 characters long``), and never quote the datum's
values (bad rows must not copy data into messages).

Both engines run with the *same* ``format`` checks (:data:`FORMATS`: ``date-time``, ``date``,
``email``, ``hostname``, ``ipv4``, ``ipv6``, ``uri``, ``uuid`` — the formats Snowplow checks),
draft-04 semantics for ``$schema`` and integers (``1.0`` is not an integer), and no defaults
filled in. Where they still disagree (fastjsonschema reads ``$`` in a ``pattern`` as end of
string, Python's ``re`` also before a final newline), the compiled function's verdict stands
and the report is made from its exception.

Patterns are Python regular expressions: an ECMA-only construct (``\\p{L}``, ``(?<name>``)
makes the schema invalid here, where the JVM would accept it.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import threading
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from fastjsonschema import JsonSchemaValueException

from airflow_osds.snowplow.iglu import InvalidSchemaError, SchemaKey
from airflow_osds.snowplow.shortcuts import shortcut

__all__ = [
    "FORMATS",
    "MAX_REPORTS",
    "SELF_DESCRIBING_META",
    "SchemaValidator",
    "compile_schema",
    "retrieve_reference",
    "schema_issues",
]

#: At most this many data reports per datum; a last report says how many were left out.
MAX_REPORTS = 50
SELF_DESCRIBING_META = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
_DRAFT4 = "http://json-schema.org/draft-04/schema#"
_DRAFT4_URLS = {"http://json-schema.org/draft-04/schema", "https://json-schema.org/draft-04/schema"}
# An Iglu schema addressed as a URL (Iglu Central, a mirror, an Iglu Server): .../schemas/v/n/f/M-R-A
_IGLU_URL = re.compile(r"^https?://[^/]+(?:/[^#]*)?/schemas/([^/#]+)/([^/#]+)/([^/#]+)/([0-9]+-[0-9]+-[0-9]+)/?$")
_SELF_PATTERNS = {
    "vendor": re.compile(r"[a-zA-Z0-9-_.]+\Z"),
    "name": re.compile(r"[a-zA-Z0-9-_]+\Z"),
    "format": re.compile(r"[a-zA-Z0-9-_]+\Z"),
    "version": re.compile(r"[0-9]+-[0-9]+-[0-9]+\Z"),
}

# --------------------------------------------------------------------------- formats

_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}\Z")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_EMAIL = re.compile(rf"[a-zA-Z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[a-zA-Z0-9!#$%&'*+/=?^_`{{|}}~-]+)*@{_LABEL}(?:\.{_LABEL})*\Z")
_URI_FORMAT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def _real_date(year: str, month: str, day: str) -> bool:
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def is_date_time(value: Any) -> bool:
    """RFC 3339 ``date-time``: a real date, ``T``, time, optional fraction, ``Z`` or ``±hh:mm``.

    A leap second (``:60``) only at 23:59 UTC.
    """
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    h, m, s = int(hour), int(minute), int(second)
    if h > 23 or m > 59 or s > 60:
        return False
    if sign is not None and (int(off_h) > 23 or int(off_m) > 59):
        return False
    if s == 60:
        offset = 0 if sign is None else (1 if sign == "+" else -1) * (int(off_h) * 60 + int(off_m))
        if (h * 60 + m - offset) % 1440 != 23 * 60 + 59:
            return False
    return _real_date(year, month, day)


def is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    match = _DATE.match(value)
    return match is not None and _real_date(*match.groups())


def is_ipv6(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    if "%" in value:  # zone ids are not part of the format
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _regex_format(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return not isinstance(value, str) or pattern.match(value) is not None

    return check


def _hostname(value: Any) -> bool:
    return not isinstance(value, str) or (len(value) <= 253 and _HOSTNAME.match(value) is not None)


#: Format name → check; the same functions drive both validators. Unknown formats are ignored.
FORMATS: dict[str, Callable[[Any], bool]] = {
    "date-time": is_date_time,
    "date": is_date,
    "email": _regex_format(_EMAIL),
    "hostname": _hostname,
    "ipv4": _regex_format(_IPV4),
    "ipv6": is_ipv6,
    "uri": _regex_format(_URI_FORMAT),
    "uuid": _regex_format(_UUID),
}

# --------------------------------------------------------------------------- references


def retrieve_reference(uri: str, lookup: Callable[[SchemaKey], Any]) -> Any:
    """The document a remote ``$ref`` points at, without touching the network.

    The draft-04 meta-schema is embedded; an Iglu schema URL (``http://iglucentral.com/schemas/v/n/f/M-R-A``)
    is resolved by ``lookup`` (the resolver's registries). Anything else is refused.
    """
    base = uri.split("#", 1)[0]
    if base.rstrip("/") in _DRAFT4_URLS:
        from airflow_osds.snowplow._bootstrap import DRAFT4_METASCHEMA

        return DRAFT4_METASCHEMA
    match = _IGLU_URL.match(base)
    if match is None:
        raise ValueError(
            f"$ref {uri!r} is neither an Iglu schema URL nor the draft-04 meta-schema; remote refs are not fetched"
        )
    return lookup(SchemaKey.parse("iglu:" + "/".join(match.groups())))


def _as_draft4(schema: dict[str, Any]) -> dict[str, Any]:
    # fastjsonschema picks its draft from $schema (an Iglu schema names the self-desc
    # meta-schema, which it would read as the latest draft) and rewrites $ref in place.
    document = copy.deepcopy(schema)
    document["$schema"] = _DRAFT4
    return document


def _handlers(retrieve: Callable[[str], Any]) -> dict[str, Callable[[str], Any]]:
    def handler(uri: str) -> Any:
        document = retrieve(uri)
        return _as_draft4(document) if isinstance(document, dict) else document

    return {"http": handler, "https": handler}


# --------------------------------------------------------------------------- schema checks

_META_LOCK = threading.Lock()
_META: list[Callable[[Any], Any]] = []


def _meta_validator() -> Callable[[Any], Any]:
    """The draft-04 meta-schema, compiled once per process."""
    with _META_LOCK:
        if not _META:
            import fastjsonschema

            from airflow_osds.snowplow._bootstrap import DRAFT4_METASCHEMA

            _META.append(fastjsonschema.compile(copy.deepcopy(DRAFT4_METASCHEMA), formats={}, use_default=False))
        return _META[0]


def schema_issues(key: SchemaKey, schema: Any) -> list[dict[str, str]]:
    """Why ``schema`` cannot serve as ``key``'s schema: ``[{"path", "message"}]``, empty when it can.

    It must be a JSON object valid against the draft-04 meta-schema, name no other draft in
    ``$schema`` (absent or the Iglu self-describing meta-schema), and carry a ``self`` block equal
    to ``key``.
    """
    if not isinstance(schema, dict):
        return [{"path": "$", "message": f"a schema must be a JSON object, got {_json_type(schema)}"}]
    issues: list[dict[str, str]] = []
    declared = schema.get("$schema")
    if declared is not None and declared not in (SELF_DESCRIBING_META, SELF_DESCRIBING_META.rstrip("#"), _DRAFT4):
        message = f"{declared!r} is not the Iglu self-describing meta-schema (draft-04)"
        issues.append({"path": "$.$schema", "message": message})
    try:
        _meta_validator()(schema)
    except JsonSchemaValueException as exc:
        import jsonschema

        from airflow_osds.snowplow._bootstrap import DRAFT4_METASCHEMA

        meta = jsonschema.Draft4Validator(DRAFT4_METASCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        found = sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
        issues.extend({"path": _json_path(e.absolute_path), "message": _clip(e.message, 200)} for e in found)
        if not found:  # the engines disagree: report what the compiled check saw
            report = _fast_report(exc)
            issues.append({"path": report["path"], "message": report["message"]})
    self_block = schema.get("self")
    if not isinstance(self_block, dict):
        message = "a self-describing schema needs a 'self' object (vendor, name, format, version)"
        issues.append({"path": "$.self", "message": message})
    else:
        for part, pattern in _SELF_PATTERNS.items():
            value = self_block.get(part)
            if not isinstance(value, str) or not pattern.match(value):
                issues.append({"path": f"$.self.{part}", "message": f"must be a string matching {pattern.pattern[:-2]}"})
        extra = sorted(set(self_block) - set(_SELF_PATTERNS))
        if extra:
            issues.append({"path": "$.self", "message": f"unexpected properties {', '.join(extra)}"})
        parts = (self_block.get(p) for p in ("vendor", "name", "format", "version"))
        declared_key = "iglu:" + "/".join(str(p) for p in parts)
        if declared_key != key.uri:
            issues.append({"path": "$.self", "message": f"the schema describes itself as {declared_key}, not {key.uri}"})
    return issues


def compile_schema(key: SchemaKey, schema: dict[str, Any], *, retrieve: Callable[[str], Any]) -> SchemaValidator:
    """Compile ``schema`` (already checked by :func:`schema_issues`) for validating data.

    :raises InvalidSchemaError: fastjsonschema cannot compile it (an unresolvable ``$ref``, a
        pattern Python cannot compile, ...).
    """
    import fastjsonschema

    try:
        fast = fastjsonschema.compile(
            _as_draft4(schema),
            handlers=_handlers(retrieve),
            formats=FORMATS,
            use_default=False,
            use_formats=True,
            detailed_exceptions=True,
        )
    except Exception as exc:  # JsonSchemaDefinitionException, re.error, a failed $ref lookup ...
        raise InvalidSchemaError(key, [{"path": "$", "message": _clip(f"cannot compile: {exc}", 256)}]) from None
    return SchemaValidator(key, schema, fast, retrieve, shortcut=shortcut(schema, fast))


# --------------------------------------------------------------------------- data reports


class SchemaValidator:
    """One compiled schema. ``validator(data)`` returns 2-0-1 ``dataReports``, ``[]`` when valid.

    Thread-safe; the detailed (``jsonschema``) validator is built on the first invalid datum.
    """

    __slots__ = ("key", "schema", "_fast", "_shortcut", "_retrieve", "_detailed", "_lock")

    def __init__(
        self,
        key: SchemaKey,
        schema: dict[str, Any],
        fast: Callable[[Any], Any],
        retrieve: Callable[[str], Any],
        *,
        shortcut: Callable[[Any], bool] | None = None,
    ) -> None:
        self.key = key
        self.schema = schema
        self._fast = fast
        self._shortcut = shortcut  # says "valid" sooner for the plainest schemas (see snowplow.shortcuts)
        self._retrieve = retrieve
        self._detailed: Any = None
        self._lock = threading.Lock()

    def __call__(self, data: Any) -> list[dict[str, Any]]:
        if self._shortcut is not None and self._shortcut(data):
            return []
        try:
            self._fast(data)
        except JsonSchemaValueException as exc:
            return self._reports(data, exc)
        return []

    def is_valid(self, data: Any) -> bool:
        if self._shortcut is not None and self._shortcut(data):
            return True
        try:
            self._fast(data)
        except JsonSchemaValueException:
            return False
        return True

    def __repr__(self) -> str:
        return f"SchemaValidator({self.key.uri})"

    def _detailed_validator(self) -> Any:
        if self._detailed is None:
            with self._lock:
                if self._detailed is None:
                    self._detailed = _build_detailed(self.schema, self._retrieve)
        return self._detailed

    def _reports(self, data: Any, exc: JsonSchemaValueException) -> list[dict[str, Any]]:
        reports: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        total = 0
        try:
            errors: Iterable[Any] = self._detailed_validator().iter_errors(data)
            for error in errors:
                for report in _error_reports(error):
                    marker = (report["path"], report["keyword"], json.dumps(report["targets"]))
                    if marker in seen:
                        continue
                    seen.add(marker)
                    total += 1
                    if len(reports) < MAX_REPORTS:
                        reports.append(report)
        except Exception:  # the detailed engine failing must not hide that the datum is invalid
            reports = []
        if not reports:
            return [_fast_report(exc)]
        if total > len(reports):
            reports.append(
                _report(f"{total - len(reports)} further errors not reported", None, None, None)
            )
        return reports


def _build_detailed(schema: dict[str, Any], retrieve: Callable[[str], Any]) -> Any:
    import jsonschema
    import referencing
    import referencing.jsonschema

    def fetch(uri: str) -> referencing.Resource[Any]:
        return referencing.jsonschema.DRAFT4.create_resource(retrieve(uri))

    checker = jsonschema.FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return jsonschema.Draft4Validator(schema, format_checker=checker, registry=referencing.Registry(retrieve=fetch))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}"
        else:
            path += "['" + str(part).replace("\\", "\\\\").replace("'", "\\'") + "']"
    return path


def _child(path: str, name: str) -> str:
    return _json_path([name]).replace("$", path, 1)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _report(message: str, path: str | None, keyword: str | None, targets: list[Any] | None) -> dict[str, Any]:
    return {"message": message, "path": path, "keyword": keyword, "targets": targets}


def _error_reports(error: Any) -> list[dict[str, Any]]:
    """One ``jsonschema`` error as data reports, in networknt's wording (no datum values quoted)."""
    path = _json_path(error.absolute_path)
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    if keyword == "required":
        missing = [p for p in value if isinstance(instance, dict) and p not in instance]
        return [_report(f"{_child(path, p)}: is missing but it is required", path, "required", [p]) for p in missing]
    if keyword == "additionalProperties":
        schema = error.schema
        known = schema.get("properties", {})
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]
        return [
            _report(
                f"{_child(path, k)}: is not defined in the schema and the schema does not allow additional properties",
                path,
                "additionalProperties",
                [k],
            )
            for k in extra
        ]
    if keyword == "type":
        expected = [value] if isinstance(value, str) else list(value)
        found = _json_type(instance)
        return [_report(f"{path}: {found} found, {', '.join(expected)} expected", path, "type", [found, *expected])]
    if keyword == "maxLength":
        return [_report(f"{path}: may only be {value} characters long", path, keyword, [str(value)])]
    if keyword == "minLength":
        return [_report(f"{path}: must be at least {value} characters long", path, keyword, [str(value)])]
    if keyword == "pattern":
        return [_report(f"{path}: does not match the regex pattern {value}", path, keyword, [value])]
    if keyword == "format":
        return [_report(f"{path}: does not match the {value} pattern", path, keyword, [value])]
    if keyword == "enum":
        allowed = json.dumps(value, ensure_ascii=False)
        return [_report(f"{path}: does not have a value in the enumeration {_clip(allowed, 200)}", path, keyword, [allowed])]
    if keyword in ("minimum", "maximum"):
        exclusive = error.schema.get("exclusiveMinimum" if keyword == "minimum" else "exclusiveMaximum", False)
        kind = "an exclusive " if exclusive else "a "
        return [_report(f"{path}: must have {kind}{keyword} value of {value}", path, keyword, [str(value)])]
    if keyword in ("minItems", "maxItems"):
        bound = "minimum" if keyword == "minItems" else "maximum"
        return [_report(f"{path}: there must be a {bound} of {value} items in the array", path, keyword, [str(value)])]
    if keyword in ("minProperties", "maxProperties"):
        bound = "minimum" if keyword == "minProperties" else "maximum"
        return [_report(f"{path}: must have a {bound} of {value} properties", path, keyword, [str(value)])]
    if keyword == "uniqueItems":
        return [_report(f"{path}: the items in the array must be unique", path, keyword, [])]
    if keyword == "multipleOf":
        return [_report(f"{path}: must be multiple of {value}", path, keyword, [str(value)])]
    if keyword in ("anyOf", "oneOf"):
        import jsonschema.exceptions

        wording = "any of the schemas" if keyword == "anyOf" else "exactly one of the schemas"
        closest = jsonschema.exceptions.best_match(error.context) if error.context else None
        detail = ""
        if closest is not None:
            inner = _error_reports(closest)
            if inner:
                detail = f" (closest: {inner[0]['message']})"
        return [_report(_clip(f"{path}: should be valid to {wording}{detail}", 500), path, keyword, [str(len(value))])]
    if keyword == "not":
        return [_report(f"{path}: should not be valid to the schema", path, keyword, [])]
    # dependencies, allOf's own message, anything else: jsonschema's message, clipped.
    return [_report(_clip(f"{path}: {error.message}", 300), path, keyword, None)]


def _fast_report(exc: JsonSchemaValueException) -> dict[str, Any]:
    parts = list(exc.path or [])[1:]  # fastjsonschema's path starts with "data"
    path = _json_path(parts)
    message = exc.message or "invalid"
    if exc.name and message.startswith(exc.name):
        message = message[len(exc.name) :].lstrip()
    return _report(_clip(f"{path}: {message}", 300), path, exc.rule, None)
