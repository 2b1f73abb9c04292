"""The session's real Airflow stack (see airflow_stack.py), with the DAG folder of every scheduler scenario.

Starting the stack costs ~15–25 s, so there is ONE per session and its DAG folder holds all
scenarios, each in its own subfolder (DAG ids are unique across them):

- ``smoke/``: plain-Python producer → consumer on an Asset; proves the harness itself.
- ``osds/``: the thin loader files of the YAML pipelines in ``<root>/pipelines/``.
- ``freshness/``: a deferrable ``DbtSourceFreshnessSensor`` on the dbt project in
  ``<root>/dbt/freshness_shop/`` (its test runs ``dbt parse`` and creates the source table).

The fixture never skips: a stack that cannot start fails the test with the component logs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_osds.localrun import LocalStack
from airflow_osds.stack import AirflowStack

SMOKE_DAG = """\
# airflow dag file: the harness's own smoke scenario (no airflow-osds involved)
from airflow.sdk import DAG, Asset, task

SIGNAL = Asset("osds_e2e.smoke.signal")

with DAG("smoke_producer", schedule=None, catchup=False, tags=["e2e"]):

    @task(outlets=[SIGNAL])
    def emit(*, outlet_events=None):
        outlet_events[SIGNAL].extra = {"rows": 1}

    emit()

with DAG("smoke_consumer", schedule=[SIGNAL], catchup=False, tags=["e2e"]):

    @task
    def receive(*, triggering_asset_events=None):
        events = triggering_asset_events[SIGNAL]
        assert events and events[-1].extra == {"rows": 1}, events

    receive()
"""

LOADER_DAG = """\
# airflow dag file: every valid pipeline of {pipelines} becomes a DAG
from airflow_osds.factory import load_pipelines

load_pipelines({pipelines!r}, globals())
"""

ERRORS_DAG = """\
# airflow dag file: invalid pipelines of {pipelines} show up as this file's import error
from airflow_osds.factory import report_pipeline_errors

report_pipeline_errors({pipelines!r})
"""

PIPELINES = {
    "producer.yml": """\
        pipeline: producer
        steps:
          load_orders:
            sql: |
              CREATE SCHEMA IF NOT EXISTS shop;
              CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, amount numeric NOT NULL);
              INSERT INTO shop.orders VALUES (1, 10.5), (2, 20), (3, 7.25) ON CONFLICT (id) DO NOTHING;
            writes: [shop.orders]
        """,
    "consumer.yml": """\
        pipeline: consumer
        schedule: data
        steps:
          count_orders:
            sql: |
              CREATE TABLE IF NOT EXISTS shop.order_counts (counted_at timestamptz NOT NULL, orders bigint NOT NULL);
              INSERT INTO shop.order_counts SELECT now(), count(*) FROM shop.orders;
            reads: [shop.orders]
            writes: [shop.order_counts]
        """,
    # Line 4, column 5: `sqll` is a typo of `sql`.
    "broken.yml": """\
        pipeline: broken
        steps:
          oops:
            sqll: SELECT 1
        """,
}


def pipelines_folder(stack: AirflowStack) -> Path:
    """Outside the DAG folder: the dag-processor only needs the loader files."""
    return stack.root / "pipelines"


def write_scenarios(stack: AirflowStack) -> None:
    (stack.dags_folder / "smoke").mkdir()
    (stack.dags_folder / "smoke" / "asset_smoke.py").write_text(SMOKE_DAG)

    pipelines = pipelines_folder(stack)
    pipelines.mkdir()
    for name, text in PIPELINES.items():
        (pipelines / name).write_text(textwrap.dedent(text))
    osds = stack.dags_folder / "osds"
    osds.mkdir()
    (osds / "osds_pipelines.py").write_text(LOADER_DAG.format(pipelines=str(pipelines)))
    (osds / "osds_pipeline_errors.py").write_text(ERRORS_DAG.format(pipelines=str(pipelines)))
    write_freshness_scenario(stack)
    write_snowplow_scenario(stack)


@pytest.fixture(scope="session")
def airflow_stack(postgres: LocalStack) -> Iterator[AirflowStack]:
    """api-server + scheduler (LocalExecutor) + dag-processor + triggerer, shared by the whole session."""
    # Under the session directory: removed at exit unless OSDS_KEEP_TEST_STATE=1 (then logs survive).
    stack = AirflowStack(postgres, postgres.state_dir / "scheduler-stack")
    write_scenarios(stack)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


# -- freshness/: a deferrable dbt source freshness sensor (tests/e2e/test_scheduler_freshness.py) --

FRESHNESS_PROJECT = {
    "dbt_project.yml": """\
        name: freshness_shop
        version: "1.0.0"
        profile: osds
        model-paths: ["models"]
        """,
    # Stale after 30 minutes (warn_after); the sensor waits for dbt's "pass".
    "models/sources.yml": """\
        version: 2
        sources:
          - name: shop_raw
            schema: shop_raw
            config:
              loaded_at_field: loaded_at
              freshness:
                warn_after: {count: 30, period: minute}
                error_after: {count: 1, period: day}
            tables:
              - name: orders
        """,
    "models/orders_clean.sql": """\
        select id, loaded_at from {{ source('shop_raw', 'orders') }}
        """,
}

FRESHNESS_DAG = """\
# airflow dag file: wait in the triggerer until the source the next step reads is fresh
from airflow.sdk import DAG, task

from airflow_osds.sensors.dbt import DbtSourceFreshnessSensor

with DAG("freshness_wait", schedule=None, catchup=False, tags=["e2e"]):
    wait = DbtSourceFreshnessSensor(
        task_id="wait_for_orders",
        project_dir={project!r},
        sources=["shop_raw.orders"],
        deferrable=True,
        poke_interval=1,
        timeout=300,
    )

    @task
    def build_orders_clean():
        return "runs once shop_raw.orders is fresh"

    wait >> build_orders_clean()
"""


def freshness_project(stack: AirflowStack) -> Path:
    """The scenario's dbt project: outside the DAG folder, parsed by the test that uses it."""
    return stack.root / "dbt" / "freshness_shop"


def write_freshness_scenario(stack: AirflowStack) -> None:
    project = freshness_project(stack)
    for name, text in FRESHNESS_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text))
    (stack.dags_folder / "freshness").mkdir()
    (stack.dags_folder / "freshness" / "freshness_wait.py").write_text(FRESHNESS_DAG.format(project=str(project)))


# -- snowplow/: a deferrable SnowplowNewFilesSensor, then the load (tests/e2e/test_scheduler_snowplow.py) --

SNOWPLOW_DAG = """\
# airflow dag file: wait in the triggerer for enriched files not loaded yet, then load them
from airflow.sdk import DAG

from airflow_osds.operators.snowplow import SnowplowLoadOperator
from airflow_osds.sensors.snowplow import SnowplowNewFilesSensor

with DAG("snowplow_wait", schedule=None, catchup=False, tags=["e2e"]):
    wait = SnowplowNewFilesSensor(task_id="wait_for_files", source={source!r}, deferrable=True, poke_interval=1,
                                  timeout=300)
    load = SnowplowLoadOperator(task_id="load_events", source={source!r}, iglu=[{iglu!r}])
    wait >> load
"""


def snowplow_paths(stack: AirflowStack) -> tuple[Path, Path]:
    """(the folder the sensor watches, the static Iglu registry): outside the DAG folder."""
    return stack.root / "snowplow" / "enriched", stack.root / "snowplow" / "iglu"


def write_snowplow_scenario(stack: AirflowStack) -> None:
    import shutil

    from airflow_osds.snowplow.generate import write_custom_schemas
    from tests.unit.snowplow._support import IGLU_CENTRAL

    source, iglu = snowplow_paths(stack)
    source.mkdir(parents=True)
    shutil.copytree(IGLU_CENTRAL / "schemas", iglu / "schemas")
    write_custom_schemas(iglu)
    (stack.dags_folder / "snowplow").mkdir()
    (stack.dags_folder / "snowplow" / "snowplow_wait.py").write_text(SNOWPLOW_DAG.format(source=str(source), iglu=str(iglu)))
