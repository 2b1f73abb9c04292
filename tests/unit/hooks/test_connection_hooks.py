"""Hooks read their settings from real Airflow connections (``AIRFLOW_CONN_*``), secrets kept out of repr."""

from __future__ import annotations

import json

import pytest

from airflow_osds.hooks.reverse_etl import HttpDestinationHook
from airflow_osds.hooks.superset import SupersetHook


def test_superset_config_from_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPERSET_DEFAULT",
        json.dumps({"conn_type": "superset", "host": "superset.internal", "port": 8088, "login": "admin",
                    "password": "s3cr3t", "extra": {"auth_provider": "ldap", "timeout": 5}}),
    )
    config = SupersetHook().get_conn()
    assert config.base_url == "http://superset.internal:8088"
    assert (config.username, config.password, config.auth_provider, config.timeout) == ("admin", "s3cr3t", "ldap", 5.0)
    assert "s3cr3t" not in repr(config)


def test_superset_url_with_scheme_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SS", json.dumps({"conn_type": "superset", "host": "https://bi.example.com/"}))
    assert SupersetHook("ss").get_conn().base_url == "https://bi.example.com"


def test_missing_host_names_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SS", json.dumps({"conn_type": "superset", "login": "a"}))
    with pytest.raises(ValueError, match="Connection 'ss' has no host"):
        SupersetHook("ss").get_conn()


@pytest.mark.parametrize(
    ("auth_type", "expected"),
    [("bearer", {"Authorization": "Bearer tok"}), ("header", {"X-Key": "tok"}), ("basic", {}), ("none", {})],
)
def test_http_destination_auth_headers(monkeypatch: pytest.MonkeyPatch, auth_type: str, expected: dict) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM",
        json.dumps({"conn_type": "reverse_etl_http", "host": "api.crm.test", "password": "tok",
                    "extra": {"auth_type": auth_type, "api_key_header": "X-Key"}}),
    )
    config = HttpDestinationHook("crm").get_conn()
    assert config.base_url == "https://api.crm.test"
    assert config.auth_headers() == expected
    assert "tok" not in repr(config)


def test_http_destination_rejects_unknown_auth_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps({"conn_type": "reverse_etl_http", "host": "h", "extra": {"auth_type": "oauth"}}))
    with pytest.raises(ValueError, match="auth_type 'oauth' is not one of none, bearer, header, basic"):
        HttpDestinationHook("crm").get_conn()
