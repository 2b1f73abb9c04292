"""The data-stack view's graph: what the page draws, as JSON-ready dicts.

:func:`stack_graph` reads the pipelines folder the way the DAG files do (validation, plans
and the cross-file graph of :mod:`airflow_osds.factory`), lays the graph out in layers and
lists the invalid files; :func:`add_state` adds what Airflow knows at request time (the last
run of each pipeline, the last event of each Asset) and the links into Airflow's UI.

Nothing here touches Airflow's database: :mod:`.state` reads it, so this module is plain
Python the unit tests call directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_osds.exceptions import PipelineSpecError
from airflow_osds.factory.graph import DataNode, data_graph, schedule_label

__all__ = ["add_state", "asset_names", "dag_ids", "layered_layout", "stack_graph"]


def stack_graph(folder: Path, *, default_warehouse: str) -> dict[str, Any]:
    """The graph of the valid pipelines under ``folder`` and the errors of the invalid ones.

    Never raises for a broken pipeline file: like ``report_pipeline_errors``, it lists it
    (file, line, column, message) and shows every healthy pipeline.
    """
    from airflow_osds.factory.project import load_project

    project = load_project(folder, default_warehouse=default_warehouse)
    graph = data_graph(project)
    positions = layered_layout([n.id for n in graph.nodes], [(e.source, e.target) for e in graph.edges])
    errors = list(project.errors) + _build_errors(folder, default_warehouse)
    return {
        "nodes": [_node(node, positions[node.id], folder) for node in graph.nodes],
        "edges": [{"from": e.source, "to": e.target, "kind": e.kind} for e in graph.edges],
        "errors": [_error(problem, error, folder) for error in sorted(errors, key=lambda e: e.path)
                   for problem in error.problems],
    }


def _node(node: DataNode, position: tuple[int, int], folder: Path) -> dict[str, Any]:
    layer, row = position
    out: dict[str, Any] = {"id": node.id, "kind": node.kind, "label": node.label, "layer": layer, "row": row}
    if node.plan is not None:
        out |= {"dag_id": node.plan.id, "schedule": schedule_label(node.plan),
                "file": _relative(node.plan.parsed.path, folder)}
    elif node.ref is not None:  # the Asset Airflow knows it by (assets.py names it; the page never recomputes a name)
        out |= {"asset_name": node.ref.name, "asset_uri": node.ref.uri}
    return out


def _error(problem: Any, error: PipelineSpecError, folder: Path) -> dict[str, Any]:
    return {"file": _relative(Path(error.path), folder), "line": problem.line, "column": problem.column,
            "message": problem.message}


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def _build_errors(folder: Path, default_warehouse: str) -> list[PipelineSpecError]:
    """DAGs that validated but failed to build, as recorded by the processes that built them.

    Only in the compiled cache's sidecar (a constructor raising is only seen by building);
    a stale or missing cache has none to tell.
    """
    from airflow_osds.factory.cache import CompiledCache

    cached = CompiledCache.read(folder, default_warehouse)
    return list(cached.build_errors().values()) if cached is not None else []


def layered_layout(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """``node → (layer, row)``: every edge points to a later layer, except edges closing a cycle.

    Reads that are not triggers may form cycles (two pipelines reading each other's tables),
    so the edges a depth-first search finds going back are left out of the layering. Rows
    order each layer by the mean row of the node's predecessors, which untangles most edges.
    """
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        successors[source].append(target)
    order = _reverse_postorder(nodes, successors)
    rank = {n: i for i, n in enumerate(order)}
    layer = dict.fromkeys(nodes, 0)
    predecessors: dict[str, list[str]] = {n: [] for n in nodes}
    for node in order:
        for target in successors[node]:
            if rank[target] > rank[node]:  # not a back edge
                layer[target] = max(layer[target], layer[node] + 1)
                predecessors[target].append(node)
    given = {n: i for i, n in enumerate(nodes)}  # ties keep the caller's order (pipelines, then data, sorted)
    rows: dict[str, int] = {}
    for current in range(max(layer.values(), default=-1) + 1):
        members = [n for n in nodes if layer[n] == current]

        def barycenter(node: str) -> float:
            placed = [rows[p] for p in predecessors[node] if p in rows]
            return sum(placed) / len(placed) if placed else -1.0

        for row, node in enumerate(sorted(members, key=lambda n: (barycenter(n), given[n]))):
            rows[node] = row
    return {n: (layer[n], rows[n]) for n in nodes}


def _reverse_postorder(nodes: list[str], successors: Mapping[str, list[str]]) -> list[str]:
    visited: set[str] = set()
    postorder: list[str] = []
    for root in nodes:
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(successors[root]))]
        while stack:  # iterative: a long chain of pipelines must not hit the recursion limit
            node, pending = stack[-1]
            for target in pending:
                if target not in visited:
                    visited.add(target)
                    stack.append((target, iter(successors[target])))
                    break
            else:
                postorder.append(node)
                stack.pop()
    return postorder[::-1]


def add_state(
    graph: dict[str, Any], *, runs: Mapping[str, Mapping[str, Any]], assets: Mapping[str, Mapping[str, Any]],
    ui_root: str = "",
) -> dict[str, Any]:
    """``graph`` with each pipeline's last run, each data node's Asset id and last event, and links.

    :param runs: dag id → its last run (``run_id``, ``state``, ``run_type``, ``run_after``, ``end_date``).
    :param assets: Asset name → ``id`` and ``last_event`` (``timestamp``, ``source_dag_id``,
        ``source_run_id``, or ``None``); an Asset no DAG has registered yet is absent.
    :param ui_root: the path Airflow's UI is served under ("" at the root of the host).
    """
    nodes = []
    for node in graph["nodes"]:
        node = dict(node)
        if node["kind"] == "pipeline":
            dag_id = node["dag_id"]
            node["href"] = f"{ui_root}/dags/{quote(dag_id, safe='')}"
            run = runs.get(dag_id)
            node["last_run"] = None if run is None else {
                **run, "href": f"{node['href']}/runs/{quote(str(run['run_id']), safe='')}"}
        else:
            asset = assets.get(node["asset_name"])
            node["asset_id"] = None if asset is None else asset["id"]
            node["href"] = None if asset is None else f"{ui_root}/assets/{asset['id']}"
            node["last_event"] = None if asset is None else asset.get("last_event")
        nodes.append(node)
    return {**graph, "nodes": nodes}


def asset_names(graph: Mapping[str, Any]) -> list[str]:
    """The Asset names of the graph's data nodes (what :mod:`.state` looks up)."""
    return [n["asset_name"] for n in graph["nodes"] if n["kind"] != "pipeline"]


def dag_ids(graph: Mapping[str, Any]) -> list[str]:
    return [n["dag_id"] for n in graph["nodes"] if n["kind"] == "pipeline"]
