"""The OpenLineage datasets of our references (airflow_osds.lineage), and the operators' facets methods."""

from __future__ import annotations

import importlib
import inspect
import json
import sys

import pytest

from airflow_osds.assets import DashboardRef, DestinationRef, FilesRef, TableRef, data_ref_from_yaml, ref_from_asset
from airflow_osds.lineage import Endpoint, LineageDataset, dataset_of

WAREHOUSE = Endpoint("postgres", host="db.example.com", port=5433, schema="analytics_db", login="etl")


@pytest.mark.parametrize(
    ("ref", "endpoint", "expected"),
    [
        # OpenLineage's PostgreSQL naming: postgres://{host}:{port}, {database}.{schema}.{table}
        (TableRef("warehouse", "atomic", "events"), WAREHOUSE, ("postgres://db.example.com:5433", "analytics_db.atomic.events")),
        (TableRef("warehouse", "raw", "Orders"), Endpoint("postgres", host="DB.Example.com", schema="wh"),
         ("postgres://db.example.com:5432", "wh.raw.Orders")),  # the default port written; a quoted name keeps its case
        (TableRef("warehouse", "public", "t"), Endpoint("postgres", host="/tmp/osds/run", port=5999, schema="wh"),
         ("postgres://localhost:5999", "wh.public.t")),  # a Unix socket: this machine
        (TableRef("warehouse", "public", "t"), Endpoint("postgresql", host="::1", schema="wh"),
         ("postgres://[::1]:5432", "wh.public.t")),
        (TableRef("warehouse", "public", "t"), Endpoint("postgres", host="db", login="etl"),
         ("postgres://db:5432", "etl.public.t")),  # no database: libpq uses the user's
        # a postgres destination is a table of that database
        (DestinationRef("crm", "vip_customers"), Endpoint("postgres", host="127.0.0.1", port=5432, schema="crm_source"),
         ("postgres://127.0.0.1:5432", "crm_source.public.vip_customers")),
        (DestinationRef("crm", "sales.Leads"), Endpoint("postgres", host="crm-db", schema="crm"),
         ("postgres://crm-db:5432", "crm.sales.leads")),
        # an HTTP destination: the base URL its hook calls, the object its Asset names
        (DestinationRef("sink", "hooks/records"), Endpoint("reverse_etl_http", host="http://127.0.0.1:8123/api/"),
         ("http://127.0.0.1:8123/api", "hooks/records")),
        (DestinationRef("hubspot", "contacts"), Endpoint("reverse_etl_http", host="api.hubapi.com"),
         ("https://api.hubapi.com", "contacts")),
        (DestinationRef("hubspot", "contacts"), Endpoint("reverse_etl_http", host="HTTPS://user@API.hubapi.com:443"),
         ("https://api.hubapi.com", "contacts")),  # no user info, no default port
        (DestinationRef("mc", "lists/abc123"), Endpoint("reverse_etl_http", host="us21.api.mailchimp.com", port=8443),
         ("https://us21.api.mailchimp.com:8443", "lists/abc123")),
        # a Superset dashboard
        (DashboardRef("superset", "web-analytics"), Endpoint("superset", host="http://localhost:8088"),
         ("superset://localhost:8088", "web-analytics")),
        (DashboardRef("bi", "Web analytics"), Endpoint("superset", host="bi.example.com", schema="https"),
         ("superset://bi.example.com:443", "Web analytics")),
        (DashboardRef("bi", "12"), Endpoint("superset", host="https://example.com/superset/"),
         ("superset://example.com:443/superset", "12")),
        # files, as Airflow's file and s3 Asset converters name them; no connection needed
        (FilesRef("file:///data/enriched/"), None, ("file", "/data/enriched")),
        (FilesRef("s3://bucket/enriched/2026"), None, ("s3://bucket", "enriched/2026")),
        (FilesRef("S3://bucket"), None, ("s3://bucket", "/")),
        # no connection, or one of a type with no naming here: the Asset's own identity
        (TableRef("warehouse", "atomic", "events"), None, ("osds://warehouse", "atomic.events")),
        (TableRef("lake", "atomic", "events"), Endpoint("trino", host="trino"), ("osds://lake", "atomic.events")),
        (DashboardRef("superset", "sales"), None, ("osds+dashboard://superset", "sales")),
        (DestinationRef("crm", "contacts"), Endpoint("reverse_etl_http"), ("osds+destination://crm", "contacts")),
    ],
    ids=lambda v: v.kind + ":" + "/".join(v.parts) if hasattr(v, "kind") else None,
)
def test_dataset_of(ref, endpoint, expected) -> None:
    assert dataset_of(ref, endpoint) == LineageDataset(*expected)


def test_endpoint_keeps_no_secret() -> None:
    class Conn:
        conn_type, host, port, schema, login, password, extra = "postgres", "db", "5433", "wh", "etl", "s3cret", "{}"

    endpoint = Endpoint.from_connection(Conn())
    assert endpoint == Endpoint("postgres", host="db", port=5433, schema="wh", login="etl")
    assert "s3cret" not in repr(endpoint)


def test_every_kind_of_reference_is_found_from_its_asset() -> None:
    refs = [TableRef("warehouse", "raw", "orders"), DashboardRef("superset", "web analytics/2026"),
            DestinationRef("sink", "hooks/records"), data_ref_from_yaml({"files": "s3://bucket/enriched/"}, conn_id="w")]
    for ref in refs:
        asset = ref.asset()
        assert ref_from_asset(asset.name, asset.uri) == ref
    assert ref_from_asset("warehouse.raw.orders", "postgres://db:5432/wh/raw/orders") is None  # not ours


# -- the operators' facets methods ------------------------------------------------------------------------


def _sql_task():
    from airflow.sdk import DAG

    from airflow_osds.operators.sql import WarehouseSqlOperator

    refs_in = [TableRef("warehouse", "raw", "orders"), FilesRef("s3://bucket/orders")]
    refs_out = [TableRef("warehouse", "marts", "orders_daily"), DestinationRef("crm", "vip_customers"),
                DashboardRef("bi", "sales")]
    with DAG("lineage_unit", schedule=None):
        return WarehouseSqlOperator(task_id="t", conn_id="warehouse", sql="SELECT 1",
                                    inlets=[r.asset() for r in refs_in], outlets=[r.asset() for r in refs_out])


def test_facets_are_the_inlets_and_outlets_named_from_their_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "postgres", "host": "wh.internal", "port": 5433,
                                                             "schema": "dwh", "login": "etl", "password": "pw"}))
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps({"conn_type": "postgres", "host": "crm.internal", "schema": "crm"}))
    monkeypatch.delenv("AIRFLOW_CONN_BI", raising=False)  # not found: named by its connection id
    task = _sql_task()
    lineage = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("postgres://wh.internal:5433", "dwh.raw.orders"), ("s3://bucket", "orders")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("postgres://wh.internal:5433", "dwh.marts.orders_daily"), ("postgres://crm.internal:5432", "crm.public.vip_customers"),
        ("osds+dashboard://bi", "sales")]
    start = task.get_openlineage_facets_on_start()
    assert (start.inputs, start.outputs) == (lineage.inputs, lineage.outputs)


def test_without_the_openlineage_provider_the_methods_return_none(monkeypatch: pytest.MonkeyPatch) -> None:
    task = _sql_task()
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)  # import fails
    assert task.get_openlineage_facets_on_complete(None) is None
    assert task.get_openlineage_facets_on_start() is None


def test_every_operator_and_sensor_reports_lineage() -> None:
    from airflow.sdk import BaseOperator

    from airflow_osds.get_provider_info import get_provider_info
    from airflow_osds.operators._lineage import OpenLineageMixin

    modules = {m for kind in ("operators", "sensors") for g in get_provider_info()[kind] for m in g["python-modules"]}
    classes = {obj for m in modules for _, obj in inspect.getmembers(importlib.import_module(m), inspect.isclass)
               if issubclass(obj, BaseOperator) and obj.__module__ == m}
    assert classes, modules
    assert not [c.__name__ for c in classes if not issubclass(c, OpenLineageMixin)]


def test_assets_of_tasks_that_are_not_ours_get_the_same_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A python or operator step reports no lineage itself: OpenLineage converts its inlets and outlets
    with the converter our provider info registers for the osds schemes, which leaves the URIs as they are."""
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "postgres", "host": "wh.internal", "schema": "dwh"}))
    monkeypatch.setenv("AIRFLOW_CONN_SINK", json.dumps({"conn_type": "reverse_etl_http", "host": "https://hooks.example.com"}))
    for ref, expected in [(TableRef("warehouse", "raw", "orders"), ("postgres://wh.internal:5432", "dwh.raw.orders")),
                          (DestinationRef("sink", "hooks/records"), ("https://hooks.example.com", "hooks/records")),
                          (DashboardRef("bi", "sales"), ("osds+dashboard://bi", "sales"))]:
        asset = ref.asset()
        assert (asset.uri, asset.normalized_uri) == (ref.uri, ref.uri)
        dataset = translate_airflow_asset(asset, None)
        assert (dataset.namespace, dataset.name) == expected
