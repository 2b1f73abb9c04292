"""Airflow plugin of airflow-osds (entry point ``airflow.plugins``).

Registered so later UI features (a view of the data stack) have one home; it adds
the ``osds`` macros namespace today.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_osds import assets

__all__ = ["OsdsPlugin"]


class OsdsPlugin(AirflowPlugin):
    name = "osds"
    # {{ macros.osds.table_asset_name(...) }} etc. in templated fields.
    macros = [assets.table_asset_name, assets.table_asset_uri, assets.parse_table]
