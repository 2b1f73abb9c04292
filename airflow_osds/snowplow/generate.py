"""Synthetic Snowplow enriched events: a seeded generator of realistic TSV lines.

**This is ours, not Snowplow's.** There is no Python implementation of Snowplow Enrich (the JVM
``snowplow/enrich`` turns tracker payloads into enriched events), so test and demo data is made
here, from the 131-field layout and a documented subset of Enrich's rules:

* visitors with a stable ``domain_userid``/``network_userid``, a device (user agent, screen,
  language, time zone, a device clock that may be off) and a location (the geo fields from a
  small table of cities, an IP address from the documentation ranges 192.0.2.0/24,
  198.51.100.0/24 and 203.0.113.0/24);
* sessions (``domain_sessionid``, ``domain_sessionidx`` counting a visitor's sessions) of page
  views, page pings every ~10 s, structured add-to-cart events, a checkout funnel of
  self-describing ``com.acme/checkout_step`` events carrying a ``com.acme/cart`` context, and a
  legacy transaction plus its items when a checkout completes; returning visitors come back
  with the next session index;
* sessions interleaved in time order, as a collector sees them;
* the timestamps Enrich derives: ``dvce_created_tstamp`` on the device clock, ``dvce_sent_tstamp``
  after the tracker's buffering, ``collector_tstamp`` on arrival, ``etl_tstamp`` a little later,
  ``derived_tstamp = collector − (sent − created)`` when sent > created, else the collector's
  (``true_tstamp`` is not set), all written ``yyyy-MM-dd HH:mm:ss.SSS`` in UTC;
* page and referrer URLs split into scheme/host/port/path/query/fragment (port 443 filled in
  for https), referrer medium/source/term for search, social and internal referrers,
  ``mkt_*`` fields from ``utm_*`` parameters and a ``gclid`` click id;
* ``event``/``event_vendor``/``event_name``/``event_format``/``event_version`` per event type
  (``com.snowplowanalytics.snowplow/page_view|page_ping|transaction|transaction_item/1-0-0``,
  ``com.google.analytics/event/1-0-0`` for structured events, the schema of a self-describing
  event), ``contexts`` in a ``contexts/jsonschema/1-0-1`` envelope with the ``web_page`` context
  (one id per page view, shared by its pings), ``unstruct_event`` in an
  ``unstruct_event/jsonschema/1-0-0`` envelope, and ``derived_contexts`` with the
  ``nl.basjes/yauaa_context/1-0-4`` and ``com.iab.snowplow/spiders_and_robots/1-0-0`` entities
  the enrichments would add;
* ``event_fingerprint`` as Enrich's default fingerprint enrichment computes it: the MD5 hex of
  the event's tracker parameters without ``eid``, ``nuid``, ``stm`` and ``cv``, sorted by key,
  each written ``key\\x1fvalue\\x1f``.

``v_etl`` says ``airflow-osds-generate-<version>``, so this data is never taken for Enrich's.

Bad lines are opt-in (``bad=``), one kind after another from :data:`BAD_KINDS`: a line that is
not TSV, one with a field too few or too many, one with a value PostgreSQL would refuse (see
:mod:`airflow_osds.snowplow.tsv`), one whose ``contexts`` is not JSON, one with an entity that
violates its schema, and one with an entity whose schema no registry has
(``com.acme/wishlist``). The JSON Schemas of the ``com.acme`` entities are
:func:`custom_schemas`, to put in a static registry next to Iglu Central's.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import heapq
import itertools
import os
import random
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_osds import __version__
from airflow_osds.snowplow import _json
from airflow_osds.snowplow.fields import FIELD_COUNT, FIELD_INDEX


__all__ = [
    "BAD_KINDS",
    "CART_VERSIONS",
    "INVALID_VALUES",
    "custom_schemas",
    "generate",
    "generate_labelled",
    "write",
    "write_custom_schemas",
]

BAD_KINDS: tuple[str, ...] = (
    "not_tsv",
    "field_count",
    "invalid_value",
    "invalid_json",
    "schema_violation",
    "unknown_schema",
)
GOOD = "good"

# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------

_SELF_DESC = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
YAUAA = "iglu:nl.basjes/yauaa_context/jsonschema/1-0-4"
SPIDERS = "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0"
CHECKOUT_STEP = "iglu:com.acme/checkout_step/jsonschema/1-0-0"
WISHLIST = "iglu:com.acme/wishlist/jsonschema/1-0-0"  # in no registry: the unknown-schema bad line
CART_VERSIONS: tuple[str, ...] = ("1-0-0", "1-0-1", "2-0-0")


def _self_describing(vendor: str, name: str, version: str, description: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": _SELF_DESC,
        "description": description,
        "self": {"vendor": vendor, "name": name, "format": "jsonschema", "version": version},
        **body,
    }


def custom_schemas() -> dict[str, dict[str, Any]]:
    """The ``com.acme`` schemas the generated events use, keyed by their static-registry path.

    A key is ``<vendor>/<name>/jsonschema/<M-R-A>``: write each value as JSON to
    ``<root>/schemas/<key>`` (:func:`write_custom_schemas` does). Self-describing JSON Schemas,
    draft-04 like Iglu Central's. ``com.acme/cart`` has three versions: 1-0-1 adds one optional
    property (``coupon_code``) to 1-0-0, so a loader migrates the model-1 table with one
    ``ADD COLUMN``; 2-0-0 is a new model (money in minor units, ``total`` gone), so a new table.
    """
    checkout_step = _self_describing(
        "com.acme",
        "checkout_step",
        "1-0-0",
        "A step of the acme shop's checkout funnel (synthetic, airflow-osds)",
        {
            "type": "object",
            "properties": {
                "step": {"type": "integer", "minimum": 1, "maximum": 5},
                "step_name": {"enum": ["cart", "shipping", "payment", "review", "confirmation"]},
                "option": {"type": ["string", "null"], "maxLength": 64},
            },
            "required": ["step", "step_name"],
            "additionalProperties": False,
        },
    )
    item = {
        "type": "object",
        "properties": {
            "sku": {"type": "string", "maxLength": 32},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
            "unit_price": {"type": "number", "minimum": 0},
        },
        "required": ["sku", "quantity", "unit_price"],
        "additionalProperties": False,
    }
    cart_properties: dict[str, Any] = {
        "cart_id": {"type": "string", "format": "uuid"},
        "currency": {"type": "string", "minLength": 3, "maxLength": 3},
        "total": {"type": "number", "minimum": 0},
        "item_count": {"type": "integer", "minimum": 0, "maximum": 1000},
        "items": {"type": "array", "items": item},
        "created_at": {"type": "string", "format": "date-time"},
    }
    cart_1_0_0 = _self_describing(
        "com.acme",
        "cart",
        "1-0-0",
        "The shopping cart at the time of an event (synthetic, airflow-osds)",
        {
            "type": "object",
            "properties": cart_properties,
            "required": ["cart_id", "currency", "total", "item_count"],
            "additionalProperties": False,
        },
    )
    cart_1_0_1 = _self_describing(
        "com.acme",
        "cart",
        "1-0-1",
        "The shopping cart at the time of an event; 1-0-1 adds the optional coupon_code (synthetic, airflow-osds)",
        {
            "type": "object",
            "properties": {**cart_properties, "coupon_code": {"type": ["string", "null"], "maxLength": 32}},
            "required": ["cart_id", "currency", "total", "item_count"],
            "additionalProperties": False,
        },
    )
    model_2 = {k: v for k, v in cart_properties.items() if k != "total"}
    cart_2_0_0 = _self_describing(
        "com.acme",
        "cart",
        "2-0-0",
        "The shopping cart; model 2 keeps money in minor units (total_minor) and drops total (synthetic, airflow-osds)",
        {
            "type": "object",
            "properties": {**model_2, "total_minor": {"type": "integer", "minimum": 0, "maximum": 2147483647}},
            "required": ["cart_id", "currency", "total_minor", "item_count"],
            "additionalProperties": False,
        },
    )
    schemas = {"checkout_step/jsonschema/1-0-0": checkout_step}
    schemas.update({f"cart/jsonschema/{s['self']['version']}": s for s in (cart_1_0_0, cart_1_0_1, cart_2_0_0)})
    return {f"com.acme/{key}": value for key, value in schemas.items()}


def write_custom_schemas(root: str | os.PathLike[str]) -> list[Path]:
    """Write :func:`custom_schemas` into the static registry at ``root`` (``root/schemas/...``)."""
    written = []
    for key, schema in custom_schemas().items():
        path = Path(root) / "schemas" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_json.dumps(schema) + "\n", encoding="utf-8")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# The world: site, places, devices
# ---------------------------------------------------------------------------------------------

_HOST = "www.acme-shop.example"
_APP_ID = "acme-shop"
_V_TRACKER = "js-3.24.2"
_V_COLLECTOR = "ssc-3.2.0-kinesis"
_V_ETL = f"airflow-osds-generate-{__version__}"

# country, region, city, zipcode, lat, lon, region name, time zone, currency, language
_PLACES: tuple[tuple[str, ...], ...] = (
    ("NL", "NH", "Amsterdam", "1012", "52.3676", "4.9041", "North Holland", "Europe/Amsterdam", "EUR", "nl-NL"),
    ("GB", "ENG", "London", "EC1A", "51.5074", "-0.1278", "England", "Europe/London", "GBP", "en-GB"),
    ("US", "CA", "San Francisco", "94103", "37.7749", "-122.4194", "California", "America/Los_Angeles", "USD", "en-US"),
    ("US", "NY", "New York", "10001", "40.7128", "-74.0060", "New York", "America/New_York", "USD", "en-US"),
    ("DE", "BE", "Berlin", "10115", "52.5200", "13.4050", "Land Berlin", "Europe/Berlin", "EUR", "de-DE"),
    ("FR", "IDF", "Paris", "75001", "48.8566", "2.3522", "Île-de-France", "Europe/Paris", "EUR", "fr-FR"),
    ("BR", "SP", "São Paulo", "01000-000", "-23.5505", "-46.6333", "São Paulo", "America/Sao_Paulo", "BRL", "pt-BR"),
    ("JP", "13", "Tokyo", "100-0001", "35.6762", "139.6503", "Tokyo", "Asia/Tokyo", "JPY", "ja-JP"),
    ("AU", "NSW", "Sydney", "2000", "-33.8688", "151.2093", "New South Wales", "Australia/Sydney", "AUD", "en-AU"),
    ("IN", "MH", "Mumbai", "400001", "19.0760", "72.8777", "Maharashtra", "Asia/Kolkata", "INR", "en-IN"),
)
_PLACE_WEIGHTS = (12, 14, 10, 10, 10, 8, 6, 6, 4, 4)
_TEST_NETS = ("192.0.2", "198.51.100", "203.0.113")


def _yauaa(device: str, os_class: str, os_name: str, os_version: str, engine: str, engine_version: str,
           agent: str, agent_version: str, brand: str = "Unknown", name: str = "Desktop") -> dict[str, str]:  # fmt: skip
    return {
        "deviceClass": device,
        "deviceName": name,
        "deviceBrand": brand,
        "operatingSystemClass": os_class,
        "operatingSystemName": os_name,
        "operatingSystemVersion": os_version,
        "operatingSystemNameVersion": f"{os_name} {os_version}",
        "layoutEngineClass": "Browser",
        "layoutEngineName": engine,
        "layoutEngineVersion": engine_version,
        "layoutEngineVersionMajor": engine_version.split(".")[0],
        "agentClass": "Browser",
        "agentName": agent,
        "agentVersion": agent_version,
        "agentVersionMajor": agent_version.split(".")[0],
        "agentNameVersion": f"{agent} {agent_version}",
        "agentNameVersionMajor": f"{agent} {agent_version.split('.')[0]}",
    }


# user agent, yauaa entity, (br_name, br_family, br_version, br_type, br_renderengine),
# (os_name, os_family, os_manufacturer), dvce_type, dvce_ismobile, screens, features (pdf..silverlight)
_DEVICES: tuple[tuple[Any, ...], ...] = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        _yauaa("Desktop", "Desktop", "Windows NT", "10.0", "Blink", "124.0", "Chrome", "124.0.0.0"),
        ("Chrome 12", "Chrome", "124.0.0.0", "Browser", "WEBKIT"),
        ("Windows 10", "Windows", "Microsoft Corporation"),
        "Computer", "0", ((1920, 1080), (2560, 1440), (1366, 768)), "100000000",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        _yauaa("Desktop", "Desktop", "Mac OS", "10.15.7", "AppleWebKit", "605.1.15", "Safari", "17.4", "Apple", "Apple Macintosh"),
        ("Safari 17", "Safari", "17.4", "Browser", "WEBKIT"),
        ("Mac OS X", "Mac OS X", "Apple Inc."),
        "Computer", "0", ((1440, 900), (1680, 1050), (2560, 1600)), "100000000",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        _yauaa("Desktop", "Desktop", "Linux", "??", "Gecko", "125.0", "Firefox", "125.0"),
        ("Firefox 12", "Firefox", "125.0", "Browser", "GECKO"),
        ("Linux", "Linux", "Other"),
        "Computer", "0", ((1920, 1080), (1600, 900)), "100000000",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        _yauaa("Phone", "Mobile", "iOS", "17.4", "AppleWebKit", "605.1.15", "Safari", "17.4", "Apple", "Apple iPhone"),
        ("Mobile Safari", "Safari", "17.4", "Browser (mobile)", "WEBKIT"),
        ("iOS 17 (iPhone)", "iOS", "Apple Inc."),
        "Mobile", "1", ((390, 844), (430, 932), (375, 667)), "",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        _yauaa("Phone", "Mobile", "Android", "14", "Blink", "124.0", "Chrome", "124.0.0.0", "Google", "Google Pixel 8"),
        ("Chrome Mobile", "Chrome", "124.0.0.0", "Browser (mobile)", "WEBKIT"),
        ("Android 1.x", "Android", "Google Inc."),
        "Mobile", "1", ((412, 915), (360, 800)), "",
    ),
)
_DEVICE_WEIGHTS = (34, 16, 6, 26, 18)
_SPIDERS_BROWSER = {"spiderOrRobot": False, "category": "BROWSER", "reason": "PASSED_ALL", "primaryImpact": "NONE"}

# sku, name, unit price
_PRODUCTS: tuple[tuple[str, str, float], ...] = (
    ("SKU-1001", "Trail running shoes", 119.95),
    ("SKU-1002", "Merino wool socks", 14.5),
    ("SKU-1003", "Rain jacket", 189.0),
    ("SKU-1004", "Water bottle 750 ml", 19.99),
    ("SKU-1005", "Headlamp", 39.0),
    ("SKU-1006", "Running vest", 84.25),
    ("SKU-1007", "Café mug", 12.0),
    ("SKU-1008", "Trekking poles", 99.0),
)
_STATIC_PAGES: tuple[tuple[str, str], ...] = (
    ("/", "Acme Shop – outdoor gear"),
    ("/products/", "All products | Acme Shop"),
    ("/products/new", "New arrivals | Acme Shop"),
    ("/blog/trail-running-for-beginners", "Trail running for beginners | Acme Shop blog"),
    ("/blog/packing-list", "Our packing list | Acme Shop blog"),
    ("/about", "About us | Acme Shop"),
    ("/search", "Search | Acme Shop"),
)
_CHECKOUT_STEPS = ("cart", "shipping", "payment", "review", "confirmation")
_CHECKOUT_OPTIONS = (None, "standard", "card", None, None)
_SEARCH_TERMS = ("trail shoes", "rain jacket women", "headlamp", "merino socks")
_CAMPAIGNS = ("spring_sale", "newsletter_w14", "retargeting")

# landing referrer kinds: weight, (scheme, host, path, query), medium, source, term
_LANDINGS: tuple[tuple[Any, ...], ...] = (
    (30, None, "", "", ""),  # direct
    (30, ("https", "www.google.com", "/", ""), "search", "Google", ""),
    (10, ("https", "www.bing.com", "/search", "q={term}"), "search", "Bing", "{term}"),
    (10, ("https", "l.facebook.com", "/l.php", ""), "social", "Facebook", ""),
    (10, ("https", "t.co", "/x1y2z3", ""), "social", "Twitter", ""),
    (10, "email", "", "", ""),  # newsletter click, utm parameters
)
_LANDING_WEIGHTS = tuple(landing[0] for landing in _LANDINGS)

# ---------------------------------------------------------------------------------------------
# Field positions
# ---------------------------------------------------------------------------------------------

_I = FIELD_INDEX
_APP, _PLATFORM, _ETL, _COLLECTOR, _CREATED = (_I[k] for k in ("app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp"))  # fmt: skip
_EVENT, _EVENT_ID, _NAME_TRACKER, _V_TR, _V_COL, _V_ETL_I = (_I[k] for k in ("event", "event_id", "name_tracker", "v_tracker", "v_collector", "v_etl"))  # fmt: skip
_USER_ID, _IP, _DUID, _SIDX, _NUID = (_I[k] for k in ("user_id", "user_ipaddress", "domain_userid", "domain_sessionidx", "network_userid"))  # fmt: skip
_GEO_FIRST = _I["geo_country"]  # geo_country … geo_region_name are contiguous
_PAGE_FIRST, _PAGE_LAST = _I["page_url"], _I["mkt_campaign"]  # page_* … mkt_* are contiguous
_CONTEXTS, _UNSTRUCT, _DERIVED = _I["contexts"], _I["unstruct_event"], _I["derived_contexts"]
_SE_FIRST = _I["se_category"]  # se_category … se_value
_TR_FIRST = _I["tr_orderid"]  # tr_orderid … tr_country
_TI_FIRST = _I["ti_orderid"]  # ti_orderid … ti_quantity
_PP_FIRST = _I["pp_xoffset_min"]  # the four pp_* offsets
_UA, _BR_FIRST, _BR_LANG = _I["useragent"], _I["br_name"], _I["br_lang"]
_FEATURES_FIRST, _COOKIES, _COLORDEPTH = _I["br_features_pdf"], _I["br_cookies"], _I["br_colordepth"]
_VIEW_W, _VIEW_H, _OS_FIRST, _OS_TZ = _I["br_viewwidth"], _I["br_viewheight"], _I["os_name"], _I["os_timezone"]
_DVCE_TYPE, _MOBILE, _SCREEN_W, _SCREEN_H = _I["dvce_type"], _I["dvce_ismobile"], _I["dvce_screenwidth"], _I["dvce_screenheight"]  # fmt: skip
_CHARSET, _DOC_W, _DOC_H = _I["doc_charset"], _I["doc_width"], _I["doc_height"]
_TR_CURRENCY, _TR_TOTAL_BASE, _TI_CURRENCY, _TI_PRICE_BASE = _I["tr_currency"], _I["tr_total_base"], _I["ti_currency"], _I["ti_price_base"]  # fmt: skip
_BASE_CURRENCY, _GEO_TZ, _CLICKID, _NETWORK = _I["base_currency"], _I["geo_timezone"], _I["mkt_clickid"], _I["mkt_network"]  # fmt: skip
_SENT, _SID, _DERIVED_TS = _I["dvce_sent_tstamp"], _I["domain_sessionid"], _I["derived_tstamp"]
_VENDOR, _FINGERPRINT = _I["event_vendor"], _I["event_fingerprint"]

# Euro reference rates for the currency-conversion enrichment's *_base fields (base currency EUR).
_TO_EUR = {"EUR": 1.0, "GBP": 1.17, "USD": 0.92, "BRL": 0.18, "JPY": 0.0061, "AUD": 0.61, "INR": 0.011}
# Prices are quoted in EUR and shown in the visitor's currency at these rates.
_FROM_EUR = {code: 1.0 / rate for code, rate in _TO_EUR.items()}
_ZERO_DECIMALS = frozenset({"JPY"})


def _money(amount: float, currency: str) -> float:
    return float(round(amount)) if currency in _ZERO_DECIMALS else round(amount, 2)


def _num(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


# ---------------------------------------------------------------------------------------------
# Helpers on the hot path
# ---------------------------------------------------------------------------------------------


class _Clock:
    """Epoch milliseconds → ``yyyy-MM-dd HH:mm:ss.SSS``: each hour's prefix cached, the rest from tables."""

    __slots__ = ("_hours",)
    _MMSS: tuple[str, ...] = ()
    _MILLIS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._hours: dict[int, str] = {}
        if not _Clock._MMSS:  # built on first use, not at import
            _Clock._MMSS = tuple(f"{m:02d}:{sec:02d}." for m in range(60) for sec in range(60))
            _Clock._MILLIS = tuple(f"{ms:03d}" for ms in range(1000))

    def __call__(self, ms: int) -> str:
        seconds, millis = divmod(ms, 1000)
        hour, rest = divmod(seconds, 3600)
        prefix = self._hours.get(hour)
        if prefix is None:
            if len(self._hours) > 10_000:
                self._hours.clear()
            t = time.gmtime(hour * 3600)
            prefix = self._hours[hour] = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:"
        return prefix + self._MMSS[rest] + self._MILLIS[millis]


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID_SET = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def _uuid4(rng: random.Random) -> str:
    h = (rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET).to_bytes(16, "big").hex()  # twice as fast as "%032x"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Enrich's default event fingerprint is the MD5 of ``key\x1fvalue\x1f`` over the tracker
# parameters sorted by key. The key sets repeat (one per visitor kind and event kind), so each
# one's sorted order is compiled once into a format string over the values in given order.
_FINGERPRINT_FORMATS: dict[tuple[str, ...], str] = {}


def _fingerprint(keys: tuple[str, ...], values: Sequence[str]) -> str:
    fmt = _FINGERPRINT_FORMATS.get(keys)
    if fmt is None:
        if len(set(keys)) != len(keys):  # pragma: no cover - a bug in the caller
            raise AssertionError(f"duplicate tracker parameters: {keys}")
        order = sorted(range(len(keys)), key=keys.__getitem__)
        fmt = _FINGERPRINT_FORMATS[keys] = "".join(f"{keys[i]}\x1f{{{i}}}\x1f" for i in order)
    return hashlib.md5(fmt.format(*values).encode()).hexdigest()


def _contexts(entities: str) -> str:
    return f'{{"schema":"{CONTEXTS}","data":[{entities}]}}'


def _web_page(page_id: str) -> str:
    return f'{{"schema":"{WEB_PAGE}","data":{{"id":"{page_id}"}}}}'


def _port(scheme: str) -> str:
    return "443" if scheme == "https" else "80"


def _page_block(
    url: tuple[str, str, str, str, str], title: str, referrer: tuple[str, str, str, str] | None,
    medium: str, source: str, term: str,
) -> list[str]:  # fmt: skip
    """The 23 contiguous fields ``page_url`` … ``mkt_campaign`` of one page, as Enrich splits them."""
    scheme, host, path, query, fragment = url
    page_url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
    block = [page_url, title, "", scheme, host, _port(scheme), path, query, fragment]
    if referrer is None:
        block += ["", "", "", "", "", "", "", "", ""]
    else:
        r_scheme, r_host, r_path, r_query = referrer
        block[2] = f"{r_scheme}://{r_host}{r_path}" + (f"?{r_query}" if r_query else "")
        block += [r_scheme, r_host, _port(r_scheme), r_path, r_query, "", medium, source, term]
    params = dict(p.partition("=")[::2] for p in query.split("&")) if query else {}
    block += [params.get(f"utm_{k}", "") for k in ("medium", "source", "term", "content", "campaign")]
    return block


# ---------------------------------------------------------------------------------------------
# Visitors and sessions
# ---------------------------------------------------------------------------------------------


class _Visitor:
    __slots__ = ("base", "currency", "params", "sessions", "skew", "user_id")

    def __init__(self, rng: random.Random) -> None:
        place = rng.choices(_PLACES, _PLACE_WEIGHTS)[0]
        device = rng.choices(_DEVICES, _DEVICE_WEIGHTS)[0]
        ua, yauaa, browser, os_fields, dvce_type, mobile, screens, features = device
        country, region, city, zipcode, lat, lon, region_name, tz, currency, lang = place
        self.currency = currency
        self.sessions = 0
        self.user_id = ""
        # Most device clocks are right to a second or two; one in ten is minutes off.
        self.skew = rng.randint(-1500, 1500) if rng.random() < 0.9 else rng.randint(-600_000, 600_000)
        screen_w, screen_h = rng.choice(screens)
        view_w, view_h = screen_w - rng.choice((0, 0, 15, 17)), screen_h - rng.randint(60, 160)
        row = [""] * FIELD_COUNT
        row[_APP], row[_PLATFORM] = _APP_ID, "web"
        row[_NAME_TRACKER], row[_V_TR], row[_V_COL], row[_V_ETL_I] = "sp", _V_TRACKER, _V_COLLECTOR, _V_ETL
        row[_IP] = f"{rng.choice(_TEST_NETS)}.{rng.randint(1, 254)}"
        row[_DUID], row[_NUID] = _uuid4(rng), _uuid4(rng)
        jitter_lat = float(lat) + rng.uniform(-0.05, 0.05)
        jitter_lon = float(lon) + rng.uniform(-0.05, 0.05)
        row[_GEO_FIRST : _GEO_FIRST + 7] = [country, region, city, zipcode, f"{jitter_lat:.4f}", f"{jitter_lon:.4f}", region_name]  # fmt: skip
        row[_UA] = ua
        row[_BR_FIRST : _BR_FIRST + 5] = browser
        row[_BR_LANG] = lang
        if features:
            row[_FEATURES_FIRST : _FEATURES_FIRST + 9] = list(features)
        row[_COOKIES], row[_COLORDEPTH] = "1", "24"
        row[_VIEW_W], row[_VIEW_H] = str(view_w), str(view_h)
        row[_OS_FIRST : _OS_FIRST + 3] = os_fields
        row[_OS_TZ] = tz
        row[_DVCE_TYPE], row[_MOBILE] = dvce_type, mobile
        row[_SCREEN_W], row[_SCREEN_H] = str(screen_w), str(screen_h)
        row[_CHARSET], row[_GEO_TZ], row[_BASE_CURRENCY] = "UTF-8", tz, "EUR"
        row[_DERIVED] = _json.dumps(
            {"schema": CONTEXTS, "data": [{"schema": YAUAA, "data": yauaa}, {"schema": SPIDERS, "data": _SPIDERS_BROWSER}]}
        )
        self.base = row
        # Tracker parameters that are the same for every event of this visitor (for the fingerprint).
        self.params = [
            ("aid", _APP_ID), ("p", "web"), ("tv", _V_TRACKER), ("tna", "sp"), ("duid", row[_DUID]),
            ("lang", lang), ("cs", "UTF-8"), ("res", f"{screen_w}x{screen_h}"), ("vp", f"{view_w}x{view_h}"),
            ("tz", tz), ("cd", "24"), ("cookie", "1"),
        ]  # fmt: skip
        if features:
            names = ("pdf", "fla", "java", "dir", "qt", "realp", "wma", "gears", "ag")
            self.params += [(f"f_{name}", flag) for name, flag in zip(names, features, strict=True)]


class _Session:
    """One visit: its events come out one at a time, each at the session's own clock."""

    __slots__ = (
        "base", "cart", "cart_id", "cart_started", "checkout_step", "clickid", "doc", "order", "page",
        "page_block", "page_id", "pages_left", "param_keys", "param_values", "pings", "prev_url", "sid", "state",
        "t", "visitor", "y_max",
    )  # fmt: skip

    def __init__(self, visitor: _Visitor, t: int, rng: random.Random) -> None:
        visitor.sessions += 1
        self.visitor = visitor
        self.t = t
        self.sid = _uuid4(rng)
        self.base = visitor.base[:]
        self.base[_SID], self.base[_SIDX] = self.sid, str(visitor.sessions)
        if not visitor.user_id and rng.random() < 0.15:  # logs in during this visit, stays known
            visitor.user_id = f"customer-{rng.randint(10_000, 99_999)}"
        self.base[_USER_ID] = visitor.user_id
        params = [*visitor.params, ("sid", self.sid), ("vid", str(visitor.sessions))]
        if visitor.user_id:
            params.append(("uid", visitor.user_id))
        self.param_keys = tuple(k for k, _ in params)
        self.param_values = tuple(v for _, v in params)
        self.state = "landing"
        self.pages_left = rng.choice((1, 1, 2, 3, 4, 6, 9))
        self.pings = 0
        self.cart: list[tuple[str, int, float]] = []
        self.cart_id = ""
        self.cart_started = 0
        self.checkout_step = 0
        self.order: list[tuple[str, Any]] = []
        self.page: tuple[str, str, str, str, str] = ("https", _HOST, "/", "", "")
        self.page_block: list[str] = []
        self.page_id = ""
        self.prev_url: tuple[str, str, str, str] | None = None
        self.clickid = ""
        self.doc = ("", "")
        self.y_max = 0


class _Generator:
    """The events of many interleaved sessions, in time order, as rows of 131 strings."""

    def __init__(self, seed: int, start: datetime, cart_version: str, concurrency: int = 48) -> None:
        if cart_version not in CART_VERSIONS:
            raise ValueError(f"cart_version must be one of {CART_VERSIONS}, not {cart_version!r}")
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self.rng = random.Random(seed)
        self.clock = _Clock()
        self.cart_schema = f"iglu:com.acme/cart/jsonschema/{cart_version}"
        self.cart_version = cart_version
        self.heap: list[tuple[int, int, _Session]] = []
        self.seq = itertools.count()
        t0 = int(start.timestamp() * 1000)
        for _ in range(concurrency):
            self._schedule(_Session(_Visitor(self.rng), t0 + self.rng.randint(0, 60_000), self.rng))

    def _schedule(self, session: _Session) -> None:
        heapq.heappush(self.heap, (session.t, next(self.seq), session))

    def next_row(self) -> list[str]:
        """The next event in time."""
        while True:
            session = heapq.heappop(self.heap)[2]
            row = self._step(session)
            if session.state == "end":
                self._replace(session)
            else:
                self._schedule(session)
            if row is not None:
                return row

    def _replace(self, session: _Session) -> None:
        rng = self.rng
        if rng.random() < 0.35:  # the same visitor comes back later, as session n+1
            later = session.t + rng.randint(1_800_000, 3 * 86_400_000)
            self._schedule(_Session(session.visitor, later, rng))
        else:
            self._schedule(_Session(_Visitor(rng), session.t + rng.randint(0, 30_000), rng))

    # -- one step of a session ------------------------------------------------------------

    def _step(self, s: _Session) -> list[str] | None:
        state = s.state
        if state == "ping":
            s.pings -= 1
            if s.pings <= 0:
                s.state = "next"
            return self._page_ping(s)
        if state == "next":
            rng = self.rng
            if s.pages_left <= 0:
                s.state = "end"
                return None
            path = s.page[2]
            if path.startswith("/products/SKU") and rng.random() < 0.35:
                return self._add_to_cart(s)
            if path == "/cart" and s.cart and rng.random() < 0.6:
                s.state = "checkout"
                s.checkout_step = 0
                return self._checkout(s)
            return self._internal_page_view(s)
        if state == "landing":
            return self._landing(s)
        if state == "checkout":
            return self._checkout(s)
        if state == "order":
            return self._order_event(s)
        raise AssertionError(state)  # pragma: no cover

    def _emit(self, s: _Session, event: str, schema: tuple[str, str, str, str], keys: tuple[str, ...],
              values: list[str], contexts: str, think: tuple[int, int]) -> list[str]:  # fmt: skip
        """The part every event has: ids, timestamps, page, event type, fingerprint; then the clock moves on."""
        rng = self.rng
        fmt = self.clock
        row = s.base[:]
        row[_PAGE_FIRST : _PAGE_LAST + 1] = s.page_block
        if s.clickid:
            row[_CLICKID], row[_NETWORK] = s.clickid, "Google"
        row[_DOC_W], row[_DOC_H] = s.doc
        t = s.t
        created = t + s.visitor.skew
        rand = rng.random
        buffered = 20 + int(rand() * 1480)  # the tracker's buffering before it sends
        collector = t + buffered + 15 + int(rand() * 385)  # plus the network
        sent = created + buffered
        row[_CREATED], row[_SENT], row[_COLLECTOR] = fmt(created), fmt(sent), fmt(collector)
        row[_DERIVED_TS] = fmt(collector - (sent - created)) if sent > created else row[_COLLECTOR]
        row[_ETL] = fmt(collector + 800 + int(rand() * 5200))
        row[_EVENT], row[_EVENT_ID] = event, _uuid4(rng)
        row[_VENDOR : _VENDOR + 4] = schema
        row[_CONTEXTS] = contexts
        # The tracker parameters (less eid, nuid, stm and cv) for the fingerprint.
        values = [*s.param_values, *values, str(created), row[_PAGE_FIRST], row[_PAGE_FIRST + 1], f"{s.doc[0]}x{s.doc[1]}"]  # fmt: skip
        if row[_PAGE_FIRST + 2]:
            keys = s.param_keys + keys + _WITH_REFR
            values.append(row[_PAGE_FIRST + 2])
        else:
            keys = s.param_keys + keys + _WITHOUT_REFR
        if contexts:
            keys += ("co",)
            values.append(contexts)
        row[_FINGERPRINT] = _fingerprint(keys, values)
        s.t = t + think[0] + int(rand() * (think[1] - think[0]))
        return row

    def _open_page(self, s: _Session, url: tuple[str, str, str, str, str], title: str,
                   referrer: tuple[str, str, str, str] | None, medium: str, source: str, term: str) -> None:  # fmt: skip
        rng = self.rng
        s.prev_url = url[:4]
        s.page = url
        s.page_id = _uuid4(rng)
        s.page_block = _page_block(url, title, referrer, medium, source, term)
        query = url[3]
        s.clickid = query.partition("gclid=")[2].partition("&")[0] if "gclid=" in query else ""
        s.doc = (s.base[_VIEW_W], str(rng.randint(1_200, 6_000)))
        s.pages_left -= 1
        s.y_max = 0

    def _page_view(self, s: _Session) -> list[str]:
        s.pings = self.rng.choice((0, 0, 1, 2, 3, 5, 8))
        s.state = "ping" if s.pings else "next"
        return self._emit(
            s, "page_view", _PAGE_VIEW, ("e",), ["pv"], _contexts(_web_page(s.page_id)),
            (4_000, 10_000) if s.pings else (5_000, 90_000),
        )  # fmt: skip

    def _landing(self, s: _Session) -> list[str]:
        rng = self.rng
        _, referrer, medium, source, term = rng.choices(_LANDINGS, _LANDING_WEIGHTS)[0]
        path, title = rng.choice(_LANDING_PAGES)
        query = ""
        if referrer == "email":
            referrer = None
            query = f"utm_source=newsletter&utm_medium=email&utm_campaign={rng.choice(_CAMPAIGNS)}"
        elif referrer is not None:
            search = rng.choice(_SEARCH_TERMS)
            if source == "Google" and rng.random() < 0.3:  # a paid click
                query = f"gclid=EAIaIQobChMI{rng.getrandbits(64):016x}"
            scheme, host, r_path, r_query = referrer
            referrer = (scheme, host, r_path, r_query.format(term=search.replace(" ", "+")))
            term = term.format(term=search)
        self._open_page(s, ("https", _HOST, path, query, ""), title, referrer, medium, source, term)
        return self._page_view(s)

    def _internal_page_view(self, s: _Session) -> list[str]:
        rng = self.rng
        roll = rng.random()
        fragment = ""
        if s.cart and roll < 0.3:
            path, title, query = "/cart", "Your cart | Acme Shop", ""
        elif roll < 0.65:
            sku, name, _ = rng.choice(_PRODUCTS)
            path, title, query = f"/products/{sku}", f"{name} | Acme Shop", ""
            fragment = "reviews" if rng.random() < 0.1 else ""
        else:
            path, title = rng.choice(_STATIC_PAGES)
            query = f"q={rng.choice(_SEARCH_TERMS).replace(' ', '+')}" if path == "/search" else ""
        self._open_page(s, ("https", _HOST, path, query, fragment), title, s.prev_url, "internal", "", "")
        return self._page_view(s)

    def _page_ping(self, s: _Session) -> list[str]:
        rng = self.rng
        y_min = s.y_max
        s.y_max = y_max = y_min + rng.randint(0, 900)
        offsets = ["0", "0", str(y_min), str(y_max)]
        row = self._emit(
            s, "page_ping", _PAGE_PING,
            ("e", "pp_mix", "pp_max", "pp_miy", "pp_may"), ["pp", *offsets],
            _contexts(_web_page(s.page_id)), (9_500, 10_500) if s.pings > 0 else (2_000, 60_000),
        )  # fmt: skip
        row[_PP_FIRST : _PP_FIRST + 4] = offsets
        return row

    def _add_to_cart(self, s: _Session) -> list[str]:
        rng = self.rng
        sku = s.page[2].rsplit("/", 1)[1]
        price = _PRICES[sku]
        quantity = rng.choice((1, 1, 1, 2, 3))
        if not s.cart:
            s.cart_id, s.cart_started = _uuid4(rng), s.t
        s.cart.append((sku, quantity, price))
        currency = s.visitor.currency
        se = ["ecommerce", "add-to-cart", sku, str(quantity), _num(_money(price * _FROM_EUR[currency], currency))]
        row = self._emit(
            s, "struct", _STRUCT,
            ("e", "se_ca", "se_ac", "se_la", "se_pr", "se_va"), ["se", *se],
            _contexts(_web_page(s.page_id)), (1_000, 15_000),
        )  # fmt: skip
        row[_SE_FIRST : _SE_FIRST + 5] = se
        return row

    def cart_entity(self, s: _Session, coupon: str | None = None) -> dict[str, Any]:
        """The ``com.acme/cart`` entity of the session's cart, in the generator's cart version."""
        currency = s.visitor.currency
        items = [
            {"sku": sku, "quantity": qty, "unit_price": _money(price * _FROM_EUR[currency], currency)}
            for sku, qty, price in s.cart
        ]
        total = _money(sum(i["quantity"] * i["unit_price"] for i in items), currency)
        data: dict[str, Any] = {"cart_id": s.cart_id, "currency": currency}
        if self.cart_version.startswith("1-"):
            data["total"] = total
        else:
            data["total_minor"] = round(total * (1 if currency in _ZERO_DECIMALS else 100))
        data["item_count"] = sum(i["quantity"] for i in items)
        data["items"] = items
        data["created_at"] = _iso(s.cart_started)
        if coupon is not None and self.cart_version == "1-0-1":
            data["coupon_code"] = coupon
        return {"schema": self.cart_schema, "data": data}

    def _checkout(self, s: _Session) -> list[str] | None:
        rng = self.rng
        s.checkout_step += 1
        step = s.checkout_step
        if step > 1 and rng.random() < 0.15:  # abandons the funnel
            s.state = "next"
            s.pages_left = min(s.pages_left, 1)
            return None
        if step == 1:
            self._open_page(s, ("https", _HOST, "/checkout", "", ""), "Checkout | Acme Shop", s.prev_url, "internal", "", "")  # fmt: skip
        coupon = rng.choice((None, None, None, "SPRING10")) if step == 3 else None
        data = {"step": step, "step_name": _CHECKOUT_STEPS[step - 1], "option": _CHECKOUT_OPTIONS[step - 1]}
        unstruct = _json.dumps({"schema": UNSTRUCT, "data": {"schema": CHECKOUT_STEP, "data": data}})
        cart = _json.dumps(self.cart_entity(s, coupon))
        row = self._emit(
            s, "unstruct", _CHECKOUT_EVENT, ("e", "ue_pr"), ["ue", unstruct],
            _contexts(f"{_web_page(s.page_id)},{cart}"), (8_000, 45_000),
        )  # fmt: skip
        row[_UNSTRUCT] = unstruct
        if step == len(_CHECKOUT_STEPS):  # confirmed: the order follows as legacy ecommerce events
            order_id = f"ORD-{rng.randint(100_000, 999_999)}"
            s.order = [("tr", order_id), *(("ti", (order_id, item)) for item in s.cart)]
            s.state = "order"
        return row

    def _order_event(self, s: _Session) -> list[str]:
        """One ``transaction``, then one ``transaction_item`` per cart line, as the tracker sends them."""
        kind, detail = s.order.pop(0)
        if not s.order:
            s.state, s.cart, s.cart_id = "next", [], ""
        currency = s.visitor.currency
        contexts = _contexts(_web_page(s.page_id))
        if kind == "tr":
            items = [(qty, _money(price * _FROM_EUR[currency], currency)) for _, qty, price in s.cart or ()]
            total = _money(sum(q * p for q, p in items), currency)
            tax = _money(total * 0.21 / 1.21, currency)
            shipping = 0.0 if total * _TO_EUR[currency] >= 50 else _money(4.95 * _FROM_EUR[currency], currency)
            keys = ("e", "tr_id", "tr_tt", "tr_tx", "tr_sh", "tr_cu")
            values = ["tr", detail, _num(total), _num(tax), _num(shipping), currency]
            row = self._emit(s, "transaction", _TRANSACTION, keys, values, contexts, (50, 400))
            city, region_name, country = s.base[_GEO_FIRST + 2], s.base[_GEO_FIRST + 6], s.base[_GEO_FIRST]
            row[_TR_FIRST : _TR_FIRST + 8] = [detail, "web", _num(total), _num(tax), _num(shipping), city, region_name, country]  # fmt: skip
            row[_TR_CURRENCY] = currency
            to_eur = _TO_EUR[currency]
            row[_TR_TOTAL_BASE : _TR_TOTAL_BASE + 3] = [_num(round(v * to_eur, 2)) for v in (total, tax, shipping)]
            return row
        order_id, (sku, qty, price) = detail
        unit = _money(price * _FROM_EUR[currency], currency)
        name, category = _NAMES[sku], "outdoor"
        keys = ("e", "ti_id", "ti_sk", "ti_nm", "ti_ca", "ti_pr", "ti_qu", "ti_cu")
        values = ["ti", order_id, sku, name, category, _num(unit), str(qty), currency]
        row = self._emit(s, "transaction_item", _TRANSACTION_ITEM, keys, values, contexts, (10, 200))
        row[_TI_FIRST : _TI_FIRST + 6] = [order_id, sku, name, category, _num(unit), str(qty)]
        row[_TI_CURRENCY], row[_TI_PRICE_BASE] = currency, _num(round(unit * _TO_EUR[currency], 2))
        return row


_WITHOUT_REFR = ("dtm", "url", "page", "ds")
_WITH_REFR = (*_WITHOUT_REFR, "refr")
_PAGE_VIEW = ("com.snowplowanalytics.snowplow", "page_view", "jsonschema", "1-0-0")
_PAGE_PING = ("com.snowplowanalytics.snowplow", "page_ping", "jsonschema", "1-0-0")
_STRUCT = ("com.google.analytics", "event", "jsonschema", "1-0-0")
_TRANSACTION = ("com.snowplowanalytics.snowplow", "transaction", "jsonschema", "1-0-0")
_TRANSACTION_ITEM = ("com.snowplowanalytics.snowplow", "transaction_item", "jsonschema", "1-0-0")
_CHECKOUT_EVENT = ("com.acme", "checkout_step", "jsonschema", "1-0-0")
_PRICES = {sku: price for sku, _, price in _PRODUCTS}
_NAMES = {sku: name for sku, name, _ in _PRODUCTS}
_LANDING_PAGES = _STATIC_PAGES[:4] + tuple((f"/products/{sku}", f"{name} | Acme Shop") for sku, name, _ in _PRODUCTS)


# ---------------------------------------------------------------------------------------------
# Deliberately bad lines
# ---------------------------------------------------------------------------------------------

# (field, value) that PostgreSQL or the decoder refuses, one per invalid_value line in turn.
INVALID_VALUES: tuple[tuple[str, str], ...] = (
    ("br_cookies", "true"),
    ("page_urlport", "443.0"),
    ("geo_country", "NLD"),
    ("collector_tstamp", "2026-02-30 10:00:00.000"),
    ("event_id", "not-a-uuid"),
    ("domain_sessionidx", "2147483648"),
    ("geo_latitude", "NaN"),
    ("v_etl", ""),
    ("dvce_created_tstamp", "1718000000000"),
    ("page_urlhost", "h" * 256),
)


def _corrupt(kind: str, row: list[str], variant: int, rng: random.Random, cart_schema: str) -> str:
    """The bad line of ``kind`` made from a good event's row (``variant`` picks among its forms).

    ``rng`` is not the event stream's, so a bad line changes no event after it.
    """
    if kind == "not_tsv":
        forms = (
            # a tracker payload that reached the enriched stream
            '{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv",'
            f'"url":"{row[_PAGE_FIRST]}","eid":"{row[_EVENT_ID]}","p":"web","tv":"{_V_TRACKER}"}}]}}',
            f"GET /i?e=pv&aid={_APP_ID}&p=web&tv={_V_TRACKER}&eid={row[_EVENT_ID]} HTTP/1.1",
            ",".join(value.replace("\t", " ") for value in row[:30]),  # comma-separated by mistake
        )
        return forms[variant % len(forms)]
    if kind == "field_count":
        forms = (row[:-1], [*row, ""], row[:108])  # 130, 132, and an old 108-field layout
        return "\t".join(forms[variant % len(forms)])
    row = row[:]
    if kind == "invalid_value":
        key, value = INVALID_VALUES[variant % len(INVALID_VALUES)]
        row[FIELD_INDEX[key]] = value
    elif kind == "invalid_json":
        contexts = row[_CONTEXTS]
        forms = (contexts[: len(contexts) // 2], contexts.replace('"', "'"))  # truncated; single quotes
        row[_CONTEXTS] = forms[variant % len(forms)]
    elif kind == "schema_violation":
        page = {"schema": WEB_PAGE, "data": {"id": _uuid4(rng)}}
        if variant % 3 == 0:
            page["data"]["id"] = "not-a-uuid"  # the pattern
            entities = [page]
        elif variant % 3 == 1:
            page["data"]["title"] = "Checkout"  # additionalProperties: false
            entities = [page]
        else:  # a cart with total as a string and no currency: type and required
            entities = [page, {"schema": cart_schema, "data": {"cart_id": _uuid4(rng), "total": "12.50", "item_count": 1}}]  # fmt: skip
        row[_CONTEXTS] = _json.dumps({"schema": CONTEXTS, "data": entities})
    elif kind == "unknown_schema":
        wishlist = _json.dumps({"schema": WISHLIST, "data": {"items": 3, "public": False}})
        row[_CONTEXTS] = row[_CONTEXTS][:-2] + "," + wishlist + "]}"
    else:  # pragma: no cover - validated by the caller
        raise AssertionError(kind)
    return "\t".join(row)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def generate_labelled(
    n: int,
    *,
    seed: int = 0,
    start: datetime,
    bad: int = 0,
    bad_kinds: Sequence[str] = BAD_KINDS,
    cart_version: str = "1-0-0",
) -> Iterator[tuple[str, str]]:
    """Like :func:`generate`, with each line's kind: ``("good", line)`` or ``(<bad kind>, line)``."""
    if n < 0 or not 0 <= bad <= n:
        raise ValueError(f"need 0 <= bad <= n, got n={n}, bad={bad}")
    kinds = tuple(bad_kinds)
    unknown = [k for k in kinds if k not in BAD_KINDS]
    if unknown or (bad and not kinds):
        raise ValueError(f"bad_kinds must be a non-empty selection of {BAD_KINDS}, got {kinds}")
    gen = _Generator(seed, start, cart_version)
    bad_rng = random.Random(f"airflow-osds-bad-{seed}")
    next_row = gen.next_row
    join = "\t".join
    made = 0
    for i in range(n):
        row = next_row()
        # exactly `bad` bad lines, spread evenly over the n
        if bad and (i + 1) * bad // n != i * bad // n:
            kind = kinds[made % len(kinds)]
            yield kind, _corrupt(kind, row, made // len(kinds), bad_rng, gen.cart_schema)
            made += 1
        else:
            yield GOOD, join(row)


def generate(
    n: int,
    *,
    seed: int = 0,
    start: datetime,
    bad: int = 0,
    bad_kinds: Sequence[str] = BAD_KINDS,
    cart_version: str = "1-0-0",
) -> Iterator[str]:
    """``n`` enriched-event TSV lines (no line ends), the same ones for the same arguments.

    ``start`` is when the first sessions begin (a naive datetime is taken as UTC); events follow
    in time order from there. ``bad`` of the ``n`` lines, spread evenly, are deliberately bad, one
    kind after another from ``bad_kinds`` (see :data:`BAD_KINDS`); each replaces the event it
    was made from, so the good lines around it stay what they would be with ``bad=0``.
    ``cart_version`` is the ``com.acme/cart`` version the checkout events carry (see
    :func:`custom_schemas`).
    """
    for _, line in generate_labelled(n, seed=seed, start=start, bad=bad, bad_kinds=bad_kinds, cart_version=cart_version):  # fmt: skip
        yield line


def write(
    path: str | os.PathLike[str],
    n: int,
    *,
    gzip: bool = False,
    compresslevel: int = 6,
    seed: int = 0,
    start: datetime,
    bad: int = 0,
    bad_kinds: Sequence[str] = BAD_KINDS,
    cart_version: str = "1-0-0",
) -> int:
    """Stream :func:`generate` into a file, one ``\\n``-terminated line each; returns the line count.

    ``gzip=True`` writes a gzip file (``compresslevel`` 1–9; the default 6 is about what a
    collector sink uses, 9 is much slower for little gain). Lines are never all held in memory.
    """
    lines = generate(n, seed=seed, start=start, bad=bad, bad_kinds=bad_kinds, cart_version=cart_version)
    opener = (lambda p: _gzip.open(p, "wt", encoding="utf-8", newline="\n", compresslevel=compresslevel)) if gzip else (
        lambda p: open(p, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below
    )  # fmt: skip
    count = 0
    with opener(path) as out:
        while chunk := list(itertools.islice(lines, 1024)):  # a few MB at a time, never all of it
            out.write("\n".join(chunk))
            out.write("\n")
            count += len(chunk)
    return count
