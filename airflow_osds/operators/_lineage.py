"""OpenLineage for every airflow-osds operator: its inlets are the inputs, its outlets the outputs.

The factory sets each task's inlets and outlets from what the step reads and writes, so the
lineage a task reports is exactly the Assets it emits. The datasets' names need the
connections' hosts and databases: they are looked up here, when the OpenLineage listener
asks (as the task starts and ends), never while a DAG file is parsed. The naming itself is
:mod:`airflow_osds.lineage`.

OpenLineage is optional (``pip install 'airflow-osds[openlineage]'``): without its provider
nothing calls these methods, and they return ``None`` if something does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_osds.assets import ref_from_asset
from airflow_osds.lineage import Endpoint, dataset_of

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

__all__ = ["OpenLineageMixin", "operator_lineage"]


class OpenLineageMixin:
    """Report the task's inlets and outlets to OpenLineage (see :mod:`airflow_osds.lineage` for the names)."""

    def get_openlineage_facets_on_start(self) -> OperatorLineage | None:
        return operator_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        return operator_lineage(self)


def operator_lineage(task: Any) -> OperatorLineage | None:
    """``task``'s inlets and outlets as OpenLineage datasets; ``None`` without the OpenLineage provider."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    endpoints: dict[str, Endpoint | None] = {}
    return OperatorLineage(inputs=_datasets(task.inlets, endpoints, task.log),
                           outputs=_datasets(task.outlets, endpoints, task.log))


def _datasets(assets: Iterable[Any], endpoints: dict[str, Endpoint | None], log: Any) -> list[Any]:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    out: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for asset in assets:
        if not isinstance(asset, Asset):
            continue
        ref = ref_from_asset(asset.name, asset.uri)
        if ref is None:  # not one of ours (a user's postgres:// Asset…): as OpenLineage names it
            dataset = translate_airflow_asset(asset, None)
        else:
            named = dataset_of(ref, _endpoint(ref.conn_id, endpoints, log))
            dataset = Dataset(namespace=named.namespace, name=named.name)
        if dataset is not None and (dataset.namespace, dataset.name) not in seen:
            seen.add((dataset.namespace, dataset.name))
            out.append(dataset)
    return out


def _endpoint(conn_id: str, endpoints: dict[str, Endpoint | None], log: Any) -> Endpoint | None:
    """The connection's non-secret fields, looked up once per call; ``None`` when it cannot be read."""
    if not conn_id:  # file locations need no connection
        return None
    if conn_id not in endpoints:
        from airflow.sdk import BaseHook

        try:
            endpoints[conn_id] = Endpoint.from_connection(BaseHook.get_connection(conn_id))
        except Exception as exc:  # lineage must never fail a task: name the data by its connection id
            log.warning("OpenLineage: cannot read connection %r (%s); its datasets are named osds…://%s",
                        conn_id, exc, conn_id)
            endpoints[conn_id] = None
    return endpoints[conn_id]
