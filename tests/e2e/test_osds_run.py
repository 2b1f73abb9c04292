"""`osds run` (the local loop of a pipeline author) in a small project of its own: one pipeline on the
embedded PostgreSQL, or one step with the steps it runs after, and the demo's summary; a step that does
not exist names the pipeline's tasks; a failing task fails the run at once, whatever its retries."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
OSDS = str(Path(sys.executable).parent / "osds")

PIPELINE = """\
pipeline: shop
schedule: "@daily"
start_date: 2026-01-01
steps:
  orders:
    sql: |
      CREATE SCHEMA IF NOT EXISTS shop;
      DROP TABLE IF EXISTS shop.orders;
      CREATE TABLE shop.orders AS SELECT i AS id, i * 10 AS amount FROM generate_series(1, 7) AS i;
  marts:
    group:
      steps:
        daily:
          sql: |
            DROP TABLE IF EXISTS shop.daily;
            CREATE TABLE shop.daily AS SELECT count(*) AS orders, sum(amount) AS amount FROM shop.orders;
        big:
          sql: |
            DROP TABLE IF EXISTS shop.big;
            CREATE TABLE shop.big AS SELECT * FROM shop.orders WHERE amount > 40;
"""

# The pipeline's retries would make the run wait 10 minutes (past _osds_run's timeout) before failing.
FAILING = """\
pipeline: failing
schedule: "@daily"
start_date: 2026-01-01
defaults: {retries: 2, retry_delay: 10m}
steps:
  orders:
    sql: SELECT * FROM shop.no_such_table
"""


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="osds-run-"))
    root.chmod(0o755)
    shutil.copytree(REPO_ROOT / "dags", root / "dags")
    (root / "include" / "pipelines").mkdir(parents=True)
    (root / "include" / "pipelines" / "shop.yml").write_text(PIPELINE)
    (root / "include" / "pipelines" / "failing.yml").write_text(FAILING)
    try:
        yield root
    finally:
        from airflow_osds.embedded import EmbeddedPostgres

        EmbeddedPostgres(root / ".osds" / "postgres").destroy()
        shutil.rmtree(root, ignore_errors=True)


def _osds_run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OSDS_"))} | {"COLUMNS": "200"}
    return subprocess.run([OSDS, "run", *args, "--project-dir", str(project)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_one_step_runs_with_what_it_runs_after_and_the_rest_is_left_out(project: Path) -> None:
    result = _osds_run(project, "shop", "--step", "big")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "the other steps are marked success without running: marts.daily" in output
    assert re.search(r"│ shop\s+│ success │ marts\.big=success,", output), output
    assert "marts.daily=not run" in output and "orders=success" in output
    assert re.search(r"warehouse:shop\.big\s+│\s+3 │", output), output
    assert re.search(r"warehouse:shop\.orders\s+│\s+7 │", output), output
    assert "shop.daily" not in output.split("Tables written")[1], "a table no task of this run wrote is not listed"
    assert "pipeline shop succeeded" in output

    whole = _osds_run(project, "shop")
    output = whole.stdout + whole.stderr
    assert whole.returncode == 0, output
    assert re.search(r"warehouse:shop\.daily\s+│\s+1 │", output), output


def test_an_unknown_step_names_the_pipelines_tasks(project: Path) -> None:
    step = _osds_run(project, "shop", "--step", "weekly")
    assert step.returncode == 2
    assert "pipeline shop has no step 'weekly'; its tasks: marts.big, marts.daily, orders" in step.stdout


def test_a_failing_task_fails_the_run_at_once_whatever_its_retries(project: Path) -> None:
    result = _osds_run(project, "failing")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "retries off for this run (orders): a failing task fails it at once" in output
    assert 'relation "shop.no_such_table" does not exist' in output
    assert re.search(r"│ failing\s+│ failed\s+│ orders=failed", output), output
