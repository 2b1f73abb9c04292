"""Airflow plugin of airflow-osds (entry point ``airflow.plugins``).

- ``macros``: the ``osds`` namespace in templated fields;
- ``fastapi_apps``: the data-stack view's app (:mod:`airflow_osds.ui.app`), mounted by the
  api-server at ``/osds``;
- ``external_views``: the "Data stack" entry in the UI's navigation, showing ``/osds/`` in an
  iframe at ``/plugin/data-stack``.

Every Airflow process loads plugins (the DAG processor and each task start too), so this module
stays as cheap to import as before: the FastAPI app is built the first time the api-server (or
``airflow plugins``) asks for ``fastapi_apps``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_osds import assets
from airflow_osds.ui import URL_PREFIX, VIEW_NAME, VIEW_ROUTE

__all__ = ["OsdsPlugin"]


class OsdsPlugin(AirflowPlugin):
    name = "osds"
    # {{ macros.osds.table_asset_name(...) }} etc. in templated fields.
    macros = [assets.table_asset_name, assets.table_asset_uri, assets.parse_table]
    external_views = [
        {
            "name": VIEW_NAME,
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": VIEW_ROUTE,  # set: Airflow shows the page inside its UI (an iframe)
            "category": "browse",
            "icon": f"{URL_PREFIX}/static/icon.svg",
        }
    ]

    # Airflow reads plugin attributes on the instance it creates, so a cached property on the
    # instance stands in for the class-level list other plugins declare.
    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from airflow_osds.ui.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": VIEW_NAME}]
