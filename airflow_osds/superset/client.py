"""Superset's REST API over httpx: login, token refresh, the CSRF token with its session cookie, retries
(no Airflow imports; :class:`~airflow_osds.hooks.superset.SupersetHook` builds one from a connection).

* **Login**: ``POST /api/v1/security/login`` with the ``db`` or ``ldap`` provider and ``refresh: true``.
  A refused login is :class:`SupersetAuthError`, naming the user and provider, never the password.
* **Tokens**: the access token lives ~15 min. A refused token (401 when expired, 422 ``{"msg"}`` when
  malformed) is refreshed once (``POST /api/v1/security/refresh`` with the refresh token), else the
  client logs in again, and the call is repeated.
* **CSRF**: with ``WTF_CSRF_ENABLED`` (Superset's default) a Bearer token does not exempt POST/PUT/DELETE.
  The token from ``GET /api/v1/security/csrf_token/`` is bound to the ``session`` cookie that answer sets,
  so both travel together: one ``httpx.Client`` keeps the cookie, every mutating call sends
  ``X-CSRFToken``. A 400 saying the CSRF token is missing or invalid fetches a new one once.
* **Retries**: connection errors, timeouts, 429 and 502/503/504 are retried with exponential backoff
  (``Retry-After`` honoured); an unreachable server ends as :class:`SupersetUnreachable` with the URL.
* Other 4xx/5xx: :class:`SupersetApiError` with the method, path, status and Superset's message.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from airflow_osds.exceptions import OsdsError

__all__ = ["SupersetApiError", "SupersetAuthError", "SupersetClient", "SupersetUnreachable"]

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class SupersetApiError(OsdsError):
    """Superset answered a call with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SupersetAuthError(SupersetApiError):
    """Superset refused the credentials (or the session could not be renewed)."""


class SupersetUnreachable(SupersetApiError):
    """No answer from Superset after the retries (refused, reset, timed out)."""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return text[:300] + ("…" if len(text) > 300 else "")
    if isinstance(body, dict):
        if "message" in body:
            return str(body["message"])[:500]
        if body.get("errors"):
            return "; ".join(str(e.get("message", e)) for e in body["errors"] if isinstance(e, dict))[:500]
    return str(body)[:500]


def _token_refused(response: httpx.Response) -> bool:
    """Superset (flask-jwt-extended) refuses an expired token with 401 and a malformed or revoked one with 422
    ``{"msg": ...}``: both are cured by a new token."""
    if response.status_code == 401:
        return True
    if response.status_code == 422:
        try:
            return set(response.json()) == {"msg"}
        except ValueError:
            return False
    return False


class SupersetClient:
    """One authenticated session with a Superset server (use it as a context manager, or ``close()``).

    :param base_url: e.g. ``http://127.0.0.1:8088``.
    :param provider: ``db`` or ``ldap`` (Superset's ``AUTH_TYPE``).
    :param attempts: sends of one call before giving up on a retryable failure.
    """

    def __init__(self, base_url: str, username: str, password: str, *, provider: str = "db",
                 timeout: float = 60.0, verify: bool = True, attempts: int = 4, base_delay: float = 0.5,
                 max_delay: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if provider not in ("db", "ldap"):
            raise ValueError(f"provider {provider!r} is not one of db, ldap")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.provider = provider
        self.attempts = max(1, attempts)
        self.base_delay, self.max_delay, self._sleep = base_delay, max_delay, sleep
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify,
                                  headers={"Accept": "application/json", "User-Agent": "airflow-osds"})
        self._access: str | None = None
        self._refresh: str | None = None
        self._csrf: str | None = None
        self._lock = threading.RLock()  # one login / refresh / CSRF fetch at a time when threads share the client

    def __enter__(self) -> SupersetClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- the session ----------------------------------------------------------------------------------

    def login(self) -> None:
        """Log in (again): new access and refresh tokens, and a new CSRF token on the next mutating call."""
        with self._lock:
            self._login()

    def _login(self) -> None:
        response = self._send("POST", "/api/v1/security/login", json={
            "username": self.username, "password": self._password, "provider": self.provider, "refresh": True})
        if response.status_code in (400, 401, 403):
            raise SupersetAuthError(f"Superset at {self.base_url} refused the login of user {self.username!r} "
                                    f"(provider {self.provider}): {_message(response)}", status=response.status_code)
        self._raise_for(response, "POST", "/api/v1/security/login")
        tokens = response.json()
        self._access, self._refresh, self._csrf = tokens["access_token"], tokens.get("refresh_token"), None

    def _renew(self, refused: str | None) -> None:
        """A new access token from the refresh token, else a new login (unless another thread just did it)."""
        with self._lock:
            if self._access != refused:
                return
            self._renew_locked()

    def _renew_locked(self) -> None:
        if self._refresh:
            response = self._send("POST", "/api/v1/security/refresh",
                                  headers={"Authorization": f"Bearer {self._refresh}"})
            if response.status_code == 200:
                self._access = response.json()["access_token"]
                return
        self._login()

    def csrf_token(self) -> str:
        """The CSRF token of this session (fetched once: its cookie is kept by the client)."""
        with self._lock:
            if self._csrf is None:
                self._csrf = str(self.request("GET", "/api/v1/security/csrf_token/")["result"])
            return self._csrf

    # --- calls --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """Call the API and return the JSON answer (``{}`` for an empty one).

        :raises SupersetAuthError: the credentials are refused.
        :raises SupersetUnreachable: no answer after the retries.
        :raises SupersetApiError: any other error answer.
        """
        method = method.upper()
        with self._lock:
            if self._access is None:
                self._login()
        renewed = csrf_renewed = False
        while True:
            access = self._access
            headers = {"Authorization": f"Bearer {access}"}
            if method in _MUTATING:
                headers["X-CSRFToken"] = self.csrf_token()
            response = self._send(method, path, json=json, params=params, headers=headers)
            if _token_refused(response) and not renewed:
                renewed = True
                self._renew(access)
                continue
            if (response.status_code == 400 and method in _MUTATING and not csrf_renewed
                    and "csrf" in response.text.lower()):
                csrf_renewed = True
                with self._lock:
                    self._csrf = None
                continue
            self._raise_for(response, method, path)
            return response.json() if response.content else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    # --- transport ----------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried on what a retry may cure; the last answer (or :class:`SupersetUnreachable`)."""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out
                if attempt == self.attempts:
                    raise SupersetUnreachable(f"cannot reach Superset at {self.base_url} ({method} {path}, "
                                              f"{attempt} attempts): {type(exc).__name__}: {exc}") from None
                self._sleep(self._delay(attempt, None))
                continue
            if response.status_code in _RETRY_STATUSES and attempt < self.attempts:
                self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay / 2 + random.random() * delay / 2

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> None:
        if response.is_success:
            return
        what = f"Superset {method} {path} answered HTTP {response.status_code}: {_message(response)}"
        if response.status_code in (401, 403):
            raise SupersetAuthError(what + f" (user {self.username!r})", status=response.status_code)
        raise SupersetApiError(what, status=response.status_code)
