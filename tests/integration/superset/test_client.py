"""``SupersetClient`` against the session's real Superset 6.1.0: login, a renewed access token, the CSRF
token with its session cookie, refused credentials and an unreachable server, each with a clear error."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from airflow_osds.embedded import free_port
from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetAuthError, SupersetClient, SupersetUnreachable


def client_for(superset: LocalSuperset, **kwargs: object) -> SupersetClient:
    username, password = superset.admin
    return SupersetClient(superset.base_url, username, password, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_a_session_reads_and_writes_with_the_csrf_token_of_its_cookie(superset: LocalSuperset) -> None:
    with client_for(superset) as client:
        title = f"client {uuid.uuid4().hex[:8]}"
        created = client.post("/api/v1/dashboard/", {"dashboard_title": title})  # CSRF is on: needs the token
        found = client.get(f"/api/v1/dashboard/{created['id']}")
        assert found["result"]["dashboard_title"] == title
        # A token Superset no longer accepts is fetched again, once, and the call goes through.
        client._csrf = "stale-token"  # (the attribute the client keeps it in)
        assert client.put(f"/api/v1/dashboard/{created['id']}", {"dashboard_title": title + "!"})["id"] == created["id"]


def test_an_expired_access_token_is_renewed_and_the_call_repeated(superset: LocalSuperset) -> None:
    with client_for(superset) as client:
        client.login()
        client._access = "expired.or.revoked"  # a malformed token: Superset answers 422 {"msg": …}
        assert "result" in client.get("/api/v1/dashboard/")
        assert client._access != "expired.or.revoked"
        client._access, client._refresh = "expired", "also-expired"  # no refresh possible: a new login
        assert "result" in client.get("/api/v1/dashboard/")


def test_refused_credentials_name_the_user_and_never_the_password(superset: LocalSuperset) -> None:
    wrong = "not-the-password-7391"
    with SupersetClient(superset.base_url, superset.admin[0], wrong) as client:
        with pytest.raises(SupersetAuthError) as caught:
            client.get("/api/v1/dashboard/")
    message = str(caught.value)
    assert f"refused the login of user {superset.admin[0]!r} (provider db)" in message
    assert wrong not in message


def test_an_unreachable_server_is_retried_then_named() -> None:
    waits: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with SupersetClient(url, "admin", "secret-pw", attempts=3, sleep=waits.append) as client:
        with pytest.raises(SupersetUnreachable, match=rf"cannot reach Superset at {url} .*3 attempts"):
            client.login()
    assert len(waits) == 2 and waits[1] >= waits[0] / 2


def test_ldap_and_db_are_the_providers() -> None:
    with pytest.raises(ValueError, match="oauth"):
        SupersetClient("http://127.0.0.1:1", "a", "b", provider="oauth")


def test_the_hook_builds_a_client_from_its_connection(superset: LocalSuperset, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from airflow_osds.hooks.superset import SupersetHook

    monkeypatch.setenv("AIRFLOW_CONN_SUPERSET_TEST", json.dumps(superset.airflow_connection()))
    with SupersetHook("superset_test").client() as client:
        assert client.base_url == superset.base_url and client.provider == "db"
        assert "result" in client.get("/api/v1/dashboard/")


def test_a_token_past_its_expiry_gets_a_401_and_is_refreshed(superset: LocalSuperset) -> None:
    import jwt

    with client_for(superset) as client:
        client.login()
        claims = jwt.decode(client._access, options={"verify_signature": False})
        # The same token as Superset issued it, but 15 minutes old: signed with the server's own key.
        claims["exp"] = int(time.time()) - 60
        expired = jwt.encode(claims, (superset.state_dir / "secret_key").read_text().strip(), algorithm="HS256")
        raw = httpx.get(f"{superset.base_url}/api/v1/dashboard/", headers={"Authorization": f"Bearer {expired}"})
        assert raw.status_code == 401, raw.text  # what Superset answers a token past its expiry
        client._access = expired
        refresh_token = client._refresh
        assert client.get("/api/v1/dashboard/")["count"] >= 0, "renewed and repeated"
        assert client._access not in (expired, None) and client._refresh == refresh_token, \
            "renewed with the refresh token, not a new login"
