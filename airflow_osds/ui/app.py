"""The FastAPI app of the data-stack view, mounted by Airflow's api-server at ``/osds`` (see :mod:`airflow_osds.plugins`).

- ``GET /osds/``: the page (``static/data_stack.html``), shown in Airflow's UI at ``/plugin/data-stack``;
- ``GET /osds/api/graph``: its data, the graph of :func:`airflow_osds.ui.graph.stack_graph` with
  the last runs and Asset events of :mod:`airflow_osds.ui.state`;
- ``GET /osds/static/…``: the page's script and style sheet (code only, no data).

Airflow mounts plugin apps without its authentication, so the app declares it itself with
Airflow's own security dependencies: the caller must be allowed to read DAGs and Assets (the
auth manager decides, from the UI's session cookie or a bearer token), and the last runs are
shown only for the DAGs the caller may read.

Imported only by the api-server (the plugin builds the app on first use): importing it pulls
FastAPI and Airflow's API modules in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_asset, requires_access_dag
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from airflow_osds.factory import configured_folder
from airflow_osds.ui import URL_PREFIX, graph, state

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app() -> FastAPI:
    app = FastAPI(
        title="airflow-osds: the data stack",
        dependencies=[Depends(requires_access_dag("GET")), Depends(requires_access_asset("GET"))],
        # Airflow's own API documents itself; a second OpenAPI page under /osds would only confuse.
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/api/graph", graph_json, methods=["GET"])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "data_stack.html", headers={"Cache-Control": "no-store"})


def graph_json(request: Request, response: Response, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    """The graph from the YAML with each pipeline's last run and each Asset's last event."""
    folder, default_warehouse = configured_folder()
    view = graph.stack_graph(folder, default_warehouse=default_warehouse)
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
    runs = state.last_runs(session, [d for d in graph.dag_ids(view) if d in readable])
    assets = state.assets_by_name(session, graph.asset_names(view))
    response.headers["Cache-Control"] = "no-store"
    return graph.add_state(view, runs=runs, assets=assets, ui_root=_ui_root(request)) | {"folder": str(folder)}


def _ui_root(request: Request) -> str:
    """The path Airflow's UI is served under: the mount's root path without our prefix.

    Links go to the UI's pages (``/dags/<id>``, ``/assets/<id>``); behind a base URL such as
    ``https://host/airflow`` they must keep ``/airflow``.
    """
    return str(request.scope.get("root_path", "")).removesuffix(URL_PREFIX)
