"""The airflow-osds plugin (airflow_osds/plugins.py): the data-stack view's registration and its import cost."""

from __future__ import annotations

import subprocess
import sys

from airflow_osds.plugins import OsdsPlugin
from airflow_osds.ui import URL_PREFIX


def test_the_nav_link_is_a_valid_external_view_shown_inside_airflows_ui() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    (view,) = OsdsPlugin.external_views
    parsed = ExternalViewResponse.model_validate(view)
    assert (parsed.name, parsed.href, parsed.destination, parsed.url_route) == (
        "Data stack", "/osds/", "nav", "data-stack")
    assert parsed.category == "browse" and parsed.icon == "/osds/static/icon.svg"


def test_the_app_is_mounted_outside_airflows_reserved_prefixes_and_requires_access() -> None:
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from fastapi import FastAPI

    (entry,) = OsdsPlugin().fastapi_apps
    assert entry["url_prefix"] == URL_PREFIX == "/osds"
    assert not any(URL_PREFIX.startswith(prefix) for prefix in RESERVED_URL_PREFIXES)
    app = entry["app"]
    assert isinstance(app, FastAPI)
    assert {"/", "/api/graph", "/static"} <= {route.path for route in app.routes}
    # Airflow's security dependencies guard every route of the app.
    guards = {dependency.dependency.__qualname__ for dependency in app.router.dependencies}
    assert guards == {"requires_access_dag.<locals>.inner", "requires_access_asset.<locals>.inner"}


def test_importing_the_plugin_does_not_build_the_app() -> None:
    """Every Airflow process (DAG processor, each task start) loads plugins: FastAPI and the factory stay out."""
    code = ("import sys, airflow_osds.plugins; "
            "print(sorted(m for m in ('fastapi', 'airflow_osds.ui.app', 'airflow_osds.factory') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
