"""OpenLineage for every airflow-osds operator: its inlets are the inputs, its outlets the outputs.

The factory sets each task's inlets and outlets from what the step reads and writes, so the
lineage a task reports is exactly the Assets it emits. The datasets' names need the
connections' hosts and databases: they are looked up here, when the OpenLineage listener
asks (as the task starts and ends), never while a DAG file is parsed. The naming itself is
:mod:`airflow_osds.lineage`.

Tasks that are not ours (``python``, ``operator`` and ``sensor`` steps) get the same names
through :func:`convert_asset_to_openlineage`, Airflow's Asset → OpenLineage converter for our
URI schemes (the provider info's ``asset-uris``): OpenLineage applies it to the inlets and
outlets of a task that reports no lineage of its own.

OpenLineage is optional (``pip install 'airflow-osds[openlineage]'``): without its provider
nothing calls these functions, and the facets methods return ``None`` if something does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_osds.assets import DataRef, ref_from_asset, ref_from_uri
from airflow_osds.lineage import Endpoint, dataset_of

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

__all__ = ["OpenLineageMixin", "convert_asset_to_openlineage", "operator_lineage"]

_log = logging.getLogger(__name__)


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


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Dataset | None:
    """The OpenLineage dataset of an Asset with one of our URIs (``osds://``, ``osds+dashboard://``,
    ``osds+destination://``); ``None`` for any other."""
    ref = ref_from_uri(asset.uri)
    return None if ref is None else _dataset(ref, {}, _log)


def _datasets(assets: Iterable[Any], endpoints: dict[str, Endpoint | None], log: Any) -> list[Any]:
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    out: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for asset in assets:
        if not isinstance(asset, Asset):
            continue
        ref = ref_from_asset(asset.name, asset.uri)
        # Not one of ours (a user's postgres:// Asset…): as OpenLineage names it.
        dataset = translate_airflow_asset(asset, None) if ref is None else _dataset(ref, endpoints, log)
        if dataset is not None and (dataset.namespace, dataset.name) not in seen:
            seen.add((dataset.namespace, dataset.name))
            out.append(dataset)
    return out


def _dataset(ref: DataRef, endpoints: dict[str, Endpoint | None], log: Any) -> Dataset:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    named = dataset_of(ref, _endpoint(ref.conn_id, endpoints, log))
    return Dataset(namespace=named.namespace, name=named.name)


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
