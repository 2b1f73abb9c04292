"""What the HTTP destinations share (no Airflow imports; httpx is imported when a client is built).

* :class:`HttpTransport`: an ``httpx.Client`` built from a :class:`~airflow_osds.hooks.reverse_etl.HttpDestinationConfig`
  (any object with its attributes): authentication, timeout, TLS verification; every request paced to the
  rate limit; a timeout or a broken connection raised as :class:`RetryableError`;
* :func:`raise_for_batch`: the status codes every destination treats alike (429, 408 and 5xx retryable;
  401 / 403 final);
* :func:`retry_after_seconds`: ``Retry-After`` as seconds or an HTTP date;
* the secret never leaves: every message built here passes through :func:`scrub`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow_osds.reverse_etl.destinations.base import Change, DestinationError, Rejection, RetryableError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HttpBacked", "HttpDestinationConfig", "HttpTransport", "Secrets", "canonical_json", "excerpt", "raise_for_batch", "reject_duplicates",
    "retry_after_seconds", "scrub", "secret_forms",
]

AuthType = Literal["none", "bearer", "header", "basic"]


@dataclass(frozen=True)
class HttpDestinationConfig:
    """What a ``reverse_etl_http`` connection holds (:class:`~airflow_osds.hooks.reverse_etl.HttpDestinationHook`
    reads it from Airflow); secrets are kept out of ``repr``."""

    base_url: str
    auth_type: AuthType = "bearer"
    login: str = ""
    secret: str = field(default="", repr=False)
    api_key_header: str = "X-API-Key"
    timeout: float = 30.0
    max_requests_per_second: float = 0.0
    verify_ssl: bool = True

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request (basic auth is left to the HTTP client)."""
        if self.auth_type == "bearer" and self.secret:
            return {"Authorization": f"Bearer {self.secret}"}
        if self.auth_type == "header" and self.secret:
            return {self.api_key_header: self.secret}
        return {}


EXCERPT_CHARS = 500

#: One secret, or every form of it a server might echo back (see :func:`secret_forms`).
Secrets = str | Sequence[str]


def secret_forms(secret: str, *, login: str | None = None) -> tuple[str, ...]:
    """The forms in which ``secret`` can come back in a reply: as is, JSON-escaped, and (with ``login``, for basic
    auth) the base64 ``login:secret`` of the ``Authorization`` header, which a server echoing headers would show."""
    if not secret:
        return ()
    forms = [secret, json.dumps(secret)[1:-1]]
    if login is not None:
        forms.append(base64.b64encode(f"{login}:{secret}".encode()).decode())
    return tuple(dict.fromkeys(forms))


def scrub(text: str, secret: Secrets) -> str:
    """``text`` with every occurrence of ``secret`` (or of each of its forms) replaced by ``***``."""
    for form in (secret,) if isinstance(secret, str) else secret:
        # A secret shorter than 4 characters would blank out ordinary words of the message.
        if form and len(form) >= 4:
            text = text.replace(form, "***")
    return text


def excerpt(text: str, secret: Secrets, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, scrubbed, at most ``limit`` characters (error bodies can be whole HTML pages)."""
    text = scrub(" ".join(text.split()), secret)
    return text if len(text) <= limit else text[:limit] + "…"


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def fields_digest(change: Change) -> str:
    return hashlib.sha256(canonical_json([change.fields, list(change.groups)]).encode()).hexdigest()


def reject_duplicates(
    changes: Sequence[Change], address: Callable[[Change], str], what: str
) -> tuple[list[Change], list[Rejection]]:
    """Split off the changes whose destination address (``address(change)``, normalised) is empty or was already
    taken by an earlier change of the batch: APIs refuse a batch that names one record twice."""
    kept: list[Change] = []
    rejected: list[Rejection] = []
    seen: dict[str, str] = {}
    for change in changes:
        addr = address(change)
        if not addr:
            rejected.append(Rejection(change.key, f"no {what} to address the record by"))
        elif addr in seen:
            rejected.append(Rejection(change.key, f"{what} {addr!r} is also that of key {seen[addr]!r} in the same batch"))
        else:
            seen[addr] = change.key
            kept.append(change)
    return kept, rejected


class HttpTransport:
    """One ``httpx.Client`` for one destination, every request paced at ``rate_limit`` per second."""

    def __init__(
        self,
        config: HttpDestinationConfig,
        *,
        name: str,
        rate_limit: float,
        basic_auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import httpx

        self.name = name
        self.rate_limit = rate_limit
        self._sleep = sleep
        self._clock = clock
        self._last: float | None = None
        auth: httpx.Auth | None = None
        if basic_auth is not None:
            auth = httpx.BasicAuth(*basic_auth)
            self.secrets = secret_forms(basic_auth[1], login=basic_auth[0])
        elif config.auth_type == "basic":
            auth = httpx.BasicAuth(config.login, config.secret)
            self.secrets = secret_forms(config.secret, login=config.login)
        else:
            self.secrets = secret_forms(config.secret)
        self.client = httpx.Client(
            base_url=config.base_url,
            headers={"Accept": "application/json", "User-Agent": "airflow-osds-reverse-etl",
                     **(config.auth_headers() if basic_auth is None else {}), **(headers or {})},
            auth=auth,
            timeout=config.timeout,
            verify=config.verify_ssl,
            follow_redirects=False,
        )

    def request(self, method: str, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send one request; a timeout, a refused or dropped connection → :class:`RetryableError`."""
        import httpx

        if self.rate_limit > 0 and self._last is not None:
            wait = self._last + 1.0 / self.rate_limit - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last = self._clock()
        try:
            return self.client.request(method, path, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            message = f"{self.name}: {method} {path} timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:  # refused, reset, closed without a response
            message = f"{self.name}: {method} {path}: connection failed ({type(exc).__name__}: {exc})"
        # The path too: some endpoints take their key in the query string.
        raise RetryableError(scrub(message, self.secrets)) from None

    def close(self) -> None:
        self.client.close()


def raise_for_batch(response: httpx.Response, *, name: str, secret: Secrets, retry_after: float | None = None) -> None:
    """Raise for the statuses that fail a whole batch the same way everywhere: 429 / 408 / 5xx (retryable, with
    ``Retry-After``), 401 / 403 (final: the credentials). Returns for anything else."""
    status = response.status_code
    what = f"{name}: {response.request.method} {response.request.url.path} answered HTTP {status}"
    if status == 429 or status == 408 or status >= 500:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is None:
            wait = retry_after
        raise RetryableError(f"{what}: {excerpt(response.text, secret, 200)}", retry_after=wait)
    if status in (401, 403):
        raise DestinationError(
            f"{what}: the connection's credentials are {'refused' if status == 401 else 'not allowed to do this'}: "
            f"{excerpt(response.text, secret, 300)}"
        )


class HttpBacked:
    """What the HTTP destinations share around their :class:`HttpTransport` (``self._http``): the rate
    limit (set from the connection, overridable by the step), closing it, and a reply that must be a JSON object."""

    object_name: str
    _http: HttpTransport

    @property
    def rate_limit(self) -> float:
        return self._http.rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float) -> None:
        self._http.rate_limit = value

    def close(self) -> None:
        self._http.close()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        """The reply's JSON object; anything else fails the batch (the API answered something we cannot read)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise DestinationError(f"{self.object_name}: HTTP {response.status_code} with a body that is not a JSON "
                                   f"object: {excerpt(response.text, self._http.secrets)}")
        return body
