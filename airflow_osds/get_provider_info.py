"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

``package-name`` must be the canonical distribution name ``airflow-osds``: with any
other spelling Airflow's provider discovery raises for *every* provider.
Connection forms are declared here (``conn-fields`` / ``ui-field-behaviour``), the
Airflow 3.2+ way, so the UI can render them without importing the hooks. The operator,
sensor and hook modules of the blocks are generated from the block registry (see
:mod:`airflow_osds.factory.blocks._provider_info`).
"""

from __future__ import annotations

from typing import Any

from airflow_osds import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-osds",
        "name": "Open-source data stack (osds)",
        "description": (
            "Run the open-source data stack from YAML: Snowplow events, Singer EL, dbt, "
            "Superset cache refresh and reverse ETL, with Asset dependencies wired from the data."
        ),
        "versions": [__version__],
        "integrations": [*_CONNECTION_INTEGRATIONS, *_BLOCK_MODULES["integrations"]],
        "hooks": [*_CONNECTION_HOOKS, *_BLOCK_MODULES["hooks"]],
        "operators": _BLOCK_MODULES["operators"],
        "sensors": _BLOCK_MODULES["sensors"],
        **({"triggers": _BLOCK_MODULES["triggers"]} if _BLOCK_MODULES["triggers"] else {}),
        "connection-types": [_superset_connection(), _http_destination_connection()],
        # Our Asset URIs stay as they are (no handler), and OpenLineage names them at run time.
        "asset-uris": [{"schemes": ["osds", "osds+dashboard", "osds+destination"], "handler": None,
                        "to_openlineage_converter": "airflow_osds.operators._lineage.convert_asset_to_openlineage"}],
        "config": _config(),
    }


# Integrations that come with a connection type of their own rather than with a block.
_CONNECTION_INTEGRATIONS = [
    {"integration-name": "Reverse ETL (HTTP API)", "external-doc-url": "https://github.com/grouparoo/grouparoo"},
]
_CONNECTION_HOOKS = [
    {"integration-name": "Reverse ETL (HTTP API)", "python-modules": ["airflow_osds.hooks.reverse_etl"]},
]

# --- generated from the block registry by `python -m airflow_osds.factory.blocks._provider_info --write`; do not edit
_BLOCK_MODULES: dict[str, list[dict[str, Any]]] = {
    "integrations": [
        {
            "integration-name": "Apache Superset",
            "external-doc-url": "https://superset.apache.org/docs/api"
        },
        {
            "integration-name": "Reverse ETL"
        },
        {
            "integration-name": "Singer",
            "external-doc-url": "https://hub.meltano.com/singer/spec"
        },
        {
            "integration-name": "Snowplow",
            "external-doc-url": "https://docs.snowplow.io/docs/api-reference/loaders-storage-targets/snowplow-postgres-loader/"
        },
        {
            "integration-name": "Warehouse SQL",
            "external-doc-url": "https://www.postgresql.org/docs/"
        },
        {
            "integration-name": "dbt Core",
            "external-doc-url": "https://docs.getdbt.com/"
        }
    ],
    "operators": [
        {
            "integration-name": "Apache Superset",
            "python-modules": [
                "airflow_osds.operators.superset"
            ]
        },
        {
            "integration-name": "Reverse ETL",
            "python-modules": [
                "airflow_osds.operators.reverse_etl"
            ]
        },
        {
            "integration-name": "Singer",
            "python-modules": [
                "airflow_osds.operators.singer"
            ]
        },
        {
            "integration-name": "Snowplow",
            "python-modules": [
                "airflow_osds.operators.snowplow"
            ]
        },
        {
            "integration-name": "Warehouse SQL",
            "python-modules": [
                "airflow_osds.operators.sql"
            ]
        },
        {
            "integration-name": "dbt Core",
            "python-modules": [
                "airflow_osds.operators.dbt"
            ]
        }
    ],
    "sensors": [
        {
            "integration-name": "Snowplow",
            "python-modules": [
                "airflow_osds.sensors.snowplow"
            ]
        },
        {
            "integration-name": "Warehouse SQL",
            "python-modules": [
                "airflow_osds.sensors.path"
            ]
        },
        {
            "integration-name": "dbt Core",
            "python-modules": [
                "airflow_osds.sensors.dbt"
            ]
        }
    ],
    "hooks": [
        {
            "integration-name": "Apache Superset",
            "python-modules": [
                "airflow_osds.hooks.superset"
            ]
        },
        {
            "integration-name": "Reverse ETL",
            "python-modules": [
                "airflow_osds.hooks.reverse_etl"
            ]
        },
        {
            "integration-name": "Singer",
            "python-modules": [
                "airflow_osds.hooks.singer"
            ]
        },
        {
            "integration-name": "Snowplow",
            "python-modules": [
                "airflow_osds.hooks.snowplow"
            ]
        },
        {
            "integration-name": "dbt Core",
            "python-modules": [
                "airflow_osds.hooks.dbt"
            ]
        }
    ],
    "triggers": [
        {
            "integration-name": "Snowplow",
            "python-modules": [
                "airflow_osds.triggers.snowplow"
            ]
        },
        {
            "integration-name": "dbt Core",
            "python-modules": [
                "airflow_osds.triggers.dbt"
            ]
        }
    ]
}
# --- end of generated part


def _superset_connection() -> dict[str, Any]:
    return {
        "connection-type": "superset",
        "hook-class-name": "airflow_osds.hooks.superset.SupersetHook",
        "hook-name": "Apache Superset",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "extra"],
            "relabeling": {"host": "Base URL", "login": "Username"},
            "placeholders": {"host": "http://superset.internal:8088", "login": "admin"},
        },
        "conn-fields": {
            "auth_provider": {
                "label": "Auth provider",
                "description": "Superset security provider used by /api/v1/security/login.",
                "schema": {"type": "string", "enum": ["db", "ldap"], "default": "db"},
            },
            "verify_ssl": {
                "label": "Verify TLS certificates",
                "schema": {"type": "boolean", "default": True},
            },
            "timeout": {
                "label": "Request timeout (seconds)",
                "schema": {"type": "number", "default": 60, "minimum": 1},
            },
        },
    }


def _http_destination_connection() -> dict[str, Any]:
    return {
        "connection-type": "reverse_etl_http",
        "hook-class-name": "airflow_osds.hooks.reverse_etl.HttpDestinationHook",
        "hook-name": "Reverse ETL HTTP API destination",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "extra"],
            "relabeling": {"host": "Base URL", "password": "API token / password"},
            "placeholders": {"host": "https://api.example.com", "login": "only for basic auth"},
        },
        "conn-fields": {
            "auth_type": {
                "label": "Authentication",
                "description": "bearer: 'Authorization: Bearer <password>'; header: <api_key_header>: <password>; basic: login/password.",
                "schema": {"type": "string", "enum": ["none", "bearer", "header", "basic"], "default": "bearer"},
            },
            "api_key_header": {
                "label": "API key header",
                "description": "Header that carries the token when Authentication is 'header'.",
                "schema": {"type": "string", "default": "X-API-Key"},
            },
            "timeout": {
                "label": "Request timeout (seconds)",
                "schema": {"type": "number", "default": 30, "minimum": 1},
            },
            "max_requests_per_second": {
                "label": "Max requests per second",
                "description": "Client-side rate limit; 0 means unlimited.",
                "schema": {"type": "number", "default": 0, "minimum": 0},
            },
            "verify_ssl": {
                "label": "Verify TLS certificates",
                "schema": {"type": "boolean", "default": True},
            },
        },
    }


def _config() -> dict[str, Any]:
    return {
        "osds": {
            "description": "Defaults of the airflow-osds provider.",
            "options": {
                "default_warehouse_conn_id": {
                    "description": "Airflow connection id of the warehouse used by steps that name none.",
                    "version_added": "0.1.0",
                    "type": "string",
                    "example": "warehouse",
                    "default": "warehouse",
                },
                "cache_dir": {
                    "description": (
                        "Folder of the compiled cache shared by every process parsing the pipelines "
                        "(the environment variable OSDS_CACHE_DIR wins). Empty: <pipelines folder>/.osds_cache, "
                        "or $AIRFLOW_HOME/osds_cache when that folder is read-only."
                    ),
                    "version_added": "0.1.0",
                    "type": "string",
                    "example": "/usr/local/airflow/osds_cache",
                    "default": "",
                },
                "pipelines_folder": {
                    "description": (
                        "Folder of pipeline YAML files read by a DAG file that calls "
                        "load_pipelines() without a path. Empty: <dags_folder>/../include/pipelines."
                    ),
                    "version_added": "0.1.0",
                    "type": "string",
                    "example": "/usr/local/airflow/include/pipelines",
                    "default": "",
                },
            },
        }
    }
