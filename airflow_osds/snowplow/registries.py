"""Iglu registries: a static directory, an HTTP registry or Iglu Server, schemas in memory.

Each answers :meth:`Repository.fetch` with the parsed schema or raises :class:`LookupFailure`
(``NotFound``, ``RepoFailure``, ``ClientFailure``: the kinds of Snowplow's lookup histories);
the :class:`~airflow_osds.snowplow.iglu.Resolver` orders them, caches and records histories.
httpx and tenacity are imported on the first HTTP request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.snowplow.keys import VERSION_PATTERN, SchemaKey

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HttpRepository",
    "LookupFailure",
    "MemoryRepository",
    "Repository",
    "StaticRepository",
]

# Bad-row schema loader_iglu_error 2-0-1 caps lookup messages at 256 characters.
MAX_MESSAGE = 256


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
        return {"error": self.kind, "message": truncate(self.message)}


def truncate(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


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
        match = VERSION_PATTERN.match(version)
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

    def __getstate__(self) -> dict[str, Any]:
        """Its settings, for another process, which opens its own client (a client does not cross processes)."""
        state = dict(self.__dict__)
        state.update(_client=None, _own_client=True, _client_lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
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
