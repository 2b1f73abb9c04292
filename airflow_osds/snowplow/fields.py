"""The 131 fields of a Snowplow enriched event, in TSV order, and the ``atomic.events`` table they load into.

The order is Enrich's writer (``ConversionUtils.tabSeparatedEnrichedEvent``, Enrich 6.10), which
the Scala and Python analytics SDKs read the same way. Types and sizes are not Enrich's but the
**column's**, exactly as the Snowplow Postgres Loader 0.3.3 creates ``atomic.events``
(``storage/definitions.scala`` ``atomicColumns``) after its ``migrations/0-3-0.sql``, which widened
``user_ipaddress``, ``domain_userid``, ``network_userid``, ``refr_domain_userid`` and
``domain_sessionid`` to ``VARCHAR(128)`` (so ``domain_sessionid`` is text, not UUID). The column is
what PostgreSQL enforces, so it is what a line is checked against: a value that fits Enrich's
``FIELD_SIZES`` but not its column would fail the whole COPY batch, not one row.

``contexts``, ``unstruct_event`` and ``derived_contexts`` are not columns: their entities go to one
table per schema (see the entity-table module), so ``atomic.events`` has the other 128, in TSV
order. Like the loader's, the table has no primary key and no index (deduplication is the loader's
own, added separately).

Indexes here are 0-based TSV positions (Snowplow's docs number the fields from 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ATOMIC_COLUMNS",
    "ATOMIC_FIELDS",
    "ATOMIC_INDEXES",
    "FIELDS",
    "FIELD_COUNT",
    "FIELD_INDEX",
    "FIELD_NAMES",
    "JSON_FIELDS",
    "Field",
    "Kind",
    "events_table_sql",
    "quote_ident",
]

Kind = Literal["text", "int", "float", "bool", "tstamp", "uuid", "json"]

FIELD_COUNT = 131


@dataclass(frozen=True, slots=True)
class Field:
    """One TSV field: where it is, how it decodes, and the column it loads into.

    ``max_length`` is the column's character limit (``VARCHAR(n)``/``CHAR(n)``), ``None`` for
    the non-text kinds. ``sql_type`` is the column type of ``atomic.events``, ``None`` for the
    three JSON fields, which have no column there. ``required`` fields are ``NOT NULL``.
    """

    name: str
    index: int
    kind: Kind
    max_length: int | None
    required: bool
    sql_type: str | None = None


# name, kind, column type ("" for the JSON fields), NOT NULL. CHAR(n)/VARCHAR(n) give max_length.
_SPEC: tuple[tuple[str, Kind, str, bool], ...] = (
    ("app_id", "text", "VARCHAR(255)", False),
    ("platform", "text", "VARCHAR(255)", False),
    ("etl_tstamp", "tstamp", "TIMESTAMP", False),
    ("collector_tstamp", "tstamp", "TIMESTAMP", True),
    ("dvce_created_tstamp", "tstamp", "TIMESTAMP", False),
    ("event", "text", "VARCHAR(128)", False),
    ("event_id", "uuid", "UUID", True),
    ("txn_id", "int", "INTEGER", False),
    ("name_tracker", "text", "VARCHAR(128)", False),
    ("v_tracker", "text", "VARCHAR(100)", False),
    ("v_collector", "text", "VARCHAR(100)", True),
    ("v_etl", "text", "VARCHAR(100)", True),
    ("user_id", "text", "VARCHAR(255)", False),
    ("user_ipaddress", "text", "VARCHAR(128)", False),
    ("user_fingerprint", "text", "VARCHAR(50)", False),
    ("domain_userid", "text", "VARCHAR(128)", False),
    ("domain_sessionidx", "int", "INTEGER", False),
    ("network_userid", "text", "VARCHAR(128)", False),
    ("geo_country", "text", "CHAR(2)", False),
    ("geo_region", "text", "CHAR(3)", False),
    ("geo_city", "text", "VARCHAR(75)", False),
    ("geo_zipcode", "text", "VARCHAR(15)", False),
    ("geo_latitude", "float", "DOUBLE PRECISION", False),
    ("geo_longitude", "float", "DOUBLE PRECISION", False),
    ("geo_region_name", "text", "VARCHAR(100)", False),
    ("ip_isp", "text", "VARCHAR(100)", False),
    ("ip_organization", "text", "VARCHAR(100)", False),
    ("ip_domain", "text", "VARCHAR(100)", False),
    ("ip_netspeed", "text", "VARCHAR(100)", False),
    ("page_url", "text", "VARCHAR(4096)", False),
    ("page_title", "text", "VARCHAR(2000)", False),
    ("page_referrer", "text", "VARCHAR(4096)", False),
    ("page_urlscheme", "text", "VARCHAR(16)", False),
    ("page_urlhost", "text", "VARCHAR(255)", False),
    ("page_urlport", "int", "INTEGER", False),
    ("page_urlpath", "text", "VARCHAR(3000)", False),
    ("page_urlquery", "text", "VARCHAR(6000)", False),
    ("page_urlfragment", "text", "VARCHAR(3000)", False),
    ("refr_urlscheme", "text", "VARCHAR(16)", False),
    ("refr_urlhost", "text", "VARCHAR(255)", False),
    ("refr_urlport", "int", "INTEGER", False),
    ("refr_urlpath", "text", "VARCHAR(6000)", False),
    ("refr_urlquery", "text", "VARCHAR(6000)", False),
    ("refr_urlfragment", "text", "VARCHAR(3000)", False),
    ("refr_medium", "text", "VARCHAR(25)", False),
    ("refr_source", "text", "VARCHAR(50)", False),
    ("refr_term", "text", "VARCHAR(255)", False),
    ("mkt_medium", "text", "VARCHAR(255)", False),
    ("mkt_source", "text", "VARCHAR(255)", False),
    ("mkt_term", "text", "VARCHAR(255)", False),
    ("mkt_content", "text", "VARCHAR(500)", False),
    ("mkt_campaign", "text", "VARCHAR(255)", False),
    ("contexts", "json", "", False),
    ("se_category", "text", "VARCHAR(1000)", False),
    ("se_action", "text", "VARCHAR(1000)", False),
    ("se_label", "text", "VARCHAR(1000)", False),
    ("se_property", "text", "VARCHAR(1000)", False),
    ("se_value", "float", "DOUBLE PRECISION", False),
    ("unstruct_event", "json", "", False),
    ("tr_orderid", "text", "VARCHAR(255)", False),
    ("tr_affiliation", "text", "VARCHAR(255)", False),
    ("tr_total", "float", "DOUBLE PRECISION", False),
    ("tr_tax", "float", "DOUBLE PRECISION", False),
    ("tr_shipping", "float", "DOUBLE PRECISION", False),
    ("tr_city", "text", "VARCHAR(255)", False),
    ("tr_state", "text", "VARCHAR(255)", False),
    ("tr_country", "text", "VARCHAR(255)", False),
    ("ti_orderid", "text", "VARCHAR(255)", False),
    ("ti_sku", "text", "VARCHAR(255)", False),
    ("ti_name", "text", "VARCHAR(255)", False),
    ("ti_category", "text", "VARCHAR(255)", False),
    ("ti_price", "float", "DOUBLE PRECISION", False),
    ("ti_quantity", "int", "INTEGER", False),
    ("pp_xoffset_min", "int", "INTEGER", False),
    ("pp_xoffset_max", "int", "INTEGER", False),
    ("pp_yoffset_min", "int", "INTEGER", False),
    ("pp_yoffset_max", "int", "INTEGER", False),
    ("useragent", "text", "VARCHAR(1000)", False),
    ("br_name", "text", "VARCHAR(50)", False),
    ("br_family", "text", "VARCHAR(50)", False),
    ("br_version", "text", "VARCHAR(50)", False),
    ("br_type", "text", "VARCHAR(50)", False),
    ("br_renderengine", "text", "VARCHAR(50)", False),
    ("br_lang", "text", "VARCHAR(255)", False),
    ("br_features_pdf", "bool", "BOOLEAN", False),
    ("br_features_flash", "bool", "BOOLEAN", False),
    ("br_features_java", "bool", "BOOLEAN", False),
    ("br_features_director", "bool", "BOOLEAN", False),
    ("br_features_quicktime", "bool", "BOOLEAN", False),
    ("br_features_realplayer", "bool", "BOOLEAN", False),
    ("br_features_windowsmedia", "bool", "BOOLEAN", False),
    ("br_features_gears", "bool", "BOOLEAN", False),
    ("br_features_silverlight", "bool", "BOOLEAN", False),
    ("br_cookies", "bool", "BOOLEAN", False),
    ("br_colordepth", "text", "VARCHAR(12)", False),
    ("br_viewwidth", "int", "INTEGER", False),
    ("br_viewheight", "int", "INTEGER", False),
    ("os_name", "text", "VARCHAR(50)", False),
    ("os_family", "text", "VARCHAR(50)", False),
    ("os_manufacturer", "text", "VARCHAR(50)", False),
    ("os_timezone", "text", "VARCHAR(50)", False),
    ("dvce_type", "text", "VARCHAR(50)", False),
    ("dvce_ismobile", "bool", "BOOLEAN", False),
    ("dvce_screenwidth", "int", "INTEGER", False),
    ("dvce_screenheight", "int", "INTEGER", False),
    ("doc_charset", "text", "VARCHAR(128)", False),
    ("doc_width", "int", "INTEGER", False),
    ("doc_height", "int", "INTEGER", False),
    ("tr_currency", "text", "CHAR(3)", False),
    ("tr_total_base", "float", "DOUBLE PRECISION", False),
    ("tr_tax_base", "float", "DOUBLE PRECISION", False),
    ("tr_shipping_base", "float", "DOUBLE PRECISION", False),
    ("ti_currency", "text", "CHAR(3)", False),
    ("ti_price_base", "float", "DOUBLE PRECISION", False),
    ("base_currency", "text", "CHAR(3)", False),
    ("geo_timezone", "text", "VARCHAR(64)", False),
    ("mkt_clickid", "text", "VARCHAR(128)", False),
    ("mkt_network", "text", "VARCHAR(64)", False),
    ("etl_tags", "text", "VARCHAR(500)", False),
    ("dvce_sent_tstamp", "tstamp", "TIMESTAMP", False),
    ("refr_domain_userid", "text", "VARCHAR(128)", False),
    ("refr_dvce_tstamp", "tstamp", "TIMESTAMP", False),
    ("derived_contexts", "json", "", False),
    ("domain_sessionid", "text", "VARCHAR(128)", False),
    ("derived_tstamp", "tstamp", "TIMESTAMP", False),
    ("event_vendor", "text", "VARCHAR(1000)", False),
    ("event_name", "text", "VARCHAR(1000)", False),
    ("event_format", "text", "VARCHAR(128)", False),
    ("event_version", "text", "VARCHAR(128)", False),
    ("event_fingerprint", "text", "VARCHAR(128)", False),
    ("true_tstamp", "tstamp", "TIMESTAMP", False),
)


def _max_length(sql_type: str) -> int | None:
    if sql_type.startswith(("VARCHAR(", "CHAR(")):
        return int(sql_type[sql_type.index("(") + 1 : -1])
    return None


FIELDS: tuple[Field, ...] = tuple(
    Field(name, index, kind, _max_length(sql_type), required, sql_type or None)
    for index, (name, kind, sql_type, required) in enumerate(_SPEC)
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELD_INDEX: dict[str, int] = {f.name: f.index for f in FIELDS}
JSON_FIELDS: tuple[str, ...] = ("contexts", "unstruct_event", "derived_contexts")
ATOMIC_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.kind != "json")
ATOMIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in ATOMIC_FIELDS)
# TSV positions of the 128 columns, for ``operator.itemgetter(*ATOMIC_INDEXES)(parts)``.
ATOMIC_INDEXES: tuple[int, ...] = tuple(f.index for f in ATOMIC_FIELDS)

if len(FIELDS) != FIELD_COUNT or len(ATOMIC_FIELDS) != FIELD_COUNT - len(JSON_FIELDS):  # pragma: no cover
    raise AssertionError("the enriched-event field table is inconsistent")


def quote_ident(name: str) -> str:
    """A PostgreSQL quoted identifier: keeps its case, and a ``"`` inside is doubled."""
    if "\x00" in name:
        raise ValueError("a PostgreSQL identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def events_table_sql(schema: str = "atomic") -> str:
    """``CREATE TABLE IF NOT EXISTS <schema>.events``: the loader's 128 columns, in TSV order.

    Identifiers are quoted, so ``schema`` is used exactly as given (a quoted name is
    case-sensitive: ``"Atomic"`` is not ``atomic``). No primary key and no index, as the
    Postgres Loader creates it; ``WITH (OIDS=FALSE)`` is left out (the default since
    PostgreSQL 12, which rejects only ``OIDS=TRUE``).
    """
    columns = ",\n".join(
        f"    {quote_ident(f.name)} {f.sql_type}{' NOT NULL' if f.required else ''}" for f in ATOMIC_FIELDS
    )
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.{quote_ident('events')} (\n{columns}\n)"
