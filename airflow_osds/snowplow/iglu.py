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

Importing this module is cheap: httpx, tenacity, fastjsonschema and jsonschema are imported
when first needed (an HTTP lookup, the first validation, the first invalid datum).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.exceptions import OsdsError

if TYPE_CHECKING:
    import httpx

    from airflow_osds.snowplow.validation import SchemaValidator

__all__ = [
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

# The reference grammar (snowplow-python-analytics-sdk json_shredder.py): the model starts at 1,
# no leading zeros.
_URI = re.compile(
    r"^iglu:([a-zA-Z0-9-_.]+)/([a-zA-Z0-9-_]+)/([a-zA-Z0-9-_]+)/([1-9][0-9]*(?:-(?:0|[1-9][0-9]*)){2})$"
)
_CRITERION = re.compile(
    r"^iglu:([a-zA-Z0-9-_.]+)/([a-zA-Z0-9-_]+)/([a-zA-Z0-9-_]+)/"
    r"(\*|[1-9][0-9]*)-(\*|0|[1-9][0-9]*)-(\*|0|[1-9][0-9]*)$"
)
_VERSION = re.compile(r"^([1-9][0-9]*)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$")
# Bad-row schema loader_iglu_error 2-0-1 caps lookup messages at 256 characters.
_MAX_MESSAGE = 256


@dataclass(frozen=True, slots=True)
class SchemaKey:
    """The coordinates of one schema: ``iglu:vendor/name/format/model-revision-addition``.

    Keys order by version first — ``(model, revision, addition)`` — then by vendor, name and
    format, so sorting the versions of one schema gives SchemaVer order and the order stays
    total (consistent with ``==``) for mixed lists.
    """

    vendor: str
    name: str
    format: str
    model: int
    revision: int
    addition: int

    def __post_init__(self) -> None:
        # The grammar allows "." in vendors; a vendor of only dots would climb out of a
        # static registry's directory.
        if not self.vendor.strip("."):
            raise ValueError(f"Invalid Iglu vendor {self.vendor!r}")

    @classmethod
    def parse(cls, uri: str) -> SchemaKey:
        """Parse ``iglu:vendor/name/format/M-R-A``; ``ValueError`` names the URI and the grammar."""
        return _parse_key(uri)

    @classmethod
    def from_self(cls, self_block: Any) -> SchemaKey:
        """The key a schema's ``self`` block (``{"vendor","name","format","version"}``) declares."""
        if not isinstance(self_block, Mapping):
            raise ValueError("the schema's 'self' must be an object with vendor, name, format and version")
        parts = [self_block.get(k) for k in ("vendor", "name", "format", "version")]
        if not all(isinstance(p, str) for p in parts):
            raise ValueError("the schema's 'self' needs string vendor, name, format and version")
        return cls.parse(f"iglu:{parts[0]}/{parts[1]}/{parts[2]}/{parts[3]}")

    @property
    def version(self) -> str:
        return f"{self.model}-{self.revision}-{self.addition}"

    @property
    def uri(self) -> str:
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def path(self) -> str:
        """``vendor/name/format/M-R-A``: the path under a registry's ``schemas/``."""
        return f"{self.vendor}/{self.name}/{self.format}/{self.version}"

    def _order(self) -> tuple[int, int, int, str, str, str]:
        return (self.model, self.revision, self.addition, self.vendor, self.name, self.format)

    def __lt__(self, other: SchemaKey) -> bool:
        return self._order() < other._order()

    def __le__(self, other: SchemaKey) -> bool:
        return self._order() <= other._order()

    def __gt__(self, other: SchemaKey) -> bool:
        return self._order() > other._order()

    def __ge__(self, other: SchemaKey) -> bool:
        return self._order() >= other._order()

    def __str__(self) -> str:
        return self.uri


@functools.lru_cache(maxsize=4096)
def _parse_key(uri: str) -> SchemaKey:
    # Cached: the same few URIs arrive with every event.
    match = _URI.match(uri) if isinstance(uri, str) else None
    if match is None:
        raise ValueError(
            f"Invalid Iglu schema URI {uri!r}: expected iglu:<vendor>/<name>/<format>/<model>-<revision>-<addition>, "
            "e.g. iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0 (model from 1, no leading zeros)"
        )
    vendor, name, fmt, version = match.groups()
    model, revision, addition = (int(p) for p in version.split("-"))
    return SchemaKey(vendor, name, fmt, model, revision, addition)


@dataclass(frozen=True, slots=True)
class SchemaCriterion:
    """A set of versions of one schema, e.g. ``iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*``.

    ``None`` stands for ``*``. Used for the envelopes (which accept any ``1-0-*``) and to name a
    model whose version list cannot be found (``SchemaListNotFound``).
    """

    vendor: str
    name: str
    format: str
    model: int | None
    revision: int | None = None
    addition: int | None = None

    @classmethod
    def parse(cls, text: str) -> SchemaCriterion:
        match = _CRITERION.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"Invalid Iglu schema criterion {text!r}: expected iglu:<vendor>/<name>/<format>/<M|*>-<R|*>-<A|*>")
        vendor, name, fmt, *version = match.groups()
        model, revision, addition = (None if p == "*" else int(p) for p in version)
        return cls(vendor, name, fmt, model, revision, addition)

    @property
    def uri(self) -> str:
        parts = ("*" if p is None else str(p) for p in (self.model, self.revision, self.addition))
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{'-'.join(parts)}"

    def matches(self, key: SchemaKey) -> bool:
        return (
            key.vendor == self.vendor
            and key.name == self.name
            and key.format == self.format
            and (self.model is None or key.model == self.model)
            and (self.revision is None or key.revision == self.revision)
            and (self.addition is None or key.addition == self.addition)
        )

    def __str__(self) -> str:
        return self.uri


# --------------------------------------------------------------------------- errors


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


class LookupFailure(Exception):
    """One repository's answer to one lookup, when it is not a schema (internal to repositories).

    :param kind: ``NotFound``, ``RepoFailure`` (the repository is unwell: network, 5xx, 429,
        unreadable content) or ``ClientFailure`` (the request is refused: 401/403/other 4xx,
        or the repository cannot list).
    :param attempts: requests made, retries included.
    """

    KINDS = ("NotFound", "RepoFailure", "ClientFailure")

    def __init__(self, kind: str, message: str | None = None, *, attempts: int = 1) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown lookup failure kind {kind!r}")
        self.kind = kind
        self.message = message
        self.attempts = attempts
        super().__init__(f"{kind}: {message}" if message else kind)

    def as_json(self) -> dict[str, str]:
        if self.kind == "NotFound" or not self.message:
            return {"error": self.kind}
        return {"error": self.kind, "message": _truncate(self.message)}


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def _describe_history(entry: Mapping[str, Any]) -> str:
    errors = ", ".join(e["error"] + (f" ({e['message']})" if e.get("message") else "") for e in entry["errors"])
    return f"repository {entry['repository']!r}: {errors} after {entry['attempts']} attempt(s)"


# --------------------------------------------------------------------------- repositories


class Repository:
    """A schema registry. Subclasses implement :meth:`fetch` and, if they can, :meth:`list_versions`.

    :param name: the name used in lookup histories (unique within a resolver).
    :param priority: lower is asked first (after vendor-prefix matches).
    :param vendor_prefixes: vendors starting with one of these ask this repository first.
    """

    #: Whether a failed lookup may succeed later (network registries); static ones are not re-asked.
    retryable = False

    def __init__(self, *, name: str, priority: int = 0, vendor_prefixes: Sequence[str] = ()) -> None:
        if not name:
            raise ValueError("a repository needs a name (it appears in lookup histories)")
        if isinstance(vendor_prefixes, str):
            raise TypeError("vendor_prefixes is a list of prefixes, not one string")
        self.name = name
        self.priority = int(priority)
        self.vendor_prefixes = tuple(vendor_prefixes)

    def matches_vendor(self, vendor: str) -> bool:
        return any(vendor.startswith(prefix) for prefix in self.vendor_prefixes)

    def fetch(self, key: SchemaKey) -> Any:
        """The parsed schema JSON; raises :class:`LookupFailure`."""
        raise NotImplementedError

    def list_versions(self, vendor: str, name: str, model: int) -> list[SchemaKey]:
        """All known versions of one model (``jsonschema`` format); raises :class:`LookupFailure`."""
        raise LookupFailure("ClientFailure", f"repository {self.name!r} cannot list schemas")

    def close(self) -> None:
        """Release connections (network repositories)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, priority={self.priority})"


def _parse_document(raw: bytes | str, where: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LookupFailure("RepoFailure", f"{where} is not valid JSON: {exc}") from None


def _versions_from_names(names: Iterable[str], vendor: str, name: str, model: int) -> list[SchemaKey]:
    keys = []
    for version in names:
        match = _VERSION.match(version)
        if match and int(match.group(1)) == model:
            keys.append(SchemaKey(vendor, name, "jsonschema", model, int(match.group(2)), int(match.group(3))))
    return sorted(keys)


class StaticRepository(Repository):
    """A directory in the static registry layout: ``{path}/schemas/{vendor}/{name}/{format}/{M-R-A}``.

    The layout of Iglu Central and of Snowplow's ``embedded`` registries. It can list the
    versions of a model by scanning the model's directory.
    """

    def __init__(
        self, path: str | Path, *, name: str | None = None, priority: int = 0, vendor_prefixes: Sequence[str] = ()
    ) -> None:
        super().__init__(name=name or str(path), priority=priority, vendor_prefixes=vendor_prefixes)
        self.path = Path(path)
        self._schemas = self.path / "schemas"
        if not self._schemas.is_dir():
            raise ValueError(
                f"{self.path} is not a static Iglu registry: it has no schemas/ directory "
                "(expected schemas/<vendor>/<name>/<format>/<model>-<revision>-<addition>)"
            )

    def fetch(self, key: SchemaKey) -> Any:
        file = self._schemas / key.vendor / key.name / key.format / key.version
        try:
            raw = file.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise LookupFailure("NotFound") from None
        except OSError as exc:
            raise LookupFailure("RepoFailure", f"cannot read {file}: {exc.strerror or exc}") from None
        return _parse_document(raw, str(file))

    def list_versions(self, vendor: str, name: str, model: int) -> list[SchemaKey]:
        directory = self._schemas / vendor / name / "jsonschema"
        try:
            names = [p.name for p in directory.iterdir() if p.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            raise LookupFailure("NotFound") from None
        except OSError as exc:
            raise LookupFailure("RepoFailure", f"cannot list {directory}: {exc.strerror or exc}") from None
        keys = _versions_from_names(names, vendor, name, model)
        if not keys:
            raise LookupFailure("NotFound")
        return keys


class MemoryRepository(Repository):
    """Schemas held in memory, keyed by URI or :class:`SchemaKey` (the embedded bootstrap registry)."""

    def __init__(
        self,
        schemas: Mapping[str | SchemaKey, Any],
        *,
        name: str,
        priority: int = 0,
        vendor_prefixes: Sequence[str] = (),
    ) -> None:
        super().__init__(name=name, priority=priority, vendor_prefixes=vendor_prefixes)
        self._by_key = {(k if isinstance(k, SchemaKey) else SchemaKey.parse(k)): v for k, v in schemas.items()}

    def fetch(self, key: SchemaKey) -> Any:
        try:
            return self._by_key[key]
        except KeyError:
            raise LookupFailure("NotFound") from None

    def list_versions(self, vendor: str, name: str, model: int) -> list[SchemaKey]:
        keys = sorted(
            k for k in self._by_key if (k.vendor, k.name, k.format, k.model) == (vendor, name, "jsonschema", model)
        )
        if not keys:
            raise LookupFailure("NotFound")
        return keys


class _Transient(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


class HttpRepository(Repository):
    """A registry over HTTP: a static one (``http://iglucentral.com``) or an Iglu Server (``https://host/api``).

    Lookups ``GET {uri}/schemas/{vendor}/{name}/{format}/{version}``, sending ``apikey`` as a
    header when given (Iglu Server). Listing ``GET {uri}/schemas/{vendor}/{name}/jsonschema/{model}``
    works on an Iglu Server (a JSON array of URIs); a static registry answers it with 404 or
    a non-JSON page, which is reported as NotFound or "cannot list".

    Connection errors, timeouts, ``5xx`` and ``429`` are retried ``retries`` times with
    exponential back-off starting at ``retry_wait`` seconds; then the lookup is a RepoFailure.

    :param client: an ``httpx.Client`` to use (its lifetime is the caller's); by default one
        is created on first use and closed by :meth:`close`.
    """

    retryable = True

    def __init__(
        self,
        uri: str,
        *,
        name: str | None = None,
        priority: int = 0,
        vendor_prefixes: Sequence[str] = (),
        apikey: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        retry_wait: float = 0.2,
        client: httpx.Client | None = None,
    ) -> None:
        if not uri.startswith(("http://", "https://")):
            raise ValueError(f"An HTTP Iglu repository URI must start with http:// or https://, got {uri!r}")
        super().__init__(name=name or uri, priority=priority, vendor_prefixes=vendor_prefixes)
        self.uri = uri.rstrip("/")
        self.apikey = apikey
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.retry_wait = retry_wait
        self._client = client
        self._own_client = client is None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the apikey
        return f"HttpRepository(uri={self.uri!r}, name={self.name!r}, priority={self.priority})"

    def _http(self) -> httpx.Client:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    import httpx

                    headers = {"Accept": "application/json"}
                    if self.apikey:
                        headers["apikey"] = self.apikey
                    self._client = httpx.Client(timeout=self.timeout, headers=headers, follow_redirects=True)
        return self._client

    def _get(self, url: str) -> tuple[httpx.Response, int]:
        import httpx
        import tenacity

        client = self._http()
        headers = {"apikey": self.apikey} if self.apikey and not self._own_client else None
        attempts = 0

        def once() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            response = client.get(url, headers=headers)
            if response.status_code >= 500 or response.status_code == 429:
                raise _Transient(response)
            return response

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.retry_wait, max=10),
            retry=tenacity.retry_if_exception_type((httpx.TransportError, _Transient)),
            reraise=True,
        )
        try:
            return retrying(once), attempts
        except _Transient as exc:
            status = exc.response.status_code
            raise LookupFailure("RepoFailure", f"HTTP {status} from {url}", attempts=attempts) from None
        except httpx.TransportError as exc:
            detail = str(exc) or type(exc).__name__
            raise LookupFailure("RepoFailure", f"{type(exc).__name__} for {url}: {detail}", attempts=attempts) from None
        except httpx.HTTPError as exc:  # invalid URL and the like: retrying cannot help
            raise LookupFailure("ClientFailure", f"{type(exc).__name__} for {url}: {exc}", attempts=attempts) from None

    def _refused(self, response: httpx.Response, url: str, attempts: int) -> LookupFailure:
        body = response.text[:120].strip().replace("\n", " ")
        return LookupFailure(
            "ClientFailure", f"HTTP {response.status_code} from {url}" + (f": {body}" if body else ""), attempts=attempts
        )

    def fetch(self, key: SchemaKey) -> Any:
        url = f"{self.uri}/schemas/{key.path}"
        response, attempts = self._get(url)
        if response.status_code == 404:
            raise LookupFailure("NotFound", attempts=attempts)
        if response.status_code != 200:
            raise self._refused(response, url, attempts)
        try:
            return _parse_document(response.content, url)
        except LookupFailure as exc:
            exc.attempts = attempts
            raise

    def list_versions(self, vendor: str, name: str, model: int) -> list[SchemaKey]:
        url = f"{self.uri}/schemas/{vendor}/{name}/jsonschema/{model}"
        response, attempts = self._get(url)
        if response.status_code == 404:
            raise LookupFailure("NotFound", attempts=attempts)
        if response.status_code != 200:
            raise self._refused(response, url, attempts)
        try:
            listed = json.loads(response.content)
        except ValueError:
            listed = None
        if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
            raise LookupFailure(
                "ClientFailure",
                f"{url} is not an Iglu Server list endpoint (a static registry cannot list schemas)",
                attempts=attempts,
            )
        versions = []
        for uri in listed:
            try:
                versions.append(SchemaKey.parse(uri))
            except ValueError:
                continue
        keys = sorted(k for k in versions if (k.vendor, k.name, k.format, k.model) == (vendor, name, "jsonschema", model))
        if not keys:
            raise LookupFailure("NotFound", attempts=attempts)
        return keys

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None and self._own_client:
                self._client.close()
                self._client = None


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

                issues = schema_issues(key, document, retrieve=self._retrieve)
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
            report = {"message": f"$.schema: {exc}", "path": "$.schema", "keyword": "pattern", "targets": [instance["schema"]]}
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
