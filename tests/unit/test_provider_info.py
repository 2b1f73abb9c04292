"""Provider metadata: valid for Airflow's own schema, and every class it names imports."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_osds import __version__
from airflow_osds.get_provider_info import get_provider_info


def _import_path(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_package_name_is_the_canonical_distribution_name() -> None:
    # Any other spelling makes Airflow's provider discovery raise for every provider.
    assert get_provider_info()["package-name"] == "airflow-osds"


def test_provider_info_matches_airflows_runtime_schema() -> None:
    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_ui_field_behaviour_matches_airflows_schema() -> None:
    schema_path = Path(airflow.__file__).parent / "customized_form_field_behaviours.schema.json"
    schema = json.loads(schema_path.read_text())
    for conn_type in get_provider_info()["connection-types"]:
        behaviour = {k.replace("-", "_"): v for k, v in conn_type["ui-field-behaviour"].items()}
        jsonschema.validate(behaviour, schema)


@pytest.mark.parametrize("conn_type", get_provider_info()["connection-types"], ids=lambda c: c["connection-type"])
def test_connection_type_hook_declares_the_same_type(conn_type: dict) -> None:
    hook = _import_path(conn_type["hook-class-name"])
    assert hook.conn_type == conn_type["connection-type"]
    assert hook.hook_name == conn_type["hook-name"]
    assert hook.default_conn_name == f"{conn_type['connection-type']}_default"


def test_declared_modules_and_plugins_import() -> None:
    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors"):
        for group in info[kind]:
            for module in group["python-modules"]:
                importlib.import_module(module)
    # The plugin comes through the `airflow.plugins` entry point only: listing it in the
    # provider info too makes Airflow load it twice ("Plugin 'osds' already registered").
    assert "plugins" not in info


def test_entry_points_are_installed() -> None:
    provider = {ep.name: ep.value for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_osds")}
    assert provider == {"provider_info": "airflow_osds.get_provider_info:get_provider_info"}
    plugins = {ep.name: ep.value for ep in entry_points(group="airflow.plugins")}
    assert plugins.get("osds") == "airflow_osds.plugins:OsdsPlugin"
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("osds") == "airflow_osds.cli:main"


def test_version_listed() -> None:
    assert get_provider_info()["versions"] == [__version__]


def test_block_modules_are_derived_from_the_registry() -> None:
    # get_provider_info.py holds a generated copy (it must not import the blocks' models).
    from airflow_osds.factory.blocks import BLOCKS
    from airflow_osds.factory.blocks._provider_info import derived_modules
    from airflow_osds.get_provider_info import _BLOCK_MODULES

    assert _BLOCK_MODULES == derived_modules(BLOCKS.values()), (
        "regenerate with: python -m airflow_osds.factory.blocks._provider_info --write"
    )
    assert {"airflow_osds.operators.sql", "airflow_osds.operators.dbt"} <= {
        m for group in get_provider_info()["operators"] for m in group["python-modules"]
    }
