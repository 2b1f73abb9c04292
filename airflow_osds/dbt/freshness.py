"""dbt source freshness, checked against the warehouse without running dbt.

dbt's ``source freshness`` command runs ``SELECT max(<loaded_at_field>), now() FROM <source>``
per source table and compares the age with the table's ``warn_after`` / ``error_after``
thresholds. This module does the same from the manifest alone, so a sensor can wait for fresh
sources in Airflow's triggerer, where dbt must not run (it is slow to import, holds global
state and blocks the event loop):

* :func:`freshness_checks` picks the source tables from the manifest and turns each into a
  JSON-safe :class:`FreshnessCheck` (exact schema, table and column names, thresholds);
* :meth:`FreshnessCheck.query` is the SQL, composed with :mod:`psycopg.sql`;
* :meth:`FreshnessCheck.evaluate` is the decision, a :class:`FreshnessResult` (dbt's
  ``pass`` / ``warn`` / ``error``, the age and the threshold it exceeds);
* :func:`check_freshness` / :func:`acheck_freshness` run the checks on a psycopg connection,
  sync (a sensor's poke) or async (a trigger).

Thresholds are the merged values dbt writes into the manifest (a table's config over its
source's over the project's), so the rules are dbt's own. A ``timestamp`` without time zone
counts as UTC, as in dbt.

Nothing here imports Airflow; psycopg is imported when SQL is composed or run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from airflow_osds.dbt.artifacts import FreshnessTime, Manifest, SourceNode
from airflow_osds.exceptions import OsdsError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = [
    "DBT_STATUSES",
    "PERIOD_SECONDS",
    "DbtFreshnessError",
    "FreshnessCheck",
    "FreshnessResult",
    "acheck_freshness",
    "check_freshness",
    "describe_results",
    "format_age",
    "freshness_checks",
    "APPLICATION_NAME",
]

#: ``application_name`` of the freshness checks' warehouse connections (seen in ``pg_stat_activity``).
APPLICATION_NAME = "airflow-osds source freshness"

#: dbt's freshness statuses: no threshold exceeded, ``warn_after`` exceeded, ``error_after`` exceeded
#: (or no row to date the table by).
DBT_STATUSES = ("pass", "warn", "error")

#: dbt's ``period`` values.
PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
_QUOTED_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"\Z')


class DbtFreshnessError(OsdsError):
    """Sources cannot be checked for freshness: unknown, not configured, or their query failed.

    :param sources: the sources concerned (``source_name.table``, or the selector as written).
    :param reason: what is wrong with each and what to do.
    """

    def __init__(self, sources: Sequence[str], reason: str) -> None:
        self.sources = tuple(sources)
        self.reason = reason
        super().__init__(f"dbt source freshness of {', '.join(self.sources)}: {reason}")


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _threshold_seconds(threshold: FreshnessTime) -> float:
    return float(threshold.count * PERIOD_SECONDS[threshold.period])


def _threshold_text(name: str, threshold: FreshnessTime) -> str:
    unit = threshold.period if threshold.count == 1 else f"{threshold.period}s"
    return f"{name} {threshold.count} {unit}"


def _time_dict(threshold: FreshnessTime | None) -> dict[str, Any] | None:
    return None if threshold is None else {"count": threshold.count, "period": threshold.period}


@dataclass(frozen=True, slots=True)
class FreshnessResult:
    """The freshness of one source table at one moment.

    :ivar status: dbt's status (:data:`DBT_STATUSES`).
    :ivar fresh: whether the sensor counts the table as fresh (``pass``, or ``warn`` when allowed).
    :ivar age_seconds: seconds since the newest ``loaded_at_field`` value; ``None`` when the
        table (after the freshness ``filter``) has no row with one.
    :ivar max_loaded_at: that newest value, ISO 8601 in UTC.
    :ivar threshold: the threshold exceeded, e.g. ``error_after 1 day`` (``None`` when none is).
    """

    source: str
    status: str
    fresh: bool
    age_seconds: float | None
    max_loaded_at: str | None
    threshold: str | None

    def describe(self) -> str:
        """One line for logs and errors: ``shop.orders: error, 2 d 3 h old (over error_after 1 day)``."""
        age = "has no row with a load time" if self.age_seconds is None else f"{format_age(self.age_seconds)} old"
        over = f" (over {self.threshold})" if self.threshold else ""
        return f"{self.source}: {self.status}, {age}{over}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "status": self.status, "fresh": self.fresh, "age_seconds": self.age_seconds,
            "max_loaded_at": self.max_loaded_at, "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FreshnessResult:
        age = d.get("age_seconds")
        return cls(
            source=str(d["source"]), status=str(d["status"]), fresh=bool(d["fresh"]),
            age_seconds=None if age is None else float(age), max_loaded_at=d.get("max_loaded_at"),
            threshold=d.get("threshold"),
        )


@dataclass(frozen=True, slots=True)
class FreshnessCheck:
    """One source table to check, with the names exactly as the warehouse spells them.

    JSON-safe through :meth:`to_dict` / :meth:`from_dict`: a trigger carries a list of them.

    :ivar source: ``source_name.table`` as dbt names it (for messages).
    :ivar schema: the schema, case-folded as PostgreSQL does when dbt does not quote it.
    :ivar table: the table (the source's ``identifier``), case-folded the same way.
    :ivar loaded_at_field: the ``loaded_at_field`` as written in the project.
    :ivar loaded_at_column: the exact column it names, quoted in the query; ``None`` when
        ``loaded_at_field`` is an SQL expression, which is used as written, as dbt does.
    :ivar filter: dbt's freshness ``filter``, an SQL condition used as written.
    """

    source: str
    unique_id: str
    schema: str
    table: str
    loaded_at_field: str
    loaded_at_column: str | None
    filter: str | None
    warn_after: FreshnessTime | None
    error_after: FreshnessTime | None

    def query(self) -> sql.Composed:
        """``SELECT max(loaded_at), now() FROM schema.table [WHERE filter]``; ``now()`` is the
        warehouse's clock, so the worker's or triggerer's clock skew does not matter."""
        from psycopg import sql

        loaded_at = sql.Identifier(self.loaded_at_column) if self.loaded_at_column else sql.SQL(self.loaded_at_field)
        query = sql.SQL("SELECT max({loaded_at}) AS max_loaded_at, now() AS snapshotted_at FROM {table}").format(
            loaded_at=loaded_at, table=sql.Identifier(self.schema, self.table)
        )
        if self.filter:
            query = sql.Composed([query, sql.SQL(" WHERE ("), sql.SQL(self.filter), sql.SQL(")")])
        return query

    def evaluate(self, max_loaded_at: Any, snapshotted_at: dt.datetime, *, allow_warn: bool = False) -> FreshnessResult:
        """dbt's decision for the query's row: ``error`` over ``error_after``, ``warn`` over
        ``warn_after``, else ``pass`` (an age equal to a threshold passes, as in dbt).

        :param allow_warn: count ``warn`` as fresh (only ``error_after`` must hold).
        """
        try:
            loaded = _as_utc(max_loaded_at)
        except TypeError as exc:
            raise DbtFreshnessError([self.source], f"{exc}; loaded_at_field must be a timestamp or date") from None
        if loaded is None:  # dbt cannot date an empty table either: it reports an error
            return FreshnessResult(self.source, "error", False, None, None, None)
        age = (_as_utc(snapshotted_at) - loaded).total_seconds()  # type: ignore[operator]
        status, threshold_text = "pass", None
        if self.error_after and age > _threshold_seconds(self.error_after):
            status, threshold_text = "error", _threshold_text("error_after", self.error_after)
        elif self.warn_after and age > _threshold_seconds(self.warn_after):
            status, threshold_text = "warn", _threshold_text("warn_after", self.warn_after)
        fresh = status == "pass" or (allow_warn and status == "warn")
        return FreshnessResult(self.source, status, fresh, age, loaded.isoformat(), threshold_text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "unique_id": self.unique_id, "schema": self.schema, "table": self.table,
            "loaded_at_field": self.loaded_at_field, "loaded_at_column": self.loaded_at_column,
            "filter": self.filter, "warn_after": _time_dict(self.warn_after),
            "error_after": _time_dict(self.error_after),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FreshnessCheck:
        return cls(
            source=d["source"], unique_id=d["unique_id"], schema=d["schema"], table=d["table"],
            loaded_at_field=d["loaded_at_field"], loaded_at_column=d.get("loaded_at_column"),
            filter=d.get("filter"), warn_after=FreshnessTime.from_dict(d.get("warn_after")),
            error_after=FreshnessTime.from_dict(d.get("error_after")),
        )


def _as_utc(value: Any) -> dt.datetime | None:
    """A ``timestamptz`` as is, a ``timestamp`` as UTC (dbt's rule), a ``date`` as its midnight UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    raise TypeError(f"max(loaded_at_field) returned {type(value).__name__} {value!r}, not a timestamp or date")


def format_age(seconds: float) -> str:
    """``45 s``, ``12 min 5 s``, ``3 h``, ``2 d 3 h``: the two largest units, a zero second one left out."""
    total = int(max(seconds, 0))
    parts = [(total // 86400, "d"), (total % 86400 // 3600, "h"), (total % 3600 // 60, "min"), (total % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = parts[:2] if len(parts) > 1 and parts[1][0] else parts[:1]
    return " ".join(f"{n} {unit}" for n, unit in shown)


def describe_results(results: Iterable[FreshnessResult]) -> str:
    """One line per source, for task and trigger logs."""
    return "\n".join(r.describe() for r in results)


# --------------------------------------------------------------------------------------------
# From the manifest to checks
# --------------------------------------------------------------------------------------------


def _matches(node: SourceNode, pattern: str) -> bool:
    # The same rule as the selection engine's source: method (source, source.table, package.source.table).
    parts = pattern.split(".")
    have = {1: [node.source_name], 2: [node.source_name, node.name], 3: [node.package_name, node.source_name, node.name]}
    return len(parts) in have and all(fnmatchcase(h, p) for h, p in zip(have[len(parts)], parts))


def _resolve(manifest: Manifest, selector: str) -> tuple[list[SourceNode], bool]:
    """The sources one selector names, and whether it names each explicitly (not by pattern)."""
    if selector in manifest.sources:
        return [manifest.sources[selector]], True
    value = selector.removeprefix("source:")
    if not value or any(c in value for c in "+@:, "):
        raise DbtFreshnessError(
            [selector], "write a source as 'source_name.table', 'source:source_name[.table]' or its unique id "
            "('source.<package>.<source_name>.<table>'); graph operators and other methods do not apply"
        )
    found = [s for s in manifest.sources.values() if _matches(s, value)]
    if not found:
        raise DbtFreshnessError([selector], "matches no source of the manifest" + _suggest(manifest, value))
    explicit = value.count(".") >= 1 and not any(c in value for c in "*?[")
    return found, explicit


def _suggest(manifest: Manifest, value: str) -> str:
    import difflib  # only on the error path

    names = sorted({f"{s.source_name}.{s.name}" for s in manifest.sources.values()})
    close = difflib.get_close_matches(value, names, n=3)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"; the manifest's sources are {', '.join(names)}" if names else "; the manifest has no sources"


def _unusable(node: SourceNode) -> str | None:
    """Why this source cannot be checked, or ``None``."""
    if not node.loaded_at_field:
        if node.loaded_at_query:
            return "loaded_at_query is not supported (set loaded_at_field instead)"
        return "no loaded_at_field (set one: metadata-based freshness is not supported)"
    if node.freshness is None:
        return "no freshness thresholds (set freshness.warn_after and/or error_after)"
    periods = [t.period for t in (node.freshness.warn_after, node.freshness.error_after) if t is not None]
    if bad := [p for p in periods if p not in PERIOD_SECONDS]:
        return f"freshness period {bad[0]!r} is not one of {', '.join(PERIOD_SECONDS)}"
    if not node.schema:
        return "no schema"
    return None


def _fold(name: str, quoted: bool | None) -> str:
    # dbt quotes source names on PostgreSQL unless `quoting:` says otherwise; unquoted names
    # are folded to lower case by PostgreSQL itself.
    return name if quoted is not False else name.lower()


def _loaded_at_column(field: str) -> str | None:
    if _PLAIN_IDENTIFIER.match(field):
        return field.lower()  # dbt writes it unquoted: PostgreSQL folds it
    if m := _QUOTED_IDENTIFIER.match(field):
        return m.group(1).replace('""', '"')
    return None


def _check(node: SourceNode) -> FreshnessCheck:
    assert node.freshness is not None and node.loaded_at_field and node.schema  # _unusable said so
    return FreshnessCheck(
        source=f"{node.source_name}.{node.name}",
        unique_id=node.unique_id,
        schema=_fold(node.schema, node.quote_schema),
        table=_fold(node.identifier, node.quote_identifier),
        loaded_at_field=node.loaded_at_field,
        loaded_at_column=_loaded_at_column(node.loaded_at_field),
        filter=node.freshness.filter,
        warn_after=node.freshness.warn_after,
        error_after=node.freshness.error_after,
    )


def freshness_checks(manifest: Manifest, sources: str | Sequence[str]) -> tuple[FreshnessCheck, ...]:
    """The checks of the source tables ``sources`` names, in manifest order, each once.

    :param sources: ``source_name.table`` names, ``source:`` selectors (``source:snowplow``
        for all of a source's tables; shell wildcards allowed) or unique ids; one string may
        hold several, separated by spaces.
    :raises DbtFreshnessError: for a selector matching no source, or sources that cannot be
        checked (no ``loaded_at_field``, no thresholds), each named with the reason. A table
        matched only by a whole-source or wildcard selector is skipped instead, as
        ``dbt source freshness --select`` does, unless that leaves nothing to check.
    """
    selectors = sources.split() if isinstance(sources, str) else [s for item in sources for s in str(item).split()]
    if not selectors:
        raise DbtFreshnessError(["<none>"], "no source given; name at least one as 'source_name.table'")
    chosen: dict[str, bool] = {}  # unique id -> named explicitly by some selector
    for selector in selectors:
        nodes, explicit = _resolve(manifest, selector)
        for node in nodes:
            chosen[node.unique_id] = chosen.get(node.unique_id, False) or explicit
    checks: list[FreshnessCheck] = []
    problems: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for uid in (u for u in manifest.sources if u in chosen):  # manifest order
        node = manifest.sources[uid]
        reason = _unusable(node)
        if reason is None:
            checks.append(_check(node))
        else:
            (problems if chosen[uid] else skipped).append((f"{node.source_name}.{node.name}", reason))
    if problems or not checks:
        unusable = problems or skipped
        details = "; ".join(f"{name}: {reason}" for name, reason in unusable)
        raise DbtFreshnessError([name for name, _ in unusable], f"cannot be checked ({details})")
    return tuple(checks)


# --------------------------------------------------------------------------------------------
# Running the checks
# --------------------------------------------------------------------------------------------


def _query_failed(check: FreshnessCheck, exc: Exception) -> DbtFreshnessError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DbtFreshnessError(
        [check.source], f"the freshness query on {check.schema}.{check.table} failed: {message}"
    )


def check_freshness(
    conn: psycopg.Connection[Any], checks: Iterable[FreshnessCheck], *, allow_warn: bool = False
) -> list[FreshnessResult]:
    """Run every check on ``conn`` (autocommit, so each sees the latest commits).

    :raises DbtFreshnessError: when a query fails (missing table or column …), naming the source.
    """
    import psycopg

    results = []
    with conn.cursor() as cursor:
        for check in checks:
            try:
                cursor.execute(check.query())
                max_loaded_at, snapshotted_at = cursor.fetchone() or (None, None)
            except psycopg.Error as exc:
                raise _query_failed(check, exc) from exc
            results.append(check.evaluate(max_loaded_at, snapshotted_at, allow_warn=allow_warn))
    return results


async def acheck_freshness(
    conn: psycopg.AsyncConnection[Any], checks: Iterable[FreshnessCheck], *, allow_warn: bool = False
) -> list[FreshnessResult]:
    """:func:`check_freshness` on an async connection (for triggers)."""
    import psycopg

    results = []
    async with conn.cursor() as cursor:
        for check in checks:
            try:
                await cursor.execute(check.query())
                max_loaded_at, snapshotted_at = await cursor.fetchone() or (None, None)
            except psycopg.Error as exc:
                raise _query_failed(check, exc) from exc
            results.append(check.evaluate(max_loaded_at, snapshotted_at, allow_warn=allow_warn))
    return results
