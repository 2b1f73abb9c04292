"""The data-stack view in Airflow's UI: the pipelines, the data between them, and their last runs and events.

- :mod:`.graph`: the view's graph from the YAML (plain Python: the unit tests call it directly);
- :mod:`.state`: the last run of each pipeline and the last event of each Asset, from Airflow's metadata DB;
- :mod:`.app`: the FastAPI app the api-server mounts at :data:`URL_PREFIX` (the page and its JSON);
- ``static/``: the page itself, vanilla JS drawing inline SVG (no build step, nothing from the internet).

Only constants here: :mod:`airflow_osds.plugins` imports this package in every Airflow process.
"""

from __future__ import annotations

__all__ = ["URL_PREFIX", "VIEW_NAME", "VIEW_ROUTE"]

URL_PREFIX = "/osds"  # where the api-server mounts the app (not one of Airflow's reserved prefixes)
VIEW_NAME = "Data stack"
VIEW_ROUTE = "data-stack"  # the view's page in Airflow's UI: /plugin/data-stack
