"""Iglu: schema keys, registries and a caching, thread-safe resolver (Snowplow's Iglu client, in Python).

Every self-describing JSON in an enriched event names its schema with an Iglu URI
(``iglu:vendor/name/format/M-R-A``). The loader needs that schema twice: to validate the data
(an invalid entity is a ``loader_iglu_error`` bad row, not a row) and to derive the entity
table's columns. :class:`Resolver` finds schemas in registries the way Snowplow's
``iglu-scala-client`` does:

* **Order.** Repositories whose ``vendor_prefixes`` match the schema's vendor first, then by
  ascending ``priority``; ties keep the order given. An embedded bootstrap registry (the
  envelopes ``contexts``/``unstruct_event`` and ``instance-iglu-only``) is tried before all
  of them, as the Scala client does, so envelopes never cost a network request.
* **Failures.** ``404`` is *NotFound* and the next repository is asked; connection errors,
  ``5xx`` and ``429`` are retried (tenacity) and then recorded as *RepoFailure*; other
  answers are *ClientFailure*. When no repository has the schema,
  :class:`SchemaResolutionError` carries a Snowplow-style ``lookup_history`` and renders the
  ``loader_iglu_error/jsonschema/2-0-1`` failure entry.
* **Cache.** A found schema is kept for the resolver's lifetime: a published SchemaVer is
  immutable, and the tables and compiled validators were derived from it. A miss is kept for
  ``cache_ttl`` seconds, so a missing schema is not fetched again for every event; within
  that time only repositories that failed with an error other than NotFound are asked
  again, after a back-off (as the Scala client does).

* **Checks.** The first repository that has the schema wins; its document must be a valid
  draft-04 schema whose ``self`` is the key asked for, else :class:`InvalidSchemaError`
  (the next repository is not asked: a registry serving a broken schema is a problem to see).
* **Validation.** :meth:`Resolver.validator` compiles each schema once
  (:mod:`airflow_osds.snowplow.validation`).

Keys are defined in :mod:`~airflow_osds.snowplow.keys`, repositories in
:mod:`~airflow_osds.snowplow.registries`; both are re-exported here. Importing this module is
cheap: httpx, tenacity, fastjsonschema and jsonschema are imported when first needed (an
HTTP lookup, the first validation, the first invalid datum).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.exceptions import OsdsError
from airflow_osds.snowplow.keys import SchemaCriterion, SchemaKey
from airflow_osds.snowplow.registries import (
    HttpRepository,
    LookupFailure,
    MemoryRepository,
    Repository,
    StaticRepository,
)

if TYPE_CHECKING:
    from airflow_osds.snowplow.validation import SchemaValidator

__all__ = [
    "INSTANCE_IGLU_ONLY",
    "DataValidationError",
    "HttpRepository",
    "IgluError",
    "InvalidSchemaError",
    "LookupFailure",
    "MemoryRepository",
    "Repository",
    "Resolver",
    "SchemaCriterion",
    "SchemaKey",
    "SchemaListNotFoundError",
    "SchemaResolutionError",
    "StaticRepository",
]


class IgluError(OsdsError):
    """A schema could not be used for a datum; :meth:`failure` is the bad-row failure entry."""

    def failure(self) -> dict[str, Any]:
        """This error as one entry of ``loader_iglu_error/jsonschema/2-0-1``'s ``failure`` array."""
        raise NotImplementedError


class SchemaResolutionError(IgluError):
    """No repository returned the schema.

    :param key: the schema asked for.
    :param lookup_history: one entry per repository tried, Snowplow-shaped:
        ``{"repository", "errors": [{"error": "NotFound"|"RepoFailure"|"ClientFailure", "message"?}],
        "attempts", "lastAttempt"}``.
    """

    def __init__(self, key: SchemaKey, lookup_history: list[dict[str, Any]]) -> None:
        self.key = key
        self.lookup_history = lookup_history
        tried = "; ".join(_describe_history(h) for h in lookup_history) or "no repository configured"
        super().__init__(f"Cannot resolve schema {key.uri}: {tried}")

    def failure(self) -> dict[str, Any]:
        return {"schemaKey": self.key.uri, "error": {"error": "ResolutionError", "lookupHistory": self.lookup_history}}


class SchemaListNotFoundError(IgluError):
    """No repository could list the versions of a model (a static registry on HTTP cannot).

    :param criterion: the model, e.g. ``iglu:com.acme/event/jsonschema/1-*-*``.
    :param lookup_history: as for :class:`SchemaResolutionError`.
    """

    def __init__(self, criterion: SchemaCriterion, lookup_history: list[dict[str, Any]]) -> None:
        self.criterion = criterion
        self.lookup_history = lookup_history
        tried = "; ".join(_describe_history(h) for h in lookup_history) or "no repository configured"
        super().__init__(f"Cannot list the versions of {criterion.uri}: {tried}")

    def failure(self) -> dict[str, Any]:
        return {
            "schemaCriterion": self.criterion.uri,
            "error": {"error": "ResolutionError", "lookupHistory": self.lookup_history},
        }


class InvalidSchemaError(IgluError):
    """A repository returned a document that is not a usable self-describing draft-04 schema for the key.

    Rendered as 2-0-1's "schema is invalid" entry (``ValidationError`` with ``schemaIssues``),
    the kind the Scala client produces when a schema fails the draft-04 meta-schema.

    :param key: the schema asked for.
    :param issues: ``[{"path", "message"}]``, ``path`` a JSON path into the schema.
    :param repository: the repository that served it, when known.
    """

    def __init__(self, key: SchemaKey, issues: list[dict[str, str]], *, repository: str | None = None) -> None:
        self.key = key
        self.issues = issues
        self.repository = repository
        where = f" (from repository {repository!r})" if repository else ""
        details = "; ".join(f"{i['path']}: {i['message']}" for i in issues[:5])
        more = f" (+{len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"Schema {key.uri}{where} is not a valid self-describing draft-04 schema: {details}{more}")

    def failure(self) -> dict[str, Any]:
        return {"schemaKey": self.key.uri, "error": {"error": "ValidationError", "schemaIssues": self.issues}}


class DataValidationError(IgluError):
    """A datum does not validate against its schema.

    :param key: the schema it was validated against.
    :param reports: ``[{"message", "path", "keyword", "targets"}]``, as in 2-0-1's ``dataReports``.
    """

    def __init__(self, key: SchemaKey, reports: list[dict[str, Any]]) -> None:
        self.key = key
        self.reports = reports
        details = "; ".join(r["message"] for r in reports[:5])
        more = f" (+{len(reports) - 5} more)" if len(reports) > 5 else ""
        super().__init__(f"Data does not validate against {key.uri}: {details}{more}")

    def failure(self) -> dict[str, Any]:
        return {"schemaKey": self.key.uri, "error": {"error": "ValidationError", "dataReports": self.reports}}


def _describe_history(entry: Mapping[str, Any]) -> str:
    errors = ", ".join(e["error"] + (f" ({e['message']})" if e.get("message") else "") for e in entry["errors"])
    return f"repository {entry['repository']!r}: {errors} after {entry['attempts']} attempt(s)"


# --------------------------------------------------------------------------- resolver


@dataclass
class _History:
    """What one repository answered for one key, accumulated over retries."""

    repository: str
    retryable: bool
    errors: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    last_attempt: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    last_attempt_clock: float = 0.0

    def record(self, failure: LookupFailure, clock: float) -> None:
        entry = failure.as_json()
        if entry not in self.errors:
            self.errors.append(entry)
        self.attempts += failure.attempts
        self.last_attempt = datetime.now(timezone.utc)
        self.last_attempt_clock = clock

    def due_for_retry(self, now: float) -> bool:
        # NotFound is an answer: not asked again before the miss expires. Static registries
        # are not asked again either. Others are, after a back-off that grows with attempts.
        if not self.retryable or any(e["error"] == "NotFound" for e in self.errors):
            return False
        return now - self.last_attempt_clock >= min(60.0, 0.5 * 2 ** max(0, self.attempts - 1))

    def as_json(self) -> dict[str, Any]:
        stamp = self.last_attempt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"repository": self.repository, "errors": list(self.errors), "attempts": self.attempts, "lastAttempt": stamp}


@dataclass
class _Miss:
    stored_at: float
    histories: dict[str, _History]
    invalid: InvalidSchemaError | None = None


class Resolver:
    """Finds, checks, caches and validates schemas from a list of repositories. Thread-safe.

    :param repositories: where to look; see the module docstring for the order.
    :param cache_ttl: seconds a miss (or an invalid schema) is remembered; ``None`` remembers it
        for the resolver's lifetime, ``0`` not at all. Found schemas are always kept.
    :param bootstrap: try the embedded bootstrap registry first (envelopes and
        ``instance-iglu-only``), as Snowplow's client does; on by default.
    :param clock: a monotonic clock in seconds (tests pass their own to expire the cache).
    """

    BOOTSTRAP_NAME = "osds-bootstrap"

    def __init__(
        self,
        repositories: Iterable[Repository],
        *,
        cache_ttl: float | None = 600,
        bootstrap: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        repos = list(repositories)
        names = [r.name for r in repos]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Iglu repository names must be unique; repeated: {', '.join(duplicates)}")
        self._bootstrap: Repository | None = None
        if bootstrap:
            from airflow_osds.snowplow._bootstrap import SCHEMAS

            self._bootstrap = MemoryRepository(SCHEMAS, name=self.BOOTSTRAP_NAME)
        self.repositories: tuple[Repository, ...] = tuple(repos)
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._key_locks: dict[object, threading.Lock] = {}
        self._schemas: dict[SchemaKey, Any] = {}
        self._misses: dict[SchemaKey, _Miss] = {}
        self._lists: dict[tuple[str, str, int], tuple[float, list[SchemaKey] | SchemaListNotFoundError]] = {}
        self._validators: dict[SchemaKey, SchemaValidator] = {}
        self._compile_failures: dict[SchemaKey, tuple[float, InvalidSchemaError]] = {}
        self._order_cache: dict[str, tuple[Repository, ...]] = {}

    # ---- another process (the loader's parsing helper)

    def __getstate__(self) -> dict[str, Any]:
        """The repositories and the schemas found so far; not the misses, validators or a custom clock.

        Another process compiles its own validators (compiled code does not pickle) and asks the
        repositories again for what was missing, on :func:`time.monotonic`.
        """
        with self._lock:
            schemas = dict(self._schemas)
        return {"repositories": self.repositories, "cache_ttl": self.cache_ttl,
                "bootstrap": self._bootstrap is not None, "schemas": schemas}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["repositories"], cache_ttl=state["cache_ttl"], bootstrap=state["bootstrap"])  # type: ignore[misc]
        self._schemas.update(state["schemas"])

    # ---- construction

    @classmethod
    def from_sources(cls, sources: Sequence[str | Path], **kwargs: Any) -> Resolver:
        """Repositories from a list, first = highest priority: ``http(s)://`` URLs or static registry directories."""
        repos: list[Repository] = []
        for priority, source in enumerate(sources):
            text = str(source)
            if text.startswith(("http://", "https://")):
                repos.append(HttpRepository(text, name=text, priority=priority))
            else:
                repos.append(StaticRepository(source, name=text, priority=priority))
        return cls(repos, **kwargs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, base_dir: str | Path | None = None, **kwargs: Any) -> Resolver:
        """A resolver from Snowplow's resolver configuration (``resolver-config/jsonschema/1-0-x``).

        Accepts the self-describing document or its ``data``. ``embedded`` paths are taken
        relative to ``base_dir`` when given (Snowplow's are classpath paths such as
        ``/iglu-embedded``; the leading ``/`` is dropped then), else as filesystem paths.
        ``cacheSize`` is accepted and ignored (the cache holds what the events use).
        """
        data: Any = config
        if isinstance(config, Mapping) and "schema" in config and "data" in config:
            criterion = SchemaCriterion("com.snowplowanalytics.iglu", "resolver-config", "jsonschema", 1, 0)
            try:
                key = SchemaKey.parse(config["schema"])
            except ValueError as exc:
                raise ValueError(f"resolver config: {exc}") from None
            if not criterion.matches(key):
                raise ValueError(f"resolver config: schema {key.uri} is not {criterion.uri}")
            data = config["data"]
        if not isinstance(data, Mapping) or not isinstance(data.get("repositories"), list):
            raise ValueError("resolver config: expected an object with a 'repositories' list")
        ttl = data.get("cacheTtl", 600)
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0):
            raise ValueError(f"resolver config: cacheTtl must be a non-negative number or null, got {ttl!r}")
        repos: list[Repository] = []
        for index, entry in enumerate(data["repositories"]):
            where = f"resolver config: repositories[{index}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise ValueError(f"{where} needs a 'name'")
            common = {
                "name": entry["name"],
                "priority": entry.get("priority", 0),
                "vendor_prefixes": tuple(entry.get("vendorPrefixes") or ()),
            }
            connection = entry.get("connection")
            if not isinstance(connection, Mapping):
                raise ValueError(f"{where} ({entry['name']}) needs a 'connection' with 'http' or 'embedded'")
            if isinstance(connection.get("http"), Mapping):
                http = connection["http"]
                if not isinstance(http.get("uri"), str):
                    raise ValueError(f"{where} ({entry['name']}): connection.http needs a 'uri'")
                repos.append(HttpRepository(http["uri"], apikey=http.get("apikey"), **common))
            elif isinstance(connection.get("embedded"), Mapping):
                path = connection["embedded"].get("path")
                if not isinstance(path, str):
                    raise ValueError(f"{where} ({entry['name']}): connection.embedded needs a 'path'")
                root = Path(base_dir) / path.lstrip("/") if base_dir is not None else Path(path)
                repos.append(StaticRepository(root, **common))
            else:
                raise ValueError(f"{where} ({entry['name']}): connection must be {{'http': ...}} or {{'embedded': ...}}")
        kwargs.setdefault("cache_ttl", ttl)
        return cls(repos, **kwargs)

    def close(self) -> None:
        for repo in self.repositories:
            repo.close()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Resolver({list(self.repositories)!r}, cache_ttl={self.cache_ttl!r})"

    # ---- lookup

    def repositories_for(self, vendor: str) -> tuple[Repository, ...]:
        """The repositories in the order a schema of ``vendor`` is looked up (bootstrap first)."""
        order = self._order_cache.get(vendor)
        if order is None:
            indexed = sorted(
                enumerate(self.repositories), key=lambda ir: (not ir[1].matches_vendor(vendor), ir[1].priority, ir[0])
            )
            order = tuple(r for _, r in indexed)
            if self._bootstrap is not None:
                order = (self._bootstrap, *order)
            self._order_cache[vendor] = order
        return order

    def _key_lock(self, key: object) -> threading.Lock:
        lock = self._key_locks.get(key)
        if lock is None:
            with self._lock:
                lock = self._key_locks.setdefault(key, threading.Lock())
        return lock

    def _expired(self, stored_at: float, now: float) -> bool:
        return self.cache_ttl is not None and now - stored_at >= self.cache_ttl

    def lookup(self, key: SchemaKey) -> Any:
        """The schema JSON for ``key`` (shared: do not mutate it).

        :raises SchemaResolutionError: no repository has it (the lookup history says why).
        :raises InvalidSchemaError: the first repository that has it returned an invalid schema.
        """
        schema = self._schemas.get(key)
        if schema is not None:
            return schema
        with self._key_lock(key):
            schema = self._schemas.get(key)
            if schema is not None:
                return schema
            now = self._clock()
            miss = self._misses.get(key)
            if miss is not None and self._expired(miss.stored_at, now):
                miss = None
            if miss is not None:
                if miss.invalid is not None:
                    raise miss.invalid
                retry = [
                    r
                    for r in self.repositories_for(key.vendor)
                    if r.name not in miss.histories or miss.histories[r.name].due_for_retry(now)
                ]
                if not retry:
                    raise self._resolution_error(key, miss)
            else:
                retry = list(self.repositories_for(key.vendor))
                miss = _Miss(stored_at=now, histories={})
            for repo in retry:
                try:
                    document = repo.fetch(key)
                except LookupFailure as failure:
                    history = miss.histories.get(repo.name) or _History(repo.name, repo.retryable)
                    history.record(failure, self._clock())
                    miss.histories[repo.name] = history
                    continue
                except Exception as exc:  # a repository bug must not take the loader down
                    history = miss.histories.get(repo.name) or _History(repo.name, repo.retryable)
                    history.record(LookupFailure("RepoFailure", f"{type(exc).__name__}: {exc}"), self._clock())
                    miss.histories[repo.name] = history
                    continue
                from airflow_osds.snowplow.validation import schema_issues

                issues = schema_issues(key, document)
                if issues:
                    miss.invalid = InvalidSchemaError(key, issues, repository=repo.name)
                    if self.cache_ttl != 0:
                        self._misses[key] = miss
                    raise miss.invalid
                self._misses.pop(key, None)
                self._schemas[key] = document
                return document
            if self.cache_ttl != 0:
                self._misses[key] = miss
            raise self._resolution_error(key, miss)

    def _resolution_error(self, key: SchemaKey, miss: _Miss) -> SchemaResolutionError:
        ordered = [miss.histories[r.name] for r in self.repositories_for(key.vendor) if r.name in miss.histories]
        return SchemaResolutionError(key, [h.as_json() for h in ordered])

    def _retrieve(self, uri: str) -> Any:
        """A ``$ref`` to another document: Iglu schema URLs go through this resolver, never the network."""
        from airflow_osds.snowplow.validation import retrieve_reference

        return retrieve_reference(uri, self.lookup)

    def versions(self, vendor: str, name: str, model: int) -> list[SchemaKey]:
        """All versions of one model, oldest first, from the first repository that can list them.

        Static registries (directories) and Iglu Servers can list; static HTTP registries cannot.
        Cached for ``cache_ttl`` (new versions get published).

        :raises SchemaListNotFoundError: no repository could list the model.
        """
        list_key = (vendor, name, model)
        now = self._clock()
        cached = self._lists.get(list_key)
        if cached is not None and not self._expired(cached[0], now):
            if isinstance(cached[1], SchemaListNotFoundError):
                raise cached[1]
            return list(cached[1])
        with self._key_lock(list_key):
            cached = self._lists.get(list_key)
            if cached is not None and not self._expired(cached[0], now):
                if isinstance(cached[1], SchemaListNotFoundError):
                    raise cached[1]
                return list(cached[1])
            histories: list[_History] = []
            for repo in self.repositories_for(vendor):
                try:
                    keys = repo.list_versions(vendor, name, model)
                except LookupFailure as failure:
                    history = _History(repo.name, repo.retryable)
                    history.record(failure, self._clock())
                    histories.append(history)
                    continue
                if self.cache_ttl != 0:
                    self._lists[list_key] = (now, keys)
                return list(keys)
            criterion = SchemaCriterion(vendor, name, "jsonschema", model, None, None)
            error = SchemaListNotFoundError(criterion, [h.as_json() for h in histories])
            if self.cache_ttl != 0:
                self._lists[list_key] = (now, error)
            raise error

    # ---- validation

    def validator(self, key: SchemaKey) -> SchemaValidator:
        """The compiled validator for ``key``, compiled once per resolver.

        Calling it with a datum returns 2-0-1 ``dataReports`` (an empty list when valid).

        :raises SchemaResolutionError: the schema cannot be found.
        :raises InvalidSchemaError: the schema is invalid or cannot be compiled.
        """
        validator = self._validators.get(key)
        if validator is not None:
            return validator
        failed = self._compile_failures.get(key)
        if failed is not None and not self._expired(failed[0], self._clock()):
            raise failed[1]
        schema = self.lookup(key)
        from airflow_osds.snowplow.validation import compile_schema

        try:
            compiled = compile_schema(key, schema, retrieve=self._retrieve)
        except InvalidSchemaError as exc:
            if self.cache_ttl != 0:
                self._compile_failures[key] = (self._clock(), exc)
            raise
        # Two threads may compile the same schema at once; both results are equal, keep one.
        return self._validators.setdefault(key, compiled)

    def validate(self, key: SchemaKey, data: Any) -> None:
        """Validate ``data`` against ``key``'s schema.

        :raises DataValidationError: with the reports, when invalid.
        :raises SchemaResolutionError, InvalidSchemaError: the schema is unusable.
        """
        reports = self.validator(key)(data)
        if reports:
            raise DataValidationError(key, reports)

    def self_describing_key(self, instance: Any) -> SchemaKey:
        """The key of a self-describing JSON ``{"schema": "iglu:...", "data": ...}``, its shape checked.

        The shape is validated against ``iglu:com.snowplowanalytics.self-desc/instance-iglu-only/jsonschema/1-0-0``,
        as Snowplow's client does, so a malformed instance is a ``ValidationError`` naming that schema.

        :raises DataValidationError: not an object with exactly ``schema`` and ``data``, or the URI
            passes that schema's pattern but not the Iglu grammar (``0-1-0``, ``1-01-0``).
        """
        reports = self.validator(INSTANCE_IGLU_ONLY)(instance)
        if reports:
            raise DataValidationError(INSTANCE_IGLU_ONLY, reports)
        try:
            return SchemaKey.parse(instance["schema"])
        except ValueError as exc:
            uri = instance["schema"]
            report = {"message": f"$.schema: {exc}", "path": "$.schema", "keyword": "pattern", "targets": [uri]}
            raise DataValidationError(INSTANCE_IGLU_ONLY, [report]) from None

    def validate_self_describing(self, instance: Any) -> tuple[SchemaKey, Any]:
        """Check a self-describing JSON (:meth:`self_describing_key`) and validate its data against its schema.

        :returns: the key and the data (the same object as in ``instance``).
        :raises IgluError: any of the failures, each with :meth:`IgluError.failure`.
        """
        key = self.self_describing_key(instance)
        data = instance["data"]
        self.validate(key, data)
        return key, data


#: The schema every self-describing instance is checked against first.
INSTANCE_IGLU_ONLY = SchemaKey("com.snowplowanalytics.self-desc", "instance-iglu-only", "jsonschema", 1, 0, 0)
