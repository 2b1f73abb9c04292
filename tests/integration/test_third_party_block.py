"""A block from another package (entry-point group ``airflow_osds.blocks``), installed with pip and used from YAML.

The package (tests/data/osds-test-dashboard) adds a fake ``dashboard`` block that reads
tables and writes a dashboard — a data reference that is not a table — so this also proves
that same-file wiring and ``schedule: data`` work for every kind of data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "data" / "osds-test-dashboard"
OSDS = str(Path(sys.executable).parent / "osds")

PIPELINES = {
    "producer.yml": """\
        pipeline: producer
        steps:
          refresh:
            dashboard: {connection: bi, key: sales, tables: [marts.orders]}
          build_orders:
            sql: CREATE TABLE marts.orders AS SELECT 1 AS id
    """,
    "consumer.yml": """\
        pipeline: consumer
        schedule: data
        steps:
          notify:
            operator: {class: airflow.providers.standard.operators.empty.EmptyOperator}
            reads: [{dashboard: sales, connection: bi}]
    """,
    "uses_broken.yml": """\
        pipeline: uses_broken
        steps:
          a:
            broken: {}
    """,
}

INSPECT = """
import json, sys
from airflow_osds.factory import load_pipelines
dags = load_pipelines(sys.argv[1])
producer, consumer = dags["producer"], dags["consumer"]
refresh = producer.task_dict["refresh"]
print(json.dumps({
    "dags": sorted(dags),
    "refresh_upstream": sorted(refresh.upstream_task_ids),
    "refresh_outlets": [(a.name, a.uri, a.group) for a in refresh.outlets],
    "refresh_inlets": [a.uri for a in refresh.inlets],
    "consumer_schedule": sorted(a.uri for a in consumer.timetable.asset_condition.objects),
}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed by pip into its own folder (built from a copy: setuptools writes into the source)."""
    source = tmp_path_factory.mktemp("src") / PACKAGE.name
    shutil.copytree(PACKAGE, source)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )
    assert list(target.glob("osds_test_dashboard-*.dist-info/entry_points.txt")), "pip installed the entry points"
    return target


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, text in PIPELINES.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=300)


def test_installed_block_is_wired_by_the_data_it_reads_and_writes(site: Path, pipelines: Path) -> None:
    result = _run(site, sys.executable, "-c", INSPECT, str(pipelines))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.splitlines()[-1])
    assert facts["dags"] == ["consumer", "producer"]
    # Declared first in the file, yet it runs after the step writing the table it reads.
    assert facts["refresh_upstream"] == ["build_orders"]
    assert facts["refresh_inlets"] == ["osds://warehouse/marts/orders"]
    assert facts["refresh_outlets"] == [["dashboard:bi/sales", "osds+dashboard://bi/sales", "dashboard"]]
    # Another file reading the dashboard is scheduled on its Asset.
    assert facts["consumer_schedule"] == ["osds+dashboard://bi/sales"]


def test_validate_schema_and_broken_blocks(site: Path, pipelines: Path) -> None:
    result = _run(site, OSDS, "validate", str(pipelines))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 valid pipeline(s), 1 error(s)" in result.stdout
    # The broken package's block is named with the reason, at its line; the others still work.
    assert (
        f"{pipelines / 'uses_broken.yml'}:4:5: error: unknown key `broken`: package osds-test-dashboard provides "
        "block `broken` but it failed to load: ModuleNotFoundError: No module named 'osds_test_dashboard.missing'"
    ) in result.stdout
    schema = json.loads(_run(site, OSDS, "schema").stdout)
    step = schema["$defs"]["StepSpec"]["properties"]
    assert "dashboard" in step and "sql" in step and "broken" not in step


def test_without_the_package_the_block_is_unknown(pipelines: Path) -> None:
    result = subprocess.run([OSDS, "validate", str(pipelines)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "unknown key `dashboard`" in result.stdout
